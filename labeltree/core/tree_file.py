"""Tree files: read one (with `extends:` / `include:` expanded and `restrict`), build the Hierarchy, write one.

The file's shape is checked by the models in `tree_schema`; this module checks what they cannot see
(unique node names, classes and nodes that exist, every class placed, datasets listed and mapped).
Public because `labeltree merge` builds trees from the same pieces (`parse_tree`, `parse_mapping`).
Where tree files are (bundled names, the default tree of a set of datasets) is `bundled_trees`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from labeltree.core.bundled_trees import (  # noqa: F401 - re-exported: their long-standing import path
    DEFAULT_TREE,
    bundled_for,
    bundled_hierarchies,
    declared_datasets,
    default_tree,
    resolve_ref,
)
from labeltree.core.hierarchy import ROOT, DatasetMapping, Hierarchy, Node
from labeltree.core.taxonomy import Taxonomy, load_taxonomy, normalise_name
from labeltree.core.tree_extends import expand_extends
from labeltree.core.tree_schema import EXTENSION_KEYS, MappingSpec, Override, TreeFile, tree_spec  # noqa: F401
from labeltree.core.yamlio import check_model, line_of, load_any, load_yaml
from labeltree.errors import LabeltreeError
from labeltree.resources import is_path_ref

# Semantic trees are a handful of levels deep (the paper's: 4); a bound keeps a hostile file from
# recursing without end here and in everything that walks the tree.
MAX_TREE_DEPTH = 32

# -- the tree ------------------------------------------------------------------------------------

def parse_tree(items: Any, path: Path) -> list[Node]:
    """`tree:` entries -> nodes (index 0 = root), names unique, no one-child node, at most MAX_TREE_DEPTH deep."""
    nodes = [Node(ROOT, -1, 0)]
    seen: dict[str, int] = {ROOT: 0}
    _add_children(nodes, seen, items, 0, ("tree",), path)
    if len(nodes[0].children) == 1:
        raise LabeltreeError("tree: the root has one child; a classifier needs >= 2 classes", path,
                             line_of(path, "tree"))
    return nodes


def _add_children(nodes: list[Node], seen: dict[str, int], entries: Any, parent: int, keys: tuple,
                  path: Path) -> None:
    trail = nodes[parent].name
    if not isinstance(entries, list) or not entries:
        raise LabeltreeError(f"tree: children of '{trail}' must be a non-empty list", path, line_of(path, *keys))
    if nodes[parent].level >= MAX_TREE_DEPTH:
        raise LabeltreeError(f"tree: nodes under '{trail}' are more than {MAX_TREE_DEPTH} levels deep", path,
                             line_of(path, *keys))
    for k, e in enumerate(entries):
        here = (*keys, k)
        if isinstance(e, str | int | float) and not isinstance(e, bool):
            name, kids = str(e), None
        elif isinstance(e, dict) and len(e) == 1:
            name, kids = next(iter(e.items()))
            name = str(name)
            here = (*here, name)
        else:
            raise LabeltreeError(f"tree: under '{trail}', each entry must be a name or "
                                 f"'Name: [children]', got {e!r}", path, line_of(path, *here))
        _check_new_name(nodes, seen, name, parent, path, here)
        idx = len(nodes)
        nodes.append(Node(name, parent, nodes[parent].level + 1))
        nodes[parent].children.append(idx)
        seen[name] = idx
        if kids is not None:
            _add_children(nodes, seen, kids, idx, here, path)
            if len(nodes[idx].children) == 1:
                only = nodes[nodes[idx].children[0]].name
                raise LabeltreeError(f"tree: node '{name}' has one child ('{only}'); a classifier "
                                     "needs >= 2 classes: map the classes to the parent instead", path,
                                     line_of(path, *here))


def _check_new_name(nodes: list[Node], seen: dict[str, int], name: str, parent: int, path: Path,
                    here: tuple) -> None:
    """`name` may be added under `parent`: not the root's name, not taken (a cycle if taken above)."""
    trail = nodes[parent].name
    if name == ROOT:
        raise LabeltreeError(f"tree: '{ROOT}' is reserved for the tree's root; rename the node "
                             f"under '{trail}'", path, line_of(path, *here))
    if name in seen:
        first = seen[name]
        if first in _ancestors(nodes, parent):
            above = " > ".join(nodes[a].name for a in reversed(_ancestors(nodes, parent)) if a > 0)
            raise LabeltreeError(f"tree: cycle: node '{name}' appears inside itself "
                                 f"({above} > {name}); node names must be unique", path, line_of(path, *here))
        raise LabeltreeError(f"tree: node '{name}' appears twice (under '{trail}' and under "
                             f"'{nodes[nodes[first].parent].name}'); node names must be unique",
                             path, line_of(path, *here))


def _ancestors(nodes: list[Node], i: int) -> list[int]:
    out = [i]
    while nodes[out[-1]].parent >= 0:
        out.append(nodes[out[-1]].parent)
    return out


# -- mappings ------------------------------------------------------------------------------------

def parse_mapping(key: str, spec: MappingSpec | Any, nodes: list[Node], index: dict[str, int], tax: Taxonomy,
                  path: Path, inherited: dict[int, int | None] | None, evaluation_only: bool,
                  allow_missing: bool = False) -> DatasetMapping:
    """Parse mappings.<key> (a MappingSpec, or its raw data). With `allow_missing` (merge with partial
    rules) classes that are neither mapped nor ignored are left out instead of being an error."""
    if not isinstance(spec, MappingSpec):
        spec = check_model(MappingSpec, spec, path, "tree file", prefix=("mappings", key))
    to_node: dict[int, int | None] = dict(inherited or {})
    placed: dict[int, str] = {}  # class id -> 'map' / 'ignore': where the file places it
    for ref, target in spec.map.items():
        cid = _class_id(key, tax, ref, "map", placed, path)
        if target is not None and target not in index:
            raise LabeltreeError(f"mappings.{key}.map: class '{tax.by_id(cid).name}' maps to "
                                 f"'{target}', which is not a node of the tree", path,
                                 line_of(path, "mappings", key, "map", ref))
        to_node[cid] = index[target] if target is not None else None
    for k, ref in enumerate(spec.ignore):
        to_node[_class_id(key, tax, ref, "ignore", placed, path, k)] = None
    if spec.by_name:
        _map_by_name(tax, nodes, to_node)
    missing = [c for c in tax.classes if c.id not in to_node]
    if missing and not allow_missing:
        names = ", ".join(f"'{c.name}' (id {c.id})" for c in missing[:8])
        more = f" and {len(missing) - 8} more" if len(missing) > 8 else ""
        raise LabeltreeError(f"mappings.{key}: class {names}{more} of dataset '{tax.name}' is neither "
                             "mapped to a node nor listed under 'ignore'", path, line_of(path, "mappings", key))
    return DatasetMapping(key, tax, to_node, evaluation_only)


def _class_id(key: str, tax: Taxonomy, ref: int | str, where: str, placed: dict[int, str], path: Path,
              index: int | None = None) -> int:
    """The class `ref` of mappings.<key>.<where> names; each class placed once."""
    at = ("mappings", key, where, ref if index is None else index)
    c = tax.find(ref)
    if c is None:  # line_of re-parses the file: only on the error path (it made loading take seconds)
        raise LabeltreeError(f"mappings.{key}.{where}: '{ref}' is not a class of dataset "
                             f"'{tax.name}' (taxonomy {tax.name} has {len(tax.classes)} classes; "
                             f"`labeltree validate` or the taxonomy file lists them)", path, line_of(path, *at))
    if c.id in placed:
        raise LabeltreeError(f"mappings.{key}: class '{c.name}' (id {c.id}) of dataset '{tax.name}' is "
                             f"mapped twice (in {placed[c.id]} and in {where}); keep one", path, line_of(path, *at))
    placed[c.id] = where
    return c.id


def _map_by_name(tax: Taxonomy, nodes: list[Node], to_node: dict[int, int | None]) -> None:
    """`by_name: true`: each class not placed yet goes to the node of its normalised name (readable
    name, name, synonyms, in that order)."""
    by_norm = {normalise_name(n.name): i for i, n in enumerate(nodes) if i > 0}
    for c in tax.classes:
        if c.id in to_node:
            continue
        hit = next((by_norm[normalise_name(n)] for n in (c.display, c.name, *c.synonyms)
                    if normalise_name(n) in by_norm), None)
        if hit is not None:
            to_node[c.id] = hit


# -- a whole file --------------------------------------------------------------------------------

def full_tree_spec(data: Any, path: Path, rules: bool = False) -> TreeFile:
    """A tree file's data as a checked full tree: an extension expanded (its base checked on its own
    first), an include without extends refused. `rules`: merge's partial rules files."""
    if not isinstance(data, dict):
        raise LabeltreeError("a tree file must be a YAML mapping with 'name', 'datasets', 'tree', "
                             "'mappings'", path)
    if "extends" in data:
        return expand_extends(data, path, lambda base, base_path: hierarchy_from_dict(base, base_path))
    if "include" in data:
        raise LabeltreeError("include: only an extension includes others: add 'extends: BASE' (the tree the "
                             "included extensions are applied to, e.g. cityscapes+vistas+gtsdb)", path,
                             line_of(path, "include"))
    return tree_spec(data, path, rules)


def hierarchy_from_dict(data: Any, path: Path, restrict: list[str] | None = None) -> Hierarchy:
    """The Hierarchy a tree file's data (or its checked TreeFile) defines; `restrict`: only these datasets."""
    spec = data if isinstance(data, TreeFile) else full_tree_spec(data, path)
    nodes = parse_tree(spec.tree, path)
    mappings = _dataset_mappings(spec, nodes, path)
    overrides = _overrides(spec.supervision.overrides, mappings, nodes, path)
    h = Hierarchy(spec.name or path.stem, nodes, mappings, overrides,
                  spec.supervision.exclude_single_child is not False, path)
    if restrict is not None:
        h = restrict_hierarchy(h, restrict)
    assign_colors(h)
    return h


def _dataset_mappings(spec: TreeFile, nodes: list[Node], path: Path) -> dict[str, DatasetMapping]:
    """Every listed dataset's mapping, in the file's order (an `inherit` names one mapped earlier)."""
    listed = spec.datasets + spec.evaluation_datasets
    for d in listed:
        if d not in spec.mappings:
            raise LabeltreeError(f"dataset '{d}' is listed but has no entry under 'mappings'", path,
                                 line_of(path, "datasets"))
    for d in spec.mappings:
        if d not in listed:
            raise LabeltreeError(f"mappings.{d}: dataset is not listed under 'datasets'", path,
                                 line_of(path, "mappings", d))
    index = {n.name: i for i, n in enumerate(nodes)}
    mappings: dict[str, DatasetMapping] = {}
    for d in listed:
        m = spec.mappings[d]
        try:
            tax = load_taxonomy(resolve_ref(d, path))
        except LabeltreeError as e:
            if e.path is not None:  # the taxonomy file itself is bad: its own file and line
                raise
            raise LabeltreeError(f"dataset '{d}': {e.message}", path, line_of(path, "mappings", d)) from None
        inherited = None
        if m.inherit:
            if m.inherit not in mappings:
                raise LabeltreeError(f"mappings.{d}.inherit: '{m.inherit}' must be a dataset mapped "
                                     "earlier in the file", path, line_of(path, "mappings", d, "inherit"))
            inherited = {c: n for c, n in mappings[m.inherit].to_node.items() if tax.find(c) is not None}
        mappings[d] = parse_mapping(d, m, nodes, index, tax, path, inherited, d in spec.evaluation_datasets)
    return mappings


def _overrides(entries: list[Override], mappings: dict[str, DatasetMapping], nodes: list[Node],
               path: Path) -> dict[tuple[str, str], bool]:
    """supervision.overrides: (dataset, classifier) -> supervise, each naming a mapped dataset and a node
    with a classifier."""
    index = {n.name: i for i, n in enumerate(nodes)}
    out: dict[tuple[str, str], bool] = {}
    for k, o in enumerate(entries):
        if o.dataset not in mappings:
            raise LabeltreeError(f"supervision.overrides: unknown dataset '{o.dataset}'", path,
                                 line_of(path, "supervision", "overrides", k))
        if o.classifier not in index or len(nodes[index[o.classifier]].children) < 2:
            raise LabeltreeError(f"supervision.overrides: '{o.classifier}' is not a node with a "
                                 "classifier", path, line_of(path, "supervision", "overrides", k))
        out[(o.dataset, o.classifier)] = o.supervise
    return out


def _class_ref(tax: Taxonomy, cid: int) -> str | int:
    """How a tree file names a class: its name, or its id where the name would read as an id."""
    name = tax.by_id(cid).name
    return cid if name.strip().lstrip("-").isdigit() or tax.find(name) is not tax.by_id(cid) else name


def hierarchy_to_dict(h: Hierarchy, out_dir: Path | None = None) -> dict[str, Any]:
    """A tree file (every class mapped or ignored explicitly) that `hierarchy_from_dict` reads back
    to the same nodes, classifiers, mappings and supervision.

    Dataset keys that are taxonomy paths are rewritten relative to `out_dir` (where the file goes).
    """
    def subtree(i: int) -> list[Any]:
        out: list[Any] = []
        for c in h.nodes[i].children:
            out.append({h.nodes[c].name: subtree(c)} if h.nodes[c].children else h.nodes[c].name)
        return out

    def key_of(d: str) -> str:
        if Path(d).suffix not in (".yaml", ".yml"):
            return d
        src = Path(resolve_ref(d, h.path)) if h.path is not None else Path(d)
        if out_dir is None:
            return str(src)
        return os.path.relpath(src.resolve(), Path(out_dir).resolve())

    mappings: dict[str, Any] = {}
    for d, m in h.mappings.items():
        mapped = {_class_ref(m.taxonomy, cid): h.nodes[n].name for cid, n in m.to_node.items() if n is not None}
        ignored = [_class_ref(m.taxonomy, cid) for cid, n in m.to_node.items() if n is None]
        spec: dict[str, Any] = {}
        if mapped:
            spec["map"] = mapped
        if ignored:
            spec["ignore"] = ignored
        mappings[key_of(d)] = spec
    data: dict[str, Any] = {"name": h.name, "datasets": [key_of(d) for d in h.datasets]}
    evaluated = [key_of(d) for d, m in h.mappings.items() if m.evaluation_only]
    if evaluated:
        data["evaluation_datasets"] = evaluated
    data["tree"] = subtree(0)
    data["mappings"] = mappings
    data["supervision"] = {
        "exclude_single_child": h.exclude_single_child,
        "overrides": [{"dataset": key_of(d), "classifier": c, "supervise": v} for (d, c), v in h.overrides.items()],
    }
    return data


def write_hierarchy(h: Hierarchy, target: str | Path, header: str = "") -> Path:
    """Write `h` as a tree file, atomically (never a half-written file where a good one was)."""
    from labeltree.fsutil import write_text

    target = Path(target)
    data = hierarchy_to_dict(h, target.parent)
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=120, default_flow_style=False)
    if header:
        text = "".join(f"# {ln}\n" if ln else "#\n" for ln in header.splitlines()) + text
    write_text(target, text)
    return target


def assign_colors(h: Hierarchy) -> None:
    """Node colour = colour of the first dataset class mapped to it; else a stable derived one."""
    done: set[int] = set()
    for m in h.mappings.values():
        for cid, n in sorted(m.to_node.items()):
            if n is not None and n not in done:
                h.nodes[n].color = tuple(m.taxonomy.by_id(cid).color)
                done.add(n)
    for i, n in enumerate(h.nodes):
        if i not in done:
            v = sum((k + 1) * ord(ch) for k, ch in enumerate(n.name))
            n.color = ((v * 67) % 256, (v * 151) % 256, (v * 211) % 256)


def restrict_hierarchy(h: Hierarchy, datasets: list[str]) -> Hierarchy:
    """The sub-tree that `datasets` need: unreached nodes pruned, one-child nodes folded."""
    keep_maps = {}
    for d in datasets:
        m = h.mapping(d)
        keep_maps[m.dataset] = m
    used = {n for m in keep_maps.values() for n in m.to_node.values() if n is not None}
    needed = set()
    for n in used:
        needed.update(h.ancestors(n))
    remap = {i: i for i in range(len(h.nodes))}
    # fold nodes left with a single needed child into their parent
    changed = True
    kids = {i: [c for c in n.children if c in needed] for i, n in enumerate(h.nodes)}
    while changed:
        changed = False
        for i in list(needed):
            if len(kids[i]) == 1:
                only = kids[i][0]
                for sub in h.descendants(only):
                    if sub in needed:
                        needed.discard(sub)
                        remap[sub] = i
                kids[i] = []
                changed = True
    order = [i for i in range(len(h.nodes)) if i in needed]
    new_index = {old: k for k, old in enumerate(order)}
    nodes = []
    for old in order:
        n = h.nodes[old]
        nodes.append(Node(n.name, new_index[n.parent] if n.parent >= 0 else -1, n.level))
    for k, old in enumerate(order):
        nodes[k].children = [new_index[c] for c in kids[old] if c in new_index]

    def final(old: int) -> int:
        while remap[old] != old:
            old = remap[old]
        return new_index[old]

    maps = {d: DatasetMapping(d, m.taxonomy, {c: (final(n) if n is not None else None)
                                              for c, n in m.to_node.items()}, m.evaluation_only)
            for d, m in keep_maps.items()}
    name = "+".join(keep_maps)
    overrides = {k: v for k, v in h.overrides.items() if k[0] in maps and k[1] in {n.name for n in nodes}}
    return Hierarchy(name, nodes, maps, overrides, h.exclude_single_child, h.path)


def load_hierarchy(ref: str | Path = "cityscapes+vistas+gtsdb") -> Hierarchy:
    """Load a tree file by bundled name (`cityscapes+vistas+gtsdb`, `cityscapes+vistas`) or path.

    A name of datasets that no bundled file has exactly is served by the smallest bundled tree
    that covers them, restricted to those datasets.
    """
    if is_path_ref(ref):  # a path is a path; a name is bundled, never shadowed by the working directory
        return hierarchy_from_dict(load_yaml(ref, "tree"), Path(ref))
    known = bundled_hierarchies()
    if str(ref) in known:
        return hierarchy_from_dict(load_any(known[str(ref)], "tree"), known[str(ref)])
    try:
        found = bundled_for([d for d in str(ref).split("+") if d])
    except LabeltreeError:  # a part that names no dataset
        found = None
    if found is not None:
        _name, path, keys = found
        return hierarchy_from_dict(load_any(path, "tree"), path, restrict=keys)
    raise LabeltreeError(f"no bundled tree covers '{ref}' (bundled: {', '.join(known)}); "
                         "write a tree file (see docs/taxonomy-format.md) or run `labeltree merge`")
