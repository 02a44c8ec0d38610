"""Tree-file extensions: `extends: BASE` (a base tree plus datasets, nodes, mappings, overrides) and
`include: [EXT, ...]` (other extensions applied to this file's base), expanded to one full tree file.

An extension adds datasets to a base tree without copying it: `datasets` and `evaluation_datasets` are
appended to the base's, `add` appends nodes under existing ones (`root` for new root children; a leaf
that gets children becomes an inner node with a classifier), `mappings` map the new datasets only,
and `supervision.overrides` are appended. The base is validated on its own first (by the caller's
`check_base`), so its errors name its own file.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

from labeltree.core.bundled_trees import MAX_EXTENDS, bundled_hierarchies, dataset_ref, tree_ref_path
from labeltree.core.hierarchy import ROOT
from labeltree.core.tree_schema import (
    EXTENSION_KEYS,
    ExtensionFile,
    MappingSpec,
    Supervision,
    TreeFile,
    extension_spec,
    tree_spec,
)
from labeltree.core.yamlio import check_model, line_of, load_any
from labeltree.errors import LabeltreeError

CheckBase = Callable[[TreeFile, Path], object]


def expand_extends(data: dict[str, Any], path: Path, check_base: CheckBase,
                   _seen: tuple[Path, ...] = ()) -> TreeFile:
    """A tree file with `extends: BASE` -> the full tree file it stands for (module doc)."""
    if "tree" in data:
        raise LabeltreeError(f"unknown top-level key(s) {sorted(set(data) - EXTENSION_KEYS)} in a tree file with "
                             "'extends'; an extension adds nodes with 'add', it has no 'tree'", path,
                             line_of(path, "tree"))
    ext = extension_spec(data, path)
    if ext.include is not None:
        ext = _apply_includes(ext, path)
    base_path = _base_file(ext.extends, path, _seen)
    raw = load_any(base_path, "tree")
    if isinstance(raw, dict) and "extends" in raw:
        base = expand_extends(raw, base_path, check_base, (*_seen, path.resolve()))
    else:
        base = tree_spec(raw, base_path)
    check_base(base, base_path)  # the base's own errors, with its own file and lines
    return _extended(base, base_path, ext, path)


def _base_file(ref: str, path: Path, seen: tuple[Path, ...]) -> Path:
    """The file `extends:` names, refused when it closes a cycle, makes the chain too long or is missing."""
    base_path = tree_ref_path(ref, path)
    chain = (*seen, path.resolve())
    if base_path.resolve() in chain:
        raise LabeltreeError(f"extends: cycle: '{base_path}' extends itself "
                             f"({' -> '.join(str(p) for p in (*chain, base_path.resolve()))})", path,
                             line_of(path, "extends"))
    if len(chain) >= MAX_EXTENDS:
        raise LabeltreeError(f"extends: more than {MAX_EXTENDS} tree files extend one another (from "
                             f"{chain[0].name} to {path.name}); extend the tree you mean directly", path,
                             line_of(path, "extends"))
    if not base_path.exists():
        raise LabeltreeError(f"extends: base tree file not found (searched {base_path.resolve()})", path,
                             line_of(path, "extends"))
    return base_path


def _extended(base: TreeFile, base_path: Path, ext: ExtensionFile, path: Path) -> TreeFile:
    """`base` (a full tree read from `base_path`) with the extension `ext` (read from `path`) applied."""
    def ref(d: str) -> str:  # the base's taxonomy paths, made absolute (they are relative to the base)
        return dataset_ref(d, base_path)

    base_maps = {ref(k): v.model_copy(update={"inherit": ref(v.inherit)}) if v.inherit else v
                 for k, v in base.mappings.items()}
    for k in ext.mappings:
        if ref(k) in base_maps or k in base_maps:
            raise LabeltreeError(f"mappings.{k}: dataset is already mapped by the base tree {base_path.name}; an "
                                 "extension maps new datasets only (copy the base to change its mappings)", path,
                                 line_of(path, "mappings", k))
    own = ext.supervision
    supervision = Supervision(
        exclude_single_child=own.exclude_single_child if own.exclude_single_child is not None
        else base.supervision.exclude_single_child,
        overrides=[o.model_copy(update={"dataset": ref(o.dataset)}) for o in base.supervision.overrides]
        + own.overrides)
    full = {"name": ext.name or f"{base.name or base_path.stem}+{path.stem}", "description": ext.description,
            "datasets": [ref(d) for d in base.datasets] + ext.datasets,
            "evaluation_datasets": [ref(d) for d in base.evaluation_datasets] + ext.evaluation_datasets,
            "tree": _grown(copy.deepcopy(base.tree), ext.add, base_path, path),
            "mappings": {**base_maps, **ext.mappings}, "supervision": supervision}
    return check_model(TreeFile, full, path, "tree file")


def _grown(tree: list[Any], add: dict[str, list[Any]], base_path: Path, path: Path) -> list[Any]:
    """The base's `tree` list with the extension's `add` applied (in place)."""
    for parent, kids in add.items():
        if parent == ROOT:
            tree.extend(kids)
        elif not _append_children(tree, parent, kids):
            raise LabeltreeError(f"add: '{parent}' is not a node of the base tree {base_path.name}", path,
                                 line_of(path, "add", parent))
    return tree


def _append_children(entries: list[Any], parent: str, kids: list[Any]) -> bool:
    """Append `kids` under the node `parent` in a tree-file list (in place); False if it is not there.
    Iterative, each list once: an added list may contain itself through a YAML alias (parse_tree names it)."""
    stack, seen = [entries], set()
    while stack:
        entries = stack.pop()
        if id(entries) in seen:
            continue
        seen.add(id(entries))
        for k, e in enumerate(entries):
            if isinstance(e, str | int | float) and not isinstance(e, bool) and str(e) == parent:
                entries[k] = {parent: list(kids)}
                return True
            if isinstance(e, dict) and len(e) == 1:
                name, sub = next(iter(e.items()))
                if str(name) == parent:
                    e[name] = list(sub or []) + list(kids)
                    return True
                if isinstance(sub, list):
                    stack.append(sub)
    return False


# -- include: ----------------------------------------------------------------------------------------

def _apply_includes(ext: ExtensionFile, path: Path) -> ExtensionFile:
    """`include: [EXT, ...]`: other extensions' datasets, nodes, mappings and overrides, applied to
    THIS file's base (their own `extends` only says which tree they were written against), before this
    file's own. A dataset add-on written once serves every base tree that has the nodes it names."""
    seen: set[Path] = set()
    parts = [_included(ref, k, path, seen) for k, ref in enumerate(ext.include or [])] + [(ext, path)]
    datasets: list[str] = []
    evaluated: list[str] = []
    add: dict[str, list[Any]] = {}
    mappings: dict[str, MappingSpec] = {}
    supervision = Supervision()
    for part, where in parts:
        datasets += [dataset_ref(d, where) for d in part.datasets]
        evaluated += [dataset_ref(d, where) for d in part.evaluation_datasets]
        for parent, kids in part.add.items():
            add.setdefault(parent, []).extend(kids)
        for dset, m in part.mappings.items():
            if dataset_ref(dset, where) in mappings:
                raise LabeltreeError(f"mappings.{dset}: dataset is mapped twice (by an included extension and "
                                     f"by {where.name})", where, line_of(where, "mappings", dset))
            mappings[dataset_ref(dset, where)] = m
        supervision.overrides += [o.model_copy(update={"dataset": dataset_ref(o.dataset, where)})
                                  for o in part.supervision.overrides]
        if part.supervision.exclude_single_child is not None:
            supervision.exclude_single_child = part.supervision.exclude_single_child
    return ext.model_copy(update={"include": None, "datasets": datasets, "evaluation_datasets": evaluated,
                                  "add": add, "mappings": mappings, "supervision": supervision})


def _included(ref: str, k: int, path: Path, seen: set[Path]) -> tuple[ExtensionFile, Path]:
    """Entry k of `path`'s `include:` list: the extension and its file, checked (once each)."""
    try:
        where = tree_ref_path(ref, path)
    except LabeltreeError:
        raise LabeltreeError(f"include: unknown extension '{ref}': use a bundled tree name "
                             f"({', '.join(bundled_hierarchies())}) or a path to a .yaml file", path,
                             line_of(path, "include", k)) from None
    if where.resolve() in seen:
        raise LabeltreeError(f"include: '{ref}' is included twice; name each extension once", path,
                             line_of(path, "include", k))
    seen.add(where.resolve())
    if not where.exists():
        raise LabeltreeError(f"include: extension file not found (searched {where.resolve()})", path,
                             line_of(path, "include", k))
    part = load_any(where, "tree")
    if not isinstance(part, dict) or "extends" not in part or "include" in part:
        raise LabeltreeError(f"include: '{ref}' is not an extension without includes of its own (a tree "
                             "file with 'extends' and no 'include')", path, line_of(path, "include", k))
    return extension_spec(part, where), where


def tree_files(ref: str | Path | None) -> list[Path]:
    """The tree file `ref` (a path) and every file it reads through `extends:` and `include:`, before it is
    loaded: all are inputs of the command, which no output may replace. Unreadable links are left to the
    loader, which reports them with their line."""
    from labeltree.resources import is_path_ref

    if ref is None or not is_path_ref(ref) or not Path(ref).is_file():
        return []
    out: list[Path] = []
    todo = [Path(ref)]
    while todo and len(out) < 4 * MAX_EXTENDS:
        path = todo.pop()
        if any(path.resolve() == p.resolve() for p in out):
            continue
        out.append(path)
        try:
            data = load_any(path, "tree")
            refs = [data.get("extends"), *(data.get("include") or [])] if isinstance(data, dict) else []
            todo += [p for p in (tree_ref_path(r, path) for r in refs if isinstance(r, str)) if p.is_file()]
        except (LabeltreeError, TypeError):
            continue
    return out
