"""labeltree: merge street-scene label spaces into one tree and train one network on all of them.

The names below are loaded on first use (PEP 562), so that `import labeltree` and the command line's
start stay light: a command imports only what it uses.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY: dict[str, str] = {
    "Hierarchy": "labeltree.core.hierarchy",
    "LabeltreeError": "labeltree.errors",
    "Taxonomy": "labeltree.core.taxonomy",
    "load_hierarchy": "labeltree.core.tree_file",
    "load_taxonomy": "labeltree.core.taxonomy",
}

__all__ = ["Hierarchy", "LabeltreeError", "Taxonomy", "load_hierarchy", "load_taxonomy"]  # = the keys of _LAZY

if TYPE_CHECKING:
    from labeltree.core.hierarchy import Hierarchy
    from labeltree.core.taxonomy import Taxonomy, load_taxonomy
    from labeltree.core.tree_file import load_hierarchy
    from labeltree.errors import LabeltreeError


def __getattr__(name: str) -> Any:
    """Import the module of a public name on first access and cache the name here."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'labeltree' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
