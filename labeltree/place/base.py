"""What the base tree's own datasets say about each node: the same evidence as a new class's
(evidence.py), pooled over the base classes mapped at or below the node, dataset by dataset.

A node's fingerprint is the model's prediction histogram over those pixels, averaged over the
datasets that label them (so that no single camera dominates). The finest fingerprinted nodes are
the atoms a new class's fingerprint is decomposed into (placement.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from labeltree.core.hierarchy import Hierarchy
from labeltree.place.evidence import ROWS, ClassEvidence

MIN_PIXELS = 20  # fewer labelled pixels (stride grid) say nothing about a node


@dataclass
class NodeEvidence:
    h: Hierarchy
    pixels: np.ndarray  # [N]
    profile: np.ndarray  # [N, ROWS], rows sum to 1 where pixels
    size: np.ndarray  # [N] mean frame share where present
    fingerprint: np.ndarray | None  # [N, N] rows sum to 1 where pixels
    neighbours: np.ndarray  # [N, N] what the node's pixels touch, as level-1 nodes (rows sum to 1 where known)
    datasets: list[str] = field(default_factory=list)

    @property
    def known(self) -> np.ndarray:
        return self.pixels >= MIN_PIXELS

    def atoms_without(self, skip: set[int]) -> list[int]:
        """The finest fingerprinted nodes outside `skip` (for a dense dataset Traffic Sign (Front) itself,
        not GTSDB's 43 sign types, which only boxes label)."""
        known = {i for i in range(1, len(self.pixels)) if self.known[i] and i not in skip}
        return [i for i in sorted(known) if not (set(self.h.descendants(i)) - {i}) & known]


def _slot_nodes(h: Hierarchy, ev: ClassEvidence) -> list[int | None]:
    m = h.mapping(ev.dataset)
    return [m.to_node.get(c.id) for c in ev.taxonomy.classes]


def node_evidence(h: Hierarchy, scans: list[ClassEvidence]) -> NodeEvidence:
    n = len(h.nodes)
    desc = [set(h.descendants(i)) for i in range(n)]
    acc_pix = np.zeros(n)
    prof = np.zeros((n, ROWS))
    size = np.zeros(n)
    fp = np.zeros((n, n)) if scans and all(s.pred is not None for s in scans) else None
    nb = np.zeros((n, n))
    top = top_level(h)
    votes = np.zeros(n)
    for ev in scans:
        slots = _slot_nodes(h, ev)
        for i in range(1, n):
            member = [k for k, node in enumerate(slots) if node is not None and node in desc[i]]
            pix = int(ev.pixels[member].sum()) if member else 0
            if pix < MIN_PIXELS:
                continue
            acc_pix[i] += pix
            votes[i] += 1
            prof[i] += ev.rows[member].sum(0) / max(ev.rows[member].sum(), 1)
            size[i] += ev.share[member].sum() / max(int(ev.images[member].max()), 1)
            nb[i] += level_histogram(ev.touch[member].sum(0), [top[k] if k is not None else None for k in slots], n)
            if fp is not None and ev.pred is not None:
                row = ev.pred[member].sum(0)
                fp[i] += row / max(row.sum(), 1)
    v = np.maximum(votes, 1)
    prof /= v[:, None]
    size /= v
    nb /= v[:, None]
    if fp is not None:
        fp /= v[:, None]
    return NodeEvidence(h, acc_pix, prof, size, fp, nb, [s.dataset for s in scans])


def top_level(h: Hierarchy) -> list[int]:
    """Per node its level-1 ancestor (the root's child it lies under; the root itself for the root)."""
    return [(h.path_to(i) or [0])[0] for i in range(len(h.nodes))]


def level_histogram(touch: np.ndarray, slot_top: list[int | None], n: int) -> np.ndarray:
    """Neighbour pixel counts per slot -> a distribution over level-1 nodes (slots without a node dropped)."""
    out = np.zeros(n)
    for j, t in enumerate(slot_top):
        if t is not None and touch[j]:
            out[t] += touch[j]
    return out / out.sum() if out.sum() else out
