"""The semantic tree: nodes, classifiers, dataset mappings, and the tables compiled from them.

A tree file (YAML) is the single source of truth. From it we derive, per dataset, numpy lookup
tables indexed by the value stored in a label file:
  value -> node, value -> target per classifier (255 = no supervision), node -> dataset value.
and the hard top-down argmax cascade that turns per-classifier scores into a node map.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from .errors import LabeltreeError
from .resources import hierarchy_dir
from .taxonomy import Taxonomy, load_taxonomy, normalise_name
from .yamlio import load_yaml

NO_TARGET = 255  # target value for "this pixel does not supervise this classifier"
IGNORE = -1  # node index for ignored pixels
UNKNOWN = -2  # node index for stored values that are no class of the taxonomy
ROOT = "root"


@dataclass
class Node:
    name: str
    parent: int  # -1 for the root
    level: int  # root = 0, its children 1, ...
    children: list[int] = field(default_factory=list)
    color: tuple[int, int, int] = (0, 0, 0)


@dataclass
class Classifier:
    node: int  # index of the node that owns the classifier
    name: str  # the node's name ("root" for Level 1)
    level: int  # 1 for the root classifier
    children: list[int]  # node indices, in tree order = logit order


@dataclass
class DatasetMapping:
    """How one dataset's classes map onto the tree (parsed, before compilation)."""

    dataset: str  # key used in the tree file / CLI
    taxonomy: Taxonomy
    to_node: dict[int, int | None]  # class id -> node index, None = ignored
    evaluation_only: bool = False

    @property
    def is_boxes(self) -> bool:
        return self.taxonomy.annotation == "boxes"


@dataclass
class DatasetTables:
    """Numpy lookup tables for one dataset, indexed by the stored label value."""

    dataset: str
    value_to_node: np.ndarray  # int32 [lut_size]: node index, IGNORE or UNKNOWN
    targets: np.ndarray  # uint8 [n_classifiers, lut_size]: child position or NO_TARGET
    supervised: np.ndarray  # bool [n_classifiers]: classifiers this dataset trains
    node_to_value: np.ndarray  # int32 [n_nodes]: the dataset's value for a predicted node, -1 = none
    box_classifier: int | None  # for box datasets: the only classifier they train

    def nodes_of(self, labels: np.ndarray) -> np.ndarray:
        """Node index per pixel (IGNORE for ignored values, UNKNOWN for values of no class)."""
        return lookup(self.value_to_node, labels, UNKNOWN)


def lookup(lut: np.ndarray, labels: np.ndarray, fill: int) -> np.ndarray:
    """lut[labels], with `fill` where a label lies beyond the table."""
    if labels.size == 0 or int(labels.max()) < len(lut):
        return lut[labels]
    out = np.full(labels.shape, fill, dtype=lut.dtype)
    ok = labels < len(lut)
    out[ok] = lut[labels[ok]]
    return out


class Hierarchy:
    """A validated tree with its classifiers and dataset mappings."""

    def __init__(self, name: str, nodes: list[Node], mappings: dict[str, DatasetMapping],
                 overrides: dict[tuple[str, str], bool], exclude_single_child: bool = True,
                 path: Path | None = None):
        self.name = name
        self.nodes = nodes
        self.mappings = mappings
        self.overrides = overrides
        self.exclude_single_child = exclude_single_child
        self.path = path
        self.index = {n.name: i for i, n in enumerate(nodes)}
        self.classifiers = [
            Classifier(i, n.name, n.level + 1, list(n.children))
            for i, n in enumerate(nodes) if len(n.children) >= 2
        ]
        self.classifier_of = {c.node: j for j, c in enumerate(self.classifiers)}

    # -- structure -----------------------------------------------------------------------------
    @property
    def datasets(self) -> list[str]:
        return [d for d, m in self.mappings.items() if not m.evaluation_only]

    @property
    def leaves(self) -> list[int]:
        return [i for i, n in enumerate(self.nodes) if not n.children]

    def path_to(self, node: int) -> list[int]:
        """Node indices from the root's child down to `node` (root excluded)."""
        out = []
        while node > 0:
            out.append(node)
            node = self.nodes[node].parent
        return out[::-1]

    def ancestors(self, node: int) -> list[int]:
        """`node` and its ancestors, nearest first (root included)."""
        out = [node]
        while self.nodes[out[-1]].parent >= 0:
            out.append(self.nodes[out[-1]].parent)
        return out

    def descendants(self, node: int) -> list[int]:
        out, stack = [], [node]
        while stack:
            n = stack.pop()
            out.append(n)
            stack.extend(self.nodes[n].children)
        return out

    @property
    def depth(self) -> int:
        return max(c.level for c in self.classifiers) if self.classifiers else 0

    def mapping(self, dataset: str) -> DatasetMapping:
        if dataset in self.mappings:
            return self.mappings[dataset]
        for _key, m in self.mappings.items():
            if m.taxonomy.name == dataset:
                return m
        raise LabeltreeError(f"hierarchy '{self.name}' has no mapping for dataset '{dataset}' "
                             f"(it maps {', '.join(self.mappings)})", self.path)

    # -- supervision rule ------------------------------------------------------------------------
    def children_reached(self, dataset: str, j: int) -> set[int]:
        """Children of classifier j that some class of `dataset` maps to (or lies below)."""
        c = self.classifiers[j]
        m = self.mapping(dataset)
        reached = set()
        for node in (n for n in m.to_node.values() if n is not None):
            for child in c.children:
                if node in set(self.descendants(child)):
                    reached.add(child)
        return reached

    def supervises(self, dataset: str, j: int) -> bool:
        """Does `dataset` train classifier j? Rule + explicit overrides + the box rule (DESIGN §2.3/2.4)."""
        m = self.mapping(dataset)
        c = self.classifiers[j]
        if m.evaluation_only:
            return False
        if m.is_boxes:
            box_nodes = {self.nodes[n].parent for n in m.to_node.values() if n is not None}
            return c.node in box_nodes
        key = (m.dataset, c.name)
        if key in self.overrides:
            return self.overrides[key]
        reached = self.children_reached(dataset, j)
        if self.exclude_single_child:
            return len(reached) >= 2
        return len(reached) >= 1

    # -- compilation -----------------------------------------------------------------------------
    @cached_property
    def _tables(self) -> dict[str, DatasetTables]:
        return {}

    def tables(self, dataset: str) -> DatasetTables:
        """Compile (once) the lookup tables of one dataset."""
        m = self.mapping(dataset)
        if m.dataset in self._tables:
            return self._tables[m.dataset]
        tax = m.taxonomy
        size = tax.lut_size
        n_cls = len(self.classifiers)
        v2n = np.full(size, UNKNOWN, dtype=np.int32)
        if tax.encoding.unlabeled is not None:
            v2n[tax.encoding.unlabeled] = IGNORE
        for cid, node in m.to_node.items():
            if cid < 0:
                continue
            v2n[tax.stored_value(cid)] = IGNORE if node is None else node
        supervised = np.array([self.supervises(m.dataset, j) for j in range(n_cls)], dtype=bool)
        targets = np.full((n_cls, size), NO_TARGET, dtype=np.uint8)
        # For each tree node, the target it gives each classifier on its path.
        for value in np.flatnonzero(v2n >= 0):
            node = int(v2n[value])
            for anc in self.path_to(node):
                parent = self.nodes[anc].parent
                j = self.classifier_of.get(parent)
                if j is not None and supervised[j]:
                    targets[j, value] = self.classifiers[j].children.index(anc)
        # Predicted node -> the dataset's class at the depth it annotates: nearest ancestor-or-self
        # that one of its classes maps to (lowest id wins when several do).
        node_value: dict[int, int] = {}
        for cid, node in sorted(m.to_node.items()):
            if node is not None and cid >= 0:
                node_value.setdefault(node, tax.stored_value(cid))
        n2v = np.full(len(self.nodes), -1, dtype=np.int32)
        for i in range(len(self.nodes)):
            for anc in self.ancestors(i):
                if anc in node_value:
                    n2v[i] = node_value[anc]
                    break
        box = None
        if m.is_boxes:
            idx = np.flatnonzero(supervised)
            box = int(idx[0]) if len(idx) else None
        t = DatasetTables(m.dataset, v2n, targets, supervised, n2v, box)
        self._tables[m.dataset] = t
        return t

    # -- inference -------------------------------------------------------------------------------
    @cached_property
    def child_table(self) -> list[np.ndarray]:
        """Per classifier: logit position -> node index."""
        return [np.asarray(c.children, dtype=np.int64) for c in self.classifiers]

    def cascade(self, scores: list[Any], stop_level: int | None = None) -> Any:
        """Hard top-down argmax cascade (DESIGN §2.5) over per-classifier scores.

        `scores[j]` has shape (..., C_j, H, W) with the class axis at -3 (numpy or torch; the same
        leading shape for all). Returns node indices (..., H, W). With `stop_level`, classifiers
        below that level are not descended into.
        """
        if len(scores) != len(self.classifiers):
            raise ValueError(f"expected {len(self.classifiers)} score arrays, got {len(scores)}")
        first = scores[0]
        is_torch = type(first).__module__.startswith("torch")
        if is_torch:
            import torch

            cur = torch.zeros(first.shape[:-3] + first.shape[-2:], dtype=torch.long, device=first.device)
            for j, c in enumerate(self.classifiers):
                if stop_level is not None and c.level > stop_level:
                    continue
                table = torch.as_tensor(self.child_table[j], device=first.device)
                cand = table[scores[j].argmax(dim=-3)]
                cur = torch.where(cur == c.node, cand, cur)
            return cur
        cur = np.zeros(first.shape[:-3] + first.shape[-2:], dtype=np.int64)
        for j, c in enumerate(self.classifiers):
            if stop_level is not None and c.level > stop_level:
                continue
            cand = self.child_table[j][np.argmax(scores[j], axis=-3)]
            cur = np.where(cur == c.node, cand, cur)
        return cur

    def node_at_level(self, nodes: np.ndarray, level: int) -> np.ndarray:
        """Map node indices to their ancestor at `level` (nodes above it stay as they are)."""
        lut = np.arange(len(self.nodes))
        for i in range(len(self.nodes)):
            anc = self.ancestors(i)
            for a in anc:
                if self.nodes[a].level == level:
                    lut[i] = a
                    break
        return lut[nodes]

    def colors(self) -> np.ndarray:
        return np.array([n.color for n in self.nodes], dtype=np.uint8)

    # -- export --------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """The DESIGN §5 contract: nodes, classifiers, leaves, datasets."""
        nodes = [{"name": n.name, "parent": self.nodes[n.parent].name if n.parent >= 0 else None,
                  "level": n.level} for n in self.nodes[1:]]
        classifiers = [{"node": c.name, "level": c.level,
                        "classes": [self.nodes[k].name for k in c.children],
                        "datasets": [d for d in self.mappings if self.supervises(d, j)]}
                       for j, c in enumerate(self.classifiers)]
        datasets = {
            d: {str(cid): (self.nodes[n].name if n is not None else None)
                for cid, n in sorted(m.to_node.items())}
            for d, m in self.mappings.items()
        }
        return {"name": self.name, "nodes": nodes, "classifiers": classifiers,
                "leaves": [self.nodes[i].name for i in self.leaves], "datasets": datasets}


# -- parsing -------------------------------------------------------------------------------------

def _parse_tree(items: Any, path: Path) -> list[Node]:
    nodes = [Node(ROOT, -1, 0)]
    seen: dict[str, int] = {ROOT: 0}

    def add(entries: Any, parent: int, trail: str) -> None:
        if not isinstance(entries, list) or not entries:
            raise LabeltreeError(f"tree: children of '{trail}' must be a non-empty list", path)
        for e in entries:
            if isinstance(e, str):
                name, kids = e, None
            elif isinstance(e, dict) and len(e) == 1:
                name, kids = next(iter(e.items()))
                name = str(name)
            else:
                raise LabeltreeError(f"tree: under '{trail}', each entry must be a name or "
                                     f"'Name: [children]', got {e!r}", path)
            if name in seen:
                raise LabeltreeError(f"tree: node '{name}' appears twice (under '{trail}' and under "
                                     f"'{nodes[nodes[seen[name]].parent].name if seen[name] else ''}')"
                                     " — node names must be unique (a cycle or a duplicate)", path)
            idx = len(nodes)
            nodes.append(Node(name, parent, nodes[parent].level + 1))
            nodes[parent].children.append(idx)
            seen[name] = idx
            if kids is not None:
                add(kids, idx, name)
                if len(nodes[idx].children) == 1:
                    only = nodes[nodes[idx].children[0]].name
                    raise LabeltreeError(f"tree: node '{name}' has one child ('{only}'); a classifier "
                                         "needs >= 2 classes: map the classes to the parent instead", path)

    add(items, 0, ROOT)
    if len(nodes[0].children) == 1:
        raise LabeltreeError("tree: the root has one child; a classifier needs >= 2 classes", path)
    return nodes


def _parse_mapping(key: str, spec: Any, nodes: list[Node], index: dict[str, int], tax: Taxonomy,
                   path: Path, inherited: dict[int, int | None] | None, evaluation_only: bool,
                   ) -> DatasetMapping:
    if not isinstance(spec, dict):
        raise LabeltreeError(f"mappings.{key}: expected a mapping with 'map', 'ignore', 'by_name'", path)
    unknown = set(spec) - {"map", "ignore", "by_name", "inherit"}
    if unknown:
        raise LabeltreeError(f"mappings.{key}: unknown key(s) {sorted(unknown)}; "
                             "allowed: map, ignore, by_name, inherit", path)
    to_node: dict[int, int | None] = dict(inherited or {})
    explicit: set[int] = set()

    def cls(ref: Any, where: str) -> int:
        c = tax.find(ref if isinstance(ref, int) else str(ref))
        if c is None:
            raise LabeltreeError(f"mappings.{key}.{where}: '{ref}' is not a class of dataset "
                                 f"'{tax.name}' (taxonomy {tax.name} has {len(tax.classes)} classes)", path)
        if c.id in explicit:
            raise LabeltreeError(f"mappings.{key}: class '{c.name}' (id {c.id}) is mapped twice", path)
        explicit.add(c.id)
        return c.id

    for ref, target in (spec.get("map") or {}).items():
        cid = cls(ref, "map")
        if target is None:
            to_node[cid] = None
            continue
        if str(target) not in index:
            raise LabeltreeError(f"mappings.{key}.map: class '{tax.by_id(cid).name}' maps to "
                                 f"'{target}', which is not a node of the tree", path)
        to_node[cid] = index[str(target)]
    for ref in spec.get("ignore") or []:
        to_node[cls(ref, "ignore")] = None
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
    if missing:
        names = ", ".join(f"'{c.name}' (id {c.id})" for c in missing[:8])
        more = f" and {len(missing) - 8} more" if len(missing) > 8 else ""
        raise LabeltreeError(f"mappings.{key}: class {names}{more} of dataset '{tax.name}' is neither "
                             "mapped to a node nor listed under 'ignore'", path)
    return DatasetMapping(key, tax, to_node, evaluation_only)


def hierarchy_from_dict(data: Any, path: Path, restrict: list[str] | None = None) -> Hierarchy:
    if not isinstance(data, dict):
        raise LabeltreeError("a tree file must be a YAML mapping with 'name', 'datasets', 'tree', "
                             "'mappings'", path)
    for k in ("tree", "mappings", "datasets"):
        if k not in data:
            raise LabeltreeError(f"tree file has no '{k}' section", path)
    unknown = set(data) - {"name", "description", "datasets", "evaluation_datasets", "tree",
                           "mappings", "supervision"}
    if unknown:
        raise LabeltreeError(f"unknown top-level key(s) {sorted(unknown)}", path)
    nodes = _parse_tree(data["tree"], path)
    index = {n.name: i for i, n in enumerate(nodes)}
    maps = data["mappings"] or {}
    if not isinstance(maps, dict):
        raise LabeltreeError("'mappings' must map dataset names to their mappings", path)
    trained = [str(d) for d in data["datasets"]]
    evaluated = [str(d) for d in data.get("evaluation_datasets") or []]
    for d in trained + evaluated:
        if d not in maps:
            raise LabeltreeError(f"dataset '{d}' is listed but has no entry under 'mappings'", path)
    for d in maps:
        if d not in trained + evaluated:
            raise LabeltreeError(f"mappings.{d}: dataset is not listed under 'datasets'", path)
    mappings: dict[str, DatasetMapping] = {}
    for d in trained + evaluated:
        spec = maps[d]
        tax = load_taxonomy(_resolve_ref(d, path))
        inherited = None
        if isinstance(spec, dict) and spec.get("inherit"):
            parent = str(spec["inherit"])
            if parent not in mappings:
                raise LabeltreeError(f"mappings.{d}.inherit: '{parent}' must be a dataset mapped "
                                     "earlier in the file", path)
            inherited = {c: n for c, n in mappings[parent].to_node.items() if tax.find(c) is not None}
        mappings[d] = _parse_mapping(d, spec, nodes, index, tax, path, inherited, d in evaluated)
    sup = data.get("supervision") or {}
    overrides: dict[tuple[str, str], bool] = {}
    for o in sup.get("overrides") or []:
        if not isinstance(o, dict) or not {"dataset", "classifier", "supervise"} <= set(o):
            raise LabeltreeError("supervision.overrides: each entry needs dataset, classifier, "
                                 f"supervise; got {o!r}", path)
        if o["dataset"] not in mappings:
            raise LabeltreeError(f"supervision.overrides: unknown dataset '{o['dataset']}'", path)
        if o["classifier"] not in index or len(nodes[index[o["classifier"]]].children) < 2:
            raise LabeltreeError(f"supervision.overrides: '{o['classifier']}' is not a node with a "
                                 "classifier", path)
        overrides[(str(o["dataset"]), str(o["classifier"]))] = bool(o["supervise"])
    h = Hierarchy(str(data.get("name") or path.stem), nodes, mappings, overrides,
                  bool(sup.get("exclude_single_child", True)), path)
    if restrict is not None:
        h = restrict_hierarchy(h, restrict)
    _assign_colors(h)
    return h


def _assign_colors(h: Hierarchy) -> None:
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


def _resolve_ref(ref: str, tree_path: Path) -> str | Path:
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


def load_hierarchy(ref: str | Path = "cityscapes+vistas+gtsdb") -> Hierarchy:
    """Load a tree file by bundled name (`cityscapes+vistas+gtsdb`, `cityscapes+vistas`) or path.

    A name of datasets that no bundled file has exactly is served by the smallest bundled tree
    that covers them, restricted to those datasets.
    """
    p = Path(ref)
    if p.suffix in (".yaml", ".yml") or p.exists():
        return hierarchy_from_dict(load_yaml(p, "tree"), p)
    known = bundled_hierarchies()
    if str(ref) in known:
        return hierarchy_from_dict(load_yaml(known[str(ref)], "tree"), known[str(ref)])
    wanted = [d for d in str(ref).split("+") if d]
    for _name, path in sorted(known.items(), key=lambda kv: len(kv[0])):
        data = yaml.safe_load(path.read_text())
        have = set(map(str, data.get("datasets", []))) | set(map(str, data.get("evaluation_datasets") or []))
        if set(wanted) <= have:
            return hierarchy_from_dict(data, path, restrict=wanted)
    raise LabeltreeError(f"no bundled tree covers '{ref}' (bundled: {', '.join(known)}); "
                         "write a tree file (see docs/taxonomy-format.md) or run `labeltree merge`")
