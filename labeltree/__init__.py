"""labeltree: merge street-scene label spaces into one tree and train one network on all of them."""

from .errors import LabeltreeError
from .hierarchy import Hierarchy, load_hierarchy
from .taxonomy import Taxonomy, load_taxonomy

__all__ = ["Hierarchy", "LabeltreeError", "Taxonomy", "load_hierarchy", "load_taxonomy"]
__version__ = "0.1.0"
