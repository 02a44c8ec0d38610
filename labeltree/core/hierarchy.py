"""The semantic tree: nodes, classifiers, dataset mappings, and the tables compiled from them.

A tree file (YAML) is the single source of truth. From it we derive, per dataset, numpy lookup
tables indexed by the value stored in a label file:
  value -> node, value -> target per classifier (255 = no supervision), node -> dataset value.
and the hard top-down argmax cascade that turns per-classifier scores into a node map.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labeltree.core.taxonomy import Taxonomy, normalise_name
from labeltree.errors import LabeltreeError

if TYPE_CHECKING:  # numpy is imported where tables are built: tree, merge and validate need none
    import numpy as np

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
    import numpy as np

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
        """Does `dataset` train classifier j? Rule + explicit overrides + the box rule (docs/design.md §2.3/2.4)."""
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
        import numpy as np

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
        # that one of its classes maps to. When several do, the class named like the node wins, else
        # the lowest id (Vistas v2.0 maps four sign-front kinds to Traffic Sign (Front): a prediction
        # there is its 'Traffic Sign (Front)', not 'Traffic Sign - Direction (Front)', the lowest id).
        node_value: dict[int, int] = {}
        named: dict[int, int] = {}
        for cid, node in sorted(m.to_node.items()):
            if node is not None and cid >= 0:
                node_value.setdefault(node, tax.stored_value(cid))
                c = tax.by_id(cid)
                if normalise_name(self.nodes[node].name) in (normalise_name(c.display), normalise_name(c.name)):
                    named.setdefault(node, tax.stored_value(cid))
        node_value.update(named)
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
        import numpy as np

        return [np.asarray(c.children, dtype=np.int64) for c in self.classifiers]

    def cascade(self, scores: list[Any], stop_level: int | None = None, skip: dict[int, int] | None = None) -> Any:
        """Hard top-down argmax cascade (docs/design.md §2.5) over per-classifier scores (numpy or torch).

        `scores[j]` has shape (..., C_j, H, W) with the class axis at -3 (the same leading shape for
        all). Returns node indices (..., H, W). With `stop_level`, classifiers below that level are not
        descended into. `skip` {classifier index: child node}: that classifier is not asked, a pixel
        reaching its node goes on to the child (`direct_skips`).
        """
        if len(scores) != len(self.classifiers):
            raise ValueError(f"expected {len(self.classifiers)} score arrays, got {len(scores)}")
        skip = skip or {}
        keep = [j for j, c in enumerate(self.classifiers) if stop_level is None or c.level <= stop_level]
        return cascade([scores[j] for j in keep], [self.classifiers[j].node for j in keep],
                       [skip.get(j, self.child_table[j]) for j in keep])

    def confident_cascade(self, probs: list[Any], min_confidence: float = 0.0,
                          skip: dict[int, int] | None = None) -> Any:
        """`cascade` over softmax probabilities with each pixel's path confidence, backing off to the deepest
        node whose path confidence is at least `min_confidence` (labeltree.core.confidence.PathConfidence)."""
        from labeltree.core.confidence import confident_cascade

        if len(probs) != len(self.classifiers):
            raise ValueError(f"expected {len(self.classifiers)} score arrays, got {len(probs)}")
        skip = skip or {}
        return confident_cascade(probs, [c.node for c in self.classifiers],
                                 [skip.get(j, self.child_table[j]) for j in range(len(self.classifiers))],
                                 [c.level for c in self.classifiers], min_confidence)

    def direct_skips(self, evaluated: set[int]) -> dict[int, int]:
        """The authors' evaluation path (`define_estimator.py:515-566`) for a dataset whose evaluated classes
        are the nodes `evaluated`: a classifier below Level 1 whose evaluated nodes all lie strictly below one
        child is not asked; the path goes straight to that child. GTSDB and Cityscapes Extended (sign classes
        under Traffic Sign (Front)): Level 1 'Traffic Sign' -> the sign classifier, never Back / Front.
        Cityscapes ('traffic sign' is Front itself) and Vistas (Back and Front) skip nothing.
        """
        out = {}
        for j, c in enumerate(self.classifiers):
            if c.level <= 1:
                continue
            below = [n for n in evaluated if c.node in self.ancestors(n)]
            if not below:
                continue
            under = {child for child in c.children for n in below if n != child and child in self.ancestors(n)}
            if len(under) == 1 and all(n not in c.children and n != c.node for n in below):
                out[j] = under.pop()
        return out

    def node_at_level(self, nodes: np.ndarray, level: int) -> np.ndarray:
        """Map node indices to their ancestor at `level` (nodes above it stay as they are)."""
        import numpy as np

        lut = np.arange(len(self.nodes))
        for i in range(len(self.nodes)):
            anc = self.ancestors(i)
            for a in anc:
                if self.nodes[a].level == level:
                    lut[i] = a
                    break
        return lut[nodes]

    def colors(self) -> np.ndarray:
        import numpy as np

        return np.array([n.color for n in self.nodes], dtype=np.uint8)

    # -- export --------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """The docs/design.md §5 contract: nodes, classifiers, leaves, datasets."""
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


# -- the cascade and the tree's identity, shared by every way of running a model ---------------------

def cascade(scores: Sequence[Any], owners: Sequence[int], children: Sequence[Any]) -> Any:
    """Hard top-down argmax cascade: start every pixel at the root (node 0); classifier j, owned by node
    `owners[j]`, moves the pixels standing on its owner to `children[j][argmax of scores[j]]`.

    The one implementation for numpy arrays (ONNX Runtime on a `scores` model) and torch tensors
    (`Hierarchy.cascade`, and traced into the exported graph, where `children` are the graph's buffers).
    Classifiers come parents first (tree order), so one pass suffices. Class axis at -3. A child node
    (an int) instead of a table: that classifier is not asked, its pixels go on to that child.
    """
    first = scores[0]
    if type(first).__module__.startswith("torch"):
        import torch

        axis = first.dim() - 3
        cur = torch.zeros_like(first.select(axis, 0), dtype=torch.int64)
        for s, owner, table in zip(scores, owners, children, strict=True):
            if isinstance(table, int):
                cand = torch.full_like(cur, table)
            else:
                table = table if isinstance(table, torch.Tensor) else torch.as_tensor(table, device=first.device)
                cand = table[s.argmax(axis)]
            cur = torch.where(cur == owner, cand, cur)
        return cur
    import numpy as np

    cur = np.zeros(first.shape[:-3] + first.shape[-2:], dtype=np.int64)
    for s, owner, table in zip(scores, owners, children, strict=True):
        cand = table if isinstance(table, int) else np.asarray(table, dtype=np.int64)[np.argmax(s, axis=-3)]
        cur = np.where(cur == owner, cand, cur)
    return cur


def tree_signature(h: Hierarchy) -> dict[str, Any]:
    """What a trained model depends on: the nodes in order (name, parent) and every dataset's value -> node map.

    Comments, key order and supervision rules are not part of it: they do not change what a logit means.
    """
    nodes = [[n.name, h.nodes[n.parent].name if n.parent >= 0 else None] for n in h.nodes]
    datasets = {m.taxonomy.name: [[m.taxonomy.stored_value(c), h.nodes[n].name if n is not None else None]
                                  for c, n in sorted(m.to_node.items()) if c >= 0]
                for m in h.mappings.values()}
    return {"nodes": nodes, "datasets": datasets}


def tree_hash(h: Hierarchy) -> str:
    """sha256 of `tree_signature`: stored in `.pt` checkpoints and ONNX exports, compared when one is opened."""
    text = json.dumps(tree_signature(h), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def tree_change(saved: dict[str, Any], h: Hierarchy) -> str | None:
    """The first differences between a saved `tree_signature` and tree `h`, in words (None: the same)."""
    now = tree_signature(h)
    a, b = [list(x) for x in saved.get("nodes", [])], now["nodes"]
    if len(a) != len(b):
        return f"{len(a)} nodes at training, {len(b)} now"
    moved = [i for i in range(len(a)) if a[i] != b[i]]
    if moved:
        said = [f"node {i} was '{a[i][0]}' (under '{a[i][1]}'), now '{b[i][0]}' (under '{b[i][1]}')"
                for i in moved[:2]]
        return "; ".join(said) + (f"; and {len(moved) - 2} more" if len(moved) > 2 else "")
    old = saved.get("datasets", {})
    for name in sorted(set(old) | set(now["datasets"])):
        x = {int(v): n for v, n in old.get(name, [])}
        y = {int(v): n for v, n in now["datasets"].get(name, [])}
        if name not in old or name not in now["datasets"]:
            return f"dataset '{name}' is {'new' if name not in old else 'gone'}"
        for v in sorted(set(x) | set(y)):
            was, now_ = x.get(v, "absent"), y.get(v, "absent")
            if was != now_:
                return f"dataset '{name}' value {v} mapped to {was!r} at training, now {now_!r}"
    return None
