"""Tree files: parse (with `extends:` and `restrict`), validate, write, and find the bundled ones.

Public because `labeltree merge` builds trees from the same pieces (`parse_tree`, `parse_mapping`).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import yaml

from labeltree.core.hierarchy import ROOT, DatasetMapping, Hierarchy, Node
from labeltree.core.taxonomy import Taxonomy, load_taxonomy, normalise_name, resolve_taxonomy_path
from labeltree.core.yamlio import line_of, load_yaml
from labeltree.errors import LabeltreeError
from labeltree.resources import hierarchy_dir, is_path_ref

DEFAULT_TREE = "cityscapes+vistas+gtsdb"  # the paper's tree

# -- parsing -------------------------------------------------------------------------------------

def parse_tree(items: Any, path: Path) -> list[Node]:
    nodes = [Node(ROOT, -1, 0)]
    seen: dict[str, int] = {ROOT: 0}

    def trail_of(i: int) -> str:
        return " > ".join(nodes[a].name for a in reversed(_ancestors(nodes, i)) if a > 0)

    def add(entries: Any, parent: int, trail: str, keys: tuple) -> None:
        if not isinstance(entries, list) or not entries:
            raise LabeltreeError(f"tree: children of '{trail}' must be a non-empty list", path,
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
            if name == ROOT:
                raise LabeltreeError(f"tree: '{ROOT}' is reserved for the tree's root; rename the node "
                                     f"under '{trail}'", path, line_of(path, *here))
            if name in seen:
                first = seen[name]
                if first in _ancestors(nodes, parent):
                    raise LabeltreeError(f"tree: cycle: node '{name}' appears inside itself "
                                         f"({trail_of(parent)} > {name}); node names must be unique",
                                         path, line_of(path, *here))
                raise LabeltreeError(f"tree: node '{name}' appears twice (under '{trail}' and under "
                                     f"'{nodes[nodes[first].parent].name}'); node names must be unique",
                                     path, line_of(path, *here))
            idx = len(nodes)
            nodes.append(Node(name, parent, nodes[parent].level + 1))
            nodes[parent].children.append(idx)
            seen[name] = idx
            if kids is not None:
                add(kids, idx, name, here)
                if len(nodes[idx].children) == 1:
                    only = nodes[nodes[idx].children[0]].name
                    raise LabeltreeError(f"tree: node '{name}' has one child ('{only}'); a classifier "
                                         "needs >= 2 classes: map the classes to the parent instead", path,
                                         line_of(path, *here))

    add(items, 0, ROOT, ("tree",))
    if len(nodes[0].children) == 1:
        raise LabeltreeError("tree: the root has one child; a classifier needs >= 2 classes", path,
                             line_of(path, "tree"))
    return nodes


def _ancestors(nodes: list[Node], i: int) -> list[int]:
    out = [i]
    while nodes[out[-1]].parent >= 0:
        out.append(nodes[out[-1]].parent)
    return out


def parse_mapping(key: str, spec: Any, nodes: list[Node], index: dict[str, int], tax: Taxonomy,
                   path: Path, inherited: dict[int, int | None] | None, evaluation_only: bool,
                   allow_missing: bool = False) -> DatasetMapping:
    """Parse mappings.<key>. With `allow_missing` (merge with partial rules) classes that are neither
    mapped nor ignored are left out instead of being an error."""
    if not isinstance(spec, dict):
        raise LabeltreeError(f"mappings.{key}: expected a mapping with 'map', 'ignore', 'by_name'", path,
                             line_of(path, "mappings", key))
    unknown = set(spec) - {"map", "ignore", "by_name", "inherit"}
    if unknown:
        raise LabeltreeError(f"mappings.{key}: unknown key(s) {sorted(unknown)}; "
                             "allowed: map, ignore, by_name, inherit", path, line_of(path, "mappings", key))
    to_node: dict[int, int | None] = dict(inherited or {})
    explicit: dict[int, str] = {}
    if not isinstance(spec.get("map") or {}, dict):
        raise LabeltreeError(f"mappings.{key}.map: expected 'class: node' lines", path,
                             line_of(path, "mappings", key, "map"))
    if not isinstance(spec.get("ignore") or [], list):
        raise LabeltreeError(f"mappings.{key}.ignore: expected a list of classes", path,
                             line_of(path, "mappings", key, "ignore"))

    def cls(ref: Any, where: str, *keys: Any) -> int:
        c = tax.find(ref if isinstance(ref, int) else str(ref))
        if c is None:  # line_of re-parses the file: only on the error path (it made loading take seconds)
            raise LabeltreeError(f"mappings.{key}.{where}: '{ref}' is not a class of dataset "
                                 f"'{tax.name}' (taxonomy {tax.name} has {len(tax.classes)} classes; "
                                 f"`labeltree validate` or the taxonomy file lists them)", path,
                                 line_of(path, "mappings", key, where, *keys))
        if c.id in explicit:
            raise LabeltreeError(f"mappings.{key}: class '{c.name}' (id {c.id}) of dataset '{tax.name}' is "
                                 f"mapped twice (in {explicit[c.id]} and in {where}); keep one", path,
                                 line_of(path, "mappings", key, where, *keys))
        explicit[c.id] = where
        return c.id

    for ref, target in (spec.get("map") or {}).items():
        cid = cls(ref, "map", ref)
        if target is None:
            to_node[cid] = None
            continue
        if str(target) not in index:
            raise LabeltreeError(f"mappings.{key}.map: class '{tax.by_id(cid).name}' maps to "
                                 f"'{target}', which is not a node of the tree", path,
                                 line_of(path, "mappings", key, "map", ref))
        to_node[cid] = index[str(target)]
    for k, ref in enumerate(spec.get("ignore") or []):
        to_node[cls(ref, "ignore", k)] = None
    if spec.get("by_name"):
        by_norm = {normalise_name(n.name): i for i, n in enumerate(nodes) if i > 0}
        for c in tax.classes:
            if c.id in to_node:
                continue
            for n in (c.display, c.name, *c.synonyms):
                if normalise_name(n) in by_norm:
                    to_node[c.id] = by_norm[normalise_name(n)]
                    break
    missing = [c for c in tax.classes if c.id not in to_node]
    if missing and not allow_missing:
        names = ", ".join(f"'{c.name}' (id {c.id})" for c in missing[:8])
        more = f" and {len(missing) - 8} more" if len(missing) > 8 else ""
        raise LabeltreeError(f"mappings.{key}: class {names}{more} of dataset '{tax.name}' is neither "
                             "mapped to a node nor listed under 'ignore'", path, line_of(path, "mappings", key))
    return DatasetMapping(key, tax, to_node, evaluation_only)


EXTENSION_KEYS = {"name", "description", "extends", "include", "datasets", "evaluation_datasets", "add", "mappings",
                  "supervision"}
# what an `include:`d extension contributes to the including one
INCLUDED_KEYS = ("datasets", "evaluation_datasets", "add", "mappings", "supervision")


def _dataset_ref(d: Any, where: Path) -> str:
    """A dataset entry of the tree file `where`: a name as it is, a taxonomy path made absolute."""
    return str(resolve_ref(str(d), where))


def _dataset_list(src: dict[str, Any], key: str, where: Path) -> list[Any]:
    """`datasets` / `evaluation_datasets` of a tree file, checked to be a list (empty when absent)."""
    v = src.get(key) or []
    if not isinstance(v, list):
        raise LabeltreeError(f"'{key}' must be a list of dataset names or taxonomy files", where, line_of(where, key))
    return v


def _base_path(ref: str, path: Path) -> Path:
    """The tree file an `extends:` names: a bundled tree name or a path relative to the extension."""
    p = Path(ref)
    if p.suffix in (".yaml", ".yml"):
        return p if p.is_absolute() else path.parent / p
    known = bundled_hierarchies()
    if ref in known:
        return known[ref]
    raise LabeltreeError(f"extends: unknown tree '{ref}': use a bundled tree ({', '.join(known)}) or a path "
                         "to a tree file", path, line_of(path, "extends"))


def expand_extends(data: dict[str, Any], path: Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A tree file with `extends: BASE` -> the full tree file it stands for.

    An extension adds datasets to a base tree without copying it: `datasets` and
    `evaluation_datasets` are appended to the base's, `add` appends nodes under existing ones
    (`root` for new root children; a leaf that gets children becomes an inner node with a
    classifier), `mappings` map the new datasets only, and `supervision.overrides` are appended.
    The base is validated on its own first, so its errors name its own file.
    """
    unknown = set(data) - EXTENSION_KEYS
    if unknown:
        hint = "; an extension adds nodes with 'add', it has no 'tree'" if "tree" in unknown else ""
        raise LabeltreeError(f"unknown top-level key(s) {sorted(unknown)} in a tree file with 'extends'{hint}", path)
    if "include" in data:
        data = _apply_includes(data, path)
    base_path = _base_path(str(data["extends"]), path)
    if base_path.resolve() in _seen:
        raise LabeltreeError(f"extends: cycle: '{base_path}' extends itself "
                             f"({' -> '.join(str(p) for p in (*_seen, base_path.resolve()))})", path,
                             line_of(path, "extends"))
    if not base_path.exists():
        raise LabeltreeError(f"extends: base tree file not found (searched {base_path.resolve()})", path,
                             line_of(path, "extends"))
    base = load_yaml(base_path, "tree")
    if isinstance(base, dict) and "extends" in base:
        base = expand_extends(base, base_path, (*_seen, path.resolve()))
    hierarchy_from_dict(base, base_path)  # the base's own errors, with its own file and lines

    def ref(d: Any) -> str:  # the base's taxonomy paths, made absolute (they are relative to the base)
        return _dataset_ref(d, base_path)

    out: dict[str, Any] = {"name": str(data.get("name") or f"{base.get('name', base_path.stem)}+{path.stem}")}
    out["datasets"] = [ref(d) for d in _dataset_list(base, "datasets", base_path)]
    out["datasets"] += _dataset_list(data, "datasets", path)
    evaluated = [ref(d) for d in _dataset_list(base, "evaluation_datasets", base_path)]
    evaluated += _dataset_list(data, "evaluation_datasets", path)
    if evaluated:
        out["evaluation_datasets"] = evaluated
    tree = copy.deepcopy(base["tree"])
    add = data.get("add") or {}
    if not isinstance(add, dict):
        raise LabeltreeError("add: expected 'Parent node: [new children]' lines (root for the tree's root)", path,
                             line_of(path, "add"))
    for parent, kids in add.items():
        if not isinstance(kids, list) or not kids:
            raise LabeltreeError(f"add.{parent}: expected a non-empty list of new nodes", path,
                                 line_of(path, "add", parent))
        if str(parent) == ROOT:
            tree.extend(kids)
        elif not _append_children(tree, str(parent), kids):
            raise LabeltreeError(f"add: '{parent}' is not a node of the base tree {base_path.name}", path,
                                 line_of(path, "add", parent))
    out["tree"] = tree
    base_maps = {ref(k): v for k, v in (base.get("mappings") or {}).items()}
    own_maps = data.get("mappings") or {}
    if not isinstance(own_maps, dict):
        raise LabeltreeError("'mappings' must map dataset names to their mappings", path, line_of(path, "mappings"))
    for k in own_maps:
        if ref(k) in base_maps or k in base_maps:
            raise LabeltreeError(f"mappings.{k}: dataset is already mapped by the base tree {base_path.name}; an "
                                 "extension maps new datasets only (copy the base to change its mappings)", path,
                                 line_of(path, "mappings", k))
    for v in base_maps.values():
        if isinstance(v, dict) and v.get("inherit"):
            v["inherit"] = ref(v["inherit"])
    out["mappings"] = {**base_maps, **own_maps}
    base_sup = base.get("supervision") or {}
    own_sup = data.get("supervision") or {}
    if not isinstance(own_sup, dict):
        raise LabeltreeError("'supervision' must be a mapping (exclude_single_child, overrides)", path,
                             line_of(path, "supervision"))
    out["supervision"] = {
        "exclude_single_child": own_sup.get("exclude_single_child", base_sup.get("exclude_single_child", True)),
        "overrides": [{**o, "dataset": ref(o["dataset"])} if isinstance(o, dict) and "dataset" in o else o
                      for o in base_sup.get("overrides") or []] + list(own_sup.get("overrides") or []),
    }
    return out


def _apply_includes(data: dict[str, Any], path: Path) -> dict[str, Any]:
    """`include: [EXT, ...]`: other extensions' datasets, nodes, mappings and overrides, applied to
    THIS file's base (their own `extends` only says which tree they were written against). A
    dataset add-on written once serves every base tree that has the nodes it names."""
    inc = data.get("include")
    if not isinstance(inc, list) or not inc:
        raise LabeltreeError("include: expected a list of extension files (bundled names or paths)", path,
                             line_of(path, "include"))
    own = {k: v for k, v in data.items() if k != "include"}
    merged: dict[str, Any] = {"datasets": [], "evaluation_datasets": [], "add": {}, "mappings": {},
                              "supervision": {"overrides": []}}
    seen: set[Path] = set()
    parts = [_included(ref, k, path, seen) for k, ref in enumerate(inc)] + [(own, path)]
    for part, where in parts:
        for key, what in (("add", "'Parent node: [new children]' lines"), ("mappings", "dataset: mapping lines"),
                          ("supervision", "exclude_single_child / overrides keys")):
            if part.get(key) is not None and not isinstance(part[key], dict):
                raise LabeltreeError(f"'{key}' must be a mapping ({what}), not a {type(part[key]).__name__}", where,
                                     line_of(where, key))

        for key in ("datasets", "evaluation_datasets"):
            merged[key] += [_dataset_ref(d, where) for d in _dataset_list(part, key, where)]
        for parent, kids in (part.get("add") or {}).items():
            merged["add"].setdefault(parent, []).extend(kids if isinstance(kids, list) else [kids])
        for dset, m in (part.get("mappings") or {}).items():
            if _dataset_ref(dset, where) in merged["mappings"]:
                raise LabeltreeError(f"mappings.{dset}: dataset is mapped twice (by an included extension and "
                                     f"by {where.name})", where, line_of(where, "mappings", dset))
            merged["mappings"][_dataset_ref(dset, where)] = m
        sup = part.get("supervision") or {}
        if isinstance(sup, dict):
            merged["supervision"]["overrides"] += [{**o, "dataset": _dataset_ref(o["dataset"], where)}
                                                   if isinstance(o, dict) and "dataset" in o else o
                                                   for o in sup.get("overrides") or []]
            if "exclude_single_child" in sup:
                merged["supervision"]["exclude_single_child"] = sup["exclude_single_child"]
    out = {k: v for k, v in own.items() if k not in INCLUDED_KEYS}
    out.update({k: v for k, v in merged.items() if v})
    return out


def _included(ref: Any, k: int, path: Path, seen: set[Path]) -> tuple[dict[str, Any], Path]:
    """Entry k of `path`'s `include:` list: the extension's data and file, checked (once each)."""
    if not isinstance(ref, str) or not ref.strip():
        raise LabeltreeError(f"include: entry {k + 1} is {ref!r}; each entry names an extension file "
                             "(a bundled tree name or a path to a .yaml file)", path, line_of(path, "include", k))
    try:
        where = _base_path(ref, path)
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
    part = load_yaml(where, "tree")
    if not isinstance(part, dict) or "extends" not in part or "include" in part:
        raise LabeltreeError(f"include: '{ref}' is not an extension without includes of its own (a tree "
                             "file with 'extends' and no 'include')", path, line_of(path, "include", k))
    bad = set(part) - EXTENSION_KEYS
    if bad:
        raise LabeltreeError(f"unknown top-level key(s) {sorted(bad)} in an extension", where)
    return part, where


def _append_children(entries: list[Any], parent: str, kids: list[Any]) -> bool:
    """Append `kids` under the node `parent` in a tree-file list (in place); False if it is not there."""
    for k, e in enumerate(entries):
        if isinstance(e, str | int | float) and not isinstance(e, bool) and str(e) == parent:
            entries[k] = {parent: list(kids)}
            return True
        if isinstance(e, dict) and len(e) == 1:
            name, sub = next(iter(e.items()))
            if str(name) == parent:
                e[name] = list(sub or []) + list(kids)
                return True
            if isinstance(sub, list) and _append_children(sub, parent, kids):
                return True
    return False


def hierarchy_from_dict(data: Any, path: Path, restrict: list[str] | None = None) -> Hierarchy:
    if not isinstance(data, dict):
        raise LabeltreeError("a tree file must be a YAML mapping with 'name', 'datasets', 'tree', "
                             "'mappings'", path)
    if "extends" in data:
        data = expand_extends(data, path)
    elif "include" in data:
        raise LabeltreeError("include: only an extension includes others: add 'extends: BASE' (the tree the "
                             "included extensions are applied to, e.g. cityscapes+vistas+gtsdb)", path,
                             line_of(path, "include"))
    for k in ("tree", "mappings", "datasets"):
        if k not in data:
            raise LabeltreeError(f"tree file has no '{k}' section", path)
    if not isinstance(data["datasets"], list) or not data["datasets"]:
        raise LabeltreeError("'datasets' must be a non-empty list of dataset names or taxonomy files", path,
                             line_of(path, "datasets"))
    unknown = set(data) - {"name", "description", "datasets", "evaluation_datasets", "tree",
                           "mappings", "supervision"}
    if unknown:
        raise LabeltreeError(f"unknown top-level key(s) {sorted(unknown)}", path)
    nodes = parse_tree(data["tree"], path)
    index = {n.name: i for i, n in enumerate(nodes)}
    maps = data["mappings"] or {}
    if not isinstance(maps, dict):
        raise LabeltreeError("'mappings' must map dataset names to their mappings", path)
    trained = [str(d) for d in data["datasets"]]
    evaluated = [str(d) for d in data.get("evaluation_datasets") or []]
    for d in trained + evaluated:
        if d not in maps:
            raise LabeltreeError(f"dataset '{d}' is listed but has no entry under 'mappings'", path,
                                 line_of(path, "datasets"))
    for d in maps:
        if d not in trained + evaluated:
            raise LabeltreeError(f"mappings.{d}: dataset is not listed under 'datasets'", path,
                                 line_of(path, "mappings", d))
    mappings: dict[str, DatasetMapping] = {}
    for d in trained + evaluated:
        spec = maps[d]
        try:
            tax = load_taxonomy(resolve_ref(d, path))
        except LabeltreeError as e:
            if e.path is not None:  # the taxonomy file itself is bad: its own file and line
                raise
            raise LabeltreeError(f"dataset '{d}': {e.message}", path, line_of(path, "mappings", d)) from None
        inherited = None
        if isinstance(spec, dict) and spec.get("inherit"):
            parent = str(spec["inherit"])
            if parent not in mappings:
                raise LabeltreeError(f"mappings.{d}.inherit: '{parent}' must be a dataset mapped "
                                     "earlier in the file", path)
            inherited = {c: n for c, n in mappings[parent].to_node.items() if tax.find(c) is not None}
        mappings[d] = parse_mapping(d, spec, nodes, index, tax, path, inherited, d in evaluated)
    sup = data.get("supervision") or {}
    overrides: dict[tuple[str, str], bool] = {}
    for o in sup.get("overrides") or []:
        if not isinstance(o, dict) or not {"dataset", "classifier", "supervise"} <= set(o):
            raise LabeltreeError("supervision.overrides: each entry needs dataset, classifier, "
                                 f"supervise; got {o!r}", path)
        if o["dataset"] not in mappings:
            raise LabeltreeError(f"supervision.overrides: unknown dataset '{o['dataset']}'", path,
                                 line_of(path, "supervision", "overrides"))
        if o["classifier"] not in index or len(nodes[index[o["classifier"]]].children) < 2:
            raise LabeltreeError(f"supervision.overrides: '{o['classifier']}' is not a node with a "
                                 "classifier", path, line_of(path, "supervision", "overrides"))
        overrides[(str(o["dataset"]), str(o["classifier"]))] = bool(o["supervise"])
    h = Hierarchy(str(data.get("name") or path.stem), nodes, mappings, overrides,
                  bool(sup.get("exclude_single_child", True)), path)
    if restrict is not None:
        h = restrict_hierarchy(h, restrict)
    assign_colors(h)
    return h


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


def resolve_ref(ref: str, tree_path: Path) -> str | Path:
    p = Path(ref)
    if p.suffix in (".yaml", ".yml"):
        return p if p.is_absolute() else tree_path.parent / p
    return ref


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


def bundled_hierarchies() -> dict[str, Path]:
    return {p.stem: p for p in sorted(hierarchy_dir().glob("*.yaml"))}


_FAST_SAFE = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # safe either way; C when libyaml is there


def declared_datasets(path: Path, _seen: tuple[Path, ...] = ()) -> list[str]:
    """Every dataset key a tree file maps (its own, its includes', its base's, as `expand_extends` keys
    them), read from the raw files without building the tree: what choosing a bundled tree needs, at
    a small part of a full load. Unreadable parts add nothing (loading the tree reports them)."""
    key = path.resolve()
    try:
        data = yaml.load(path.read_text(), Loader=_FAST_SAFE) if key not in _seen else None
    except (OSError, yaml.YAMLError):
        data = None
    if not isinstance(data, dict):
        return []

    def listed(src: Any, where: Path, absolute: bool) -> list[str]:
        out: list[str] = []
        for k in ("datasets", "evaluation_datasets"):
            v = src.get(k) if isinstance(src, dict) else None
            out += [_dataset_ref(d, where) if absolute else str(d) for d in (v if isinstance(v, list) else [])]
        return out

    keys = listed(data, path, False)
    inc = data.get("include")
    for ref in inc if isinstance(inc, list) else []:
        try:
            where = _base_path(str(ref), path)
            keys += listed(yaml.load(where.read_text(), Loader=_FAST_SAFE), where, True)
        except (LabeltreeError, OSError, yaml.YAMLError):
            continue
    if "extends" in data:
        try:
            base = _base_path(str(data["extends"]), path)
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


def load_hierarchy(ref: str | Path = "cityscapes+vistas+gtsdb") -> Hierarchy:
    """Load a tree file by bundled name (`cityscapes+vistas+gtsdb`, `cityscapes+vistas`) or path.

    A name of datasets that no bundled file has exactly is served by the smallest bundled tree
    that covers them, restricted to those datasets.
    """
    if is_path_ref(ref):  # a path is a path; a name is bundled, never shadowed by the working directory
        return hierarchy_from_dict(load_yaml(ref, "tree"), Path(ref))
    known = bundled_hierarchies()
    if str(ref) in known:
        return hierarchy_from_dict(load_yaml(known[str(ref)], "tree"), known[str(ref)])
    try:
        found = bundled_for([d for d in str(ref).split("+") if d])
    except LabeltreeError:  # a part that names no dataset
        found = None
    if found is not None:
        _name, path, keys = found
        return hierarchy_from_dict(load_yaml(path, "tree"), path, restrict=keys)
    raise LabeltreeError(f"no bundled tree covers '{ref}' (bundled: {', '.join(known)}); "
                         "write a tree file (see docs/taxonomy-format.md) or run `labeltree merge`")
