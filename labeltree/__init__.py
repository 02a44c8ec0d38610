"""labeltree: merge street-scene label spaces into one tree and train one network on all of them.

The names below are loaded on first use (PEP 562), so that `import labeltree` and the command line's
start stay light: a command imports only what it uses. The Python API (labeltree.api)::

    import labeltree as lt
    res = lt.evaluate("cityscapes", "data/cityscapes", "preds/")   # load_tree, merge, open_dataset,
    print(res.table())                                              # read_label, stats, convert,
                                                                    # synthesize, train, predict
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY: dict[str, str] = {
    "Hierarchy": "labeltree.core.hierarchy",
    "LabeltreeError": "labeltree.errors",
    "Taxonomy": "labeltree.core.taxonomy",
    "load_hierarchy": "labeltree.core.tree_file",
    "load_taxonomy": "labeltree.core.taxonomy",
    "Rules": "labeltree.evaluate.protocols",
    "resolve_rules": "labeltree.evaluate.protocols",
    "EvaluationResult": "labeltree.evaluate.result",
    **{name: "labeltree.api" for name in ("convert", "evaluate", "load_tree", "merge", "migrate", "open_dataset",
                                          "predict", "read_label", "stats", "synthesize", "train", "tree_diff")},
}

__all__ = [  # = the keys of _LAZY
    "EvaluationResult",
    "Hierarchy",
    "LabeltreeError",
    "Rules",
    "Taxonomy",
    "convert",
    "evaluate",
    "load_hierarchy",
    "load_taxonomy",
    "load_tree",
    "merge",
    "migrate",
    "open_dataset",
    "predict",
    "read_label",
    "resolve_rules",
    "stats",
    "synthesize",
    "train",
    "tree_diff",
]

if TYPE_CHECKING:
    from labeltree.api import (
        convert,
        evaluate,
        load_tree,
        merge,
        migrate,
        open_dataset,
        predict,
        read_label,
        stats,
        synthesize,
        train,
        tree_diff,
    )
    from labeltree.core.hierarchy import Hierarchy
    from labeltree.core.taxonomy import Taxonomy, load_taxonomy
    from labeltree.core.tree_file import load_hierarchy
    from labeltree.errors import LabeltreeError
    from labeltree.evaluate.protocols import Rules, resolve_rules
    from labeltree.evaluate.result import EvaluationResult


def __getattr__(name: str) -> Any:
    """Import the module of a public name on first access and cache the name here."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'labeltree' has no attribute {name!r}")
    if name in _SHADOWED:  # importing the subpackage sets it here, as a _CallableModule
        importlib.import_module(f"{__name__}.{name}")
        return globals()[name]
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


#: API functions named as a subpackage (labeltree.evaluate, .stats, .convert, .train)
_SHADOWED = frozenset({"convert", "evaluate", "stats", "train"})


def _api_function(module: types.ModuleType) -> Any:
    return getattr(importlib.import_module("labeltree.api"), module.__name__.rpartition(".")[2])


class _CallableModule(types.ModuleType):
    """A subpackage named like an API function (`labeltree.evaluate`, `.stats`, `.convert`, `.train`):
    calling it calls the function, so `lt.evaluate(...)` and `import labeltree.evaluate.folder as f` both
    work whatever was imported first. Its docstring and signature are the function's."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return _api_function(self)(*args, **kwargs)

    @property
    def __wrapped__(self) -> Any:  # inspect.signature(lt.evaluate) follows it
        return _api_function(self)

    @property
    def __doc__(self) -> str | None:  # type: ignore[override]
        return _api_function(self).__doc__

    @__doc__.setter
    def __doc__(self, value: str | None) -> None:
        self.__dict__["__doc__"] = value


class _Package(types.ModuleType):
    """labeltree's module type: a subpackage set as an attribute under an API function's name becomes
    a `_CallableModule`."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _SHADOWED and isinstance(value, types.ModuleType) and not isinstance(value, _CallableModule):
            value.__class__ = _CallableModule
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
