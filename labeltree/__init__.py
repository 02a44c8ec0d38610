"""labeltree: merge street-scene label spaces into one tree and train one network on all of them."""

from labeltree.core.hierarchy import Hierarchy
from labeltree.core.taxonomy import Taxonomy, load_taxonomy
from labeltree.core.tree_file import load_hierarchy
from labeltree.errors import LabeltreeError

__all__ = ["Hierarchy", "LabeltreeError", "Taxonomy", "load_hierarchy", "load_taxonomy"]
__version__ = "0.1.0"
