"""Locate bundled data files (taxonomies, hierarchies, configs) in source trees and installed wheels.

One rule tells a bundled name from a file, everywhere a dataset, tree or config is named: a reference
with a slash or a `.yaml` / `.yml` suffix is a path; anything else is a bundled name, never a file
or folder of that name in the working directory (a data folder holding `cityscapes/` must not
shadow the bundled taxonomy). Write `./name.yaml` for a file of your own.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

#: said in the --help of every option or argument that takes a dataset, tree or config
NAME_OR_PATH_RULE = "a bundled name, or a path (one with a slash or a .yaml suffix, e.g. ./mine.yaml)"


def is_path_ref(ref: str | Path) -> bool:
    """True when `ref` names a file (a slash or a .yaml / .yml suffix), False for a bundled name."""
    text = str(ref)
    return "/" in text or os.sep in text or Path(text).suffix.lower() in (".yaml", ".yml")


def user_cache_dir() -> Path:
    """$LABELTREE_CACHE, else $XDG_CACHE_HOME/labeltree, else ~/.cache/labeltree (never under a dataset root)."""
    if os.environ.get("LABELTREE_CACHE"):
        return Path(os.environ["LABELTREE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path.home() / ".cache") / "labeltree"


def data_dir(package: str) -> Path:
    """Directory of a bundled data package (`labeltree.taxonomies`, `labeltree.configs`)."""
    return Path(str(resources.files(package)))


def taxonomy_dir() -> Path:
    return data_dir("labeltree.taxonomies")


def hierarchy_dir() -> Path:
    return taxonomy_dir() / "hierarchies"


def config_dir() -> Path:
    return data_dir("labeltree.configs")
