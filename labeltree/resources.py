"""Locate bundled data files (taxonomies, hierarchies, configs) in source trees and installed wheels."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def data_dir(package: str) -> Path:
    """Directory of a bundled data package (`labeltree.taxonomies`, `labeltree.configs`)."""
    return Path(str(resources.files(package)))


def taxonomy_dir() -> Path:
    return data_dir("labeltree.taxonomies")


def hierarchy_dir() -> Path:
    return taxonomy_dir() / "hierarchies"


def config_dir() -> Path:
    return data_dir("labeltree.configs")
