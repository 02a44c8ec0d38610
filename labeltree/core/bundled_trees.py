"""Where tree files are: the bundled ones, the files an `extends:` / `include:` names, and the smallest
bundled tree that maps a set of datasets (what merge and every command without `--tree` use).

The lookup reads the bundled files' dataset lists only, never builds a tree: choosing a tree must cost
a small part of loading one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from labeltree.core.taxonomy import resolve_taxonomy_path
from labeltree.core.yamlio import line_of, load_bundled
from labeltree.errors import LabeltreeError
from labeltree.resources import hierarchy_dir
from labeltree.vocab import DEFAULT_TREE  # noqa: E402,F401 - the paper's tree, one definition

# `extends:` chains longer than this are refused (the bundled ones are 1 or 2 deep); a bound, not a
# RecursionError, for a chain of files that extend each other
MAX_EXTENDS = 16


def bundled_hierarchies() -> dict[str, Path]:
    return {p.stem: p for p in sorted(hierarchy_dir().glob("*.yaml"))}


def resolve_ref(ref: str, tree_path: Path) -> str | Path:
    """A dataset entry of a tree file: a name as it is, a taxonomy path relative to the tree file."""
    p = Path(ref)
    if p.suffix in (".yaml", ".yml"):
        return p if p.is_absolute() else tree_path.parent / p
    return ref


def dataset_ref(d: Any, where: Path) -> str:
    """A dataset entry of the tree file `where` as a key: a name as it is, a taxonomy path made absolute."""
    return str(resolve_ref(str(d), where))


def tree_ref_path(ref: str, path: Path) -> Path:
    """The tree file an `extends:` names: a bundled tree name or a path relative to the extension."""
    p = Path(ref)
    if p.suffix in (".yaml", ".yml"):
        return p if p.is_absolute() else path.parent / p
    known = bundled_hierarchies()
    if ref in known:
        return known[ref]
    raise LabeltreeError(f"extends: unknown tree '{ref}': use a bundled tree ({', '.join(known)}) or a path "
                         "to a tree file", path, line_of(path, "extends"))


def declared_datasets(path: Path, _seen: tuple[Path, ...] = ()) -> list[str]:
    """Every dataset key a tree file maps (its own, its includes', its base's, as `expand_extends` keys
    them), read from the raw files without building the tree: what choosing a bundled tree needs, at
    a small part of a full load. Unreadable parts add nothing (loading the tree reports them)."""
    key = path.resolve()
    data = load_bundled(path) if key not in _seen and len(_seen) < MAX_EXTENDS else None
    if not isinstance(data, dict):
        return []

    def listed(src: Any, where: Path, absolute: bool) -> list[str]:
        out: list[str] = []
        for k in ("datasets", "evaluation_datasets"):
            v = src.get(k) if isinstance(src, dict) else None
            out += [dataset_ref(d, where) if absolute else str(d) for d in (v if isinstance(v, list) else [])]
        return out

    keys = listed(data, path, False)
    inc = data.get("include")
    for ref in inc if isinstance(inc, list) else []:
        try:
            where = tree_ref_path(str(ref), path)
        except LabeltreeError:
            continue
        keys += listed(load_bundled(where), where, True)
    if "extends" in data:
        try:
            base = tree_ref_path(str(data["extends"]), path)
        except LabeltreeError:
            return keys
        keys += [str(resolve_ref(k, base)) for k in declared_datasets(base, (*_seen, key))]
    return keys


def bundled_for(datasets: list[str | Path]) -> tuple[str, Path, list[str]] | None:
    """The smallest bundled tree that maps every one of `datasets` (names or taxonomy files): its
    name, file and the datasets' keys in it; None if no bundled tree covers them all."""
    wanted = [resolve_taxonomy_path(d).resolve() for d in datasets]
    for name, tree_path in sorted(bundled_hierarchies().items(), key=lambda kv: (len(kv[0]), kv[0])):
        by_path = {}
        for k in declared_datasets(tree_path):
            try:
                by_path[resolve_taxonomy_path(resolve_ref(k, tree_path)).resolve()] = k
            except LabeltreeError:
                continue
        if all(w in by_path for w in wanted):
            return name, tree_path, [by_path[w] for w in wanted]
    return None


def default_tree(datasets: list[str | Path]) -> str:
    """The tree a command uses when none is given: the smallest bundled one mapping `datasets`
    (the paper's tree for Cityscapes / Vistas v1.2 / GTSDB, an extension for BDD100K or IDD)."""
    try:
        found = bundled_for(datasets)
    except LabeltreeError:  # a taxonomy that is no bundled name or file: no bundled tree maps it
        found = None
    return found[0] if found is not None else DEFAULT_TREE
