"""Where each class of a new dataset goes in a tree: the evidence combined into ranked placements.

Placements: an existing node (leaf or inner: the class covers that node's subtree), new children
under an existing leaf (the new dataset is finer there), a new node under a parent (nothing in the
tree is that concept), or ignore. Evidence, each scored 0..1 per candidate and shown:
- model: the class's fingerprint (its pixels' predicted-node histogram) decomposed into the atoms'
  fingerprints (non-negative least squares), which undoes the model's own confusions; the share of
  the class inside a node's subtree is its coverage. The deepest node that covers >= COVER of the
  class wins (mass on one node -> that node, spread over siblings -> their parent); what the atoms
  cannot explain is mass on nothing known -> a new node. The Jensen-Shannon distance of the
  fingerprint to the node's pooled fingerprint is the second half of the score.
- stats: vertical profile (JS distance) and size (frame share) against the node's, and neighbours.
- names: normalised names / synonyms against node names and the base classes mapped to each node;
  `includes` terms name the nodes a class covers.
Then one dataset's classes are placed together: two classes never share one existing node (the
more certain keeps it, e.g. IDD 'road' -> Road beside 'drivable fallback' -> Driveable), and two or
more classes on one leaf whose names extend it become new children of that leaf.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from labeltree.core.taxonomy import ClassDef
from labeltree.place.base import NodeEvidence
from labeltree.place.evidence import ClassEvidence

COVER = 0.8  # share of a class's decomposed mass a node must hold to be 'the' node
WEIGHTS = {"model": 0.5, "names": 0.35, "stats": 0.15}


@dataclass
class Candidate:
    kind: str  # node | inner | children | new | ignore
    node: str | None  # the node (node, inner), the leaf (children), the parent (new)
    score: float
    evidence: dict[str, float] = field(default_factory=dict)
    why: list[str] = field(default_factory=list)
    shares: bool = False  # a kind (or 'of this group') of the node: may share it with the node's own class

    def label(self) -> str:
        return {"node": f"{self.node}", "inner": f"{self.node} (inner node)",
                "children": f"new child of {self.node}", "new": f"new node under {self.node}",
                "ignore": "ignore"}[self.kind]

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "node": self.node, "score": round(self.score, 3),
                "evidence": {k: round(v, 3) for k, v in self.evidence.items()}, "why": self.why}


@dataclass
class Placement:
    cls: ClassDef
    pixels: int
    frames: int
    candidates: list[Candidate]
    examples: list[str] = field(default_factory=list)
    new_name: str | None = None  # the node name a new node / new child gets

    @property
    def chosen(self) -> Candidate:
        return self.candidates[0]

    @property
    def confidence(self) -> float:
        top = self.candidates[0].score
        second = self.candidates[1].score if len(self.candidates) > 1 else 0.0
        return float(np.clip(0.5 * top + 2.0 * (top - second), 0.0, 1.0))

    def to_json(self) -> dict[str, Any]:
        return {"class": self.cls.display, "id": self.cls.id, "pixels": self.pixels, "frames": self.frames,
                "placement": self.chosen.to_json(), "new_name": self.new_name,
                "confidence": round(self.confidence, 3),
                "alternatives": [c.to_json() for c in self.candidates[1:3]], "examples": self.examples}


def js_distance(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon distance (base 2, 0..1) of two histograms."""
    p = p / max(p.sum(), 1e-12)
    q = q / max(q.sum(), 1e-12)
    m = 0.5 * (p + q)

    def kl(a: np.ndarray) -> float:
        nz = a > 0
        return float((a[nz] * np.log2(a[nz] / m[nz])).sum())

    return float(np.sqrt(max(0.0, 0.5 * kl(p) + 0.5 * kl(q))))


# -- per-evidence scores over all nodes ----------------------------------------------------------

def decompose(fp: np.ndarray, base: NodeEvidence, skip: set[int]) -> tuple[np.ndarray, float]:
    """Coverage per node (share of the class's mass inside the node's subtree) and the share that
    the atoms' fingerprints cannot explain."""
    from scipy.optimize import nnls  # 0.6 s to import: only runs with a model

    h = base.h
    assert base.fingerprint is not None
    atoms = base.atoms_without(skip)
    a = base.fingerprint[atoms].T  # [N, atoms]
    p = fp / max(fp.sum(), 1)
    c, _ = nnls(a, p)
    total = c.sum()
    resid = 0.5 * float(np.abs(a @ c - p).sum()) if total > 0 else 1.0
    c = c / total if total > 0 else c
    cover = np.zeros(len(h.nodes))
    for w, atom in zip(c, atoms, strict=True):
        for anc in h.ancestors(atom):
            cover[anc] += w
    return cover, min(1.0, resid)


def model_scores(fp: np.ndarray, base: NodeEvidence, skip: set[int]) -> tuple[np.ndarray, float, int]:
    """Per node a 0..1 score; the unexplained share; the deepest node covering >= COVER."""
    h = base.h
    cover, resid = decompose(fp, base, skip)
    assert base.fingerprint is not None
    n = len(h.nodes)
    sim = np.array([1 - js_distance(fp, base.fingerprint[i]) if base.known[i] else 0.0 for i in range(n)])
    over = [i for i in range(1, n) if cover[i] >= COVER and i not in skip]
    deepest = max(over, key=lambda i: (h.nodes[i].level, cover[i])) if over else 0
    cov_term = np.where(cover >= COVER, 0.6 + 0.4 * cover, 0.6 * cover)
    for i in over:  # the deepest covering node ahead of its covering ancestors
        if i != deepest:
            cov_term[i] -= 0.1 * (h.nodes[deepest].level - h.nodes[i].level)
    return np.clip(0.5 * cov_term + 0.5 * sim * (1 - resid), 0, 1), resid, deepest


def stats_scores(ev: ClassEvidence, slot: int, base: NodeEvidence, neighbours: np.ndarray | None = None) -> np.ndarray:
    """Vertical profile (JS), size (frame share ratio) and, once the other classes have a first placement,
    neighbours (what its pixels touch, as level-1 nodes) against each node's."""
    prof = ev.profile()[slot]
    size = max(float(ev.size[slot]), 1e-4)
    use_nb = neighbours is not None and neighbours.sum() > 0
    out = np.zeros(len(base.h.nodes))
    for i in np.flatnonzero(base.known):
        p = 1 - js_distance(prof, base.profile[i])
        s = float(np.exp(-abs(np.log(size / max(float(base.size[i]), 1e-4))) / 2))
        if use_nb and base.neighbours[i].sum() > 0:
            assert neighbours is not None
            out[i] = 0.45 * p + 0.3 * s + 0.25 * (1 - js_distance(neighbours, base.neighbours[i]))
        else:
            out[i] = 0.6 * p + 0.4 * s
    return out
