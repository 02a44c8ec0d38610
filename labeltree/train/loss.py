"""The loss of docs/design.md §2.3-2.4, and the device-side lookup from stored label values to targets.

Raw stored labels (each dataset in its own values) become per-classifier targets with ONE gather
into a table built from the hierarchy's `tables(ds).targets` (dataset exclusions and the box rule
are already in those tables). Box pixels are then gated by the network's own hard decisions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from labeltree.core.hierarchy import NO_TARGET, Hierarchy

GATINGS = ("path", "l1", "l2")


@dataclass
class FlatSpace:
    """The flat baseline's label space, derived from the tree (no class list in code).

    Classes = every node some training dataset maps to (leaves, plus internal nodes such as
    Driveable or Traffic Sign (Front) that a coarse dataset annotates), in tree order, plus one
    extra "unlabeled" class per box dataset (the paper trains GTSDB background as a class).
    """

    nodes: list[int]  # flat class -> tree node
    extra: list[str]  # names of the extra classes (after the node classes)

    @property
    def n_classes(self) -> int:
        return len(self.nodes) + len(self.extra)

    def names(self, h: Hierarchy) -> list[str]:
        return [h.nodes[n].name for n in self.nodes] + self.extra

    def class_to_node(self) -> np.ndarray:
        """flat class -> tree node (-1 for the extra classes)."""
        return np.array(self.nodes + [-1] * len(self.extra), dtype=np.int64)


def flat_space(h: Hierarchy, datasets: list[str]) -> FlatSpace:
    used: set[int] = set()
    for d in datasets:
        used |= {n for n in h.mapping(d).to_node.values() if n is not None}
    extra = [f"{h.mapping(d).dataset}: unlabeled" for d in datasets if h.mapping(d).is_boxes]
    return FlatSpace(sorted(used), extra)


class LabelMapper:
    """Stored label values of several datasets -> per-classifier (or flat) targets on the device.

    Every dataset's table gets one extra column (its `pad` value = table size) that supervises
    nothing; crops padded beyond the image carry it.
    """

    def __init__(self, h: Hierarchy, datasets: list[str], device: torch.device | str = "cpu",
                 flat: FlatSpace | None = None):
        self.h = h
        self.datasets = datasets
        self.flat = flat
        cols, flat_cols, offsets, self.pad = [], [], [], []
        off = 0
        node_to_flat = None
        if flat is not None:
            node_to_flat = np.full(len(h.nodes), NO_TARGET, dtype=np.int64)
            node_to_flat[flat.nodes] = np.arange(len(flat.nodes))
        extra_i = 0
        for d in datasets:
            t = h.tables(d)
            n = t.targets.shape[1]
            self.pad.append(n)
            offsets.append(off)
            off += n + 1
            cols.append(np.concatenate([t.targets, np.full((t.targets.shape[0], 1), NO_TARGET, np.uint8)], axis=1))
            if node_to_flat is not None:
                v2n = t.value_to_node
                ft = np.where(v2n >= 0, node_to_flat[np.clip(v2n, 0, None)], NO_TARGET)
                if h.mapping(d).is_boxes:
                    unl = h.mapping(d).taxonomy.encoding.unlabeled
                    if unl is not None:
                        ft[unl] = len(flat.nodes) + extra_i
                    extra_i += 1
                flat_cols.append(np.concatenate([ft, [NO_TARGET]]).astype(np.uint8))
        self.table = torch.as_tensor(np.concatenate(cols, axis=1), device=device)  # [n_cls, total]
        self.flat_table = (torch.as_tensor(np.concatenate(flat_cols), device=device) if flat is not None else None)
        self.offsets = torch.as_tensor(offsets, dtype=torch.long, device=device)
        self.box_classifier = [h.tables(d).box_classifier for d in datasets]
        self.is_box = torch.as_tensor([b is not None for b in self.box_classifier], device=device)

    def to(self, device: torch.device | str) -> LabelMapper:
        self.table = self.table.to(device)
        if self.flat_table is not None:
            self.flat_table = self.flat_table.to(device)
        self.offsets = self.offsets.to(device)
        self.is_box = self.is_box.to(device)
        return self

    def _index(self, labels: torch.Tensor, ds: torch.Tensor) -> torch.Tensor:
        return labels.long() + self.offsets[ds.long()].view(-1, *([1] * (labels.dim() - 1)))

    def targets(self, labels: torch.Tensor, ds: torch.Tensor) -> torch.Tensor:
        """[B,H,W] stored values + [B] dataset positions -> [n_classifiers, B, H, W] uint8 targets."""
        return self.table[:, self._index(labels, ds)]

    def flat_targets(self, labels: torch.Tensor, ds: torch.Tensor) -> torch.Tensor:
        assert self.flat_table is not None
        return self.flat_table[self._index(labels, ds)]


def gating_chain(h: Hierarchy, j: int, gating: str) -> list[tuple[int, int]]:
    """(classifier, child position) decisions that must hold for a box pixel to supervise classifier j.

    `path`: every decision from the root down to j's node; `l1`: only the Level-1 decision;
    `l2`: only the Level-2 decision (the authors' code), or the last one when the path is shorter.
    """
    if gating not in GATINGS:
        raise ValueError(f"gating must be one of {GATINGS}, got {gating!r}")
    chain = []
    for node in h.path_to(h.classifiers[j].node):
        k = h.classifier_of[h.nodes[node].parent]
        chain.append((k, h.classifiers[k].children.index(node)))
    if gating == "l1":
        return chain[:1]
    if gating == "l2":
        return chain[1:2] if len(chain) >= 2 else chain[-1:]
    return chain


def gate_box_targets(targets: torch.Tensor, logits: list[torch.Tensor], ds: torch.Tensor, mapper: LabelMapper,
                     chains: dict[int, list[tuple[int, int]]]) -> torch.Tensor:
    """Drop box-pixel targets where the network's own (hard, no-gradient) path does not reach the box node."""
    out = targets
    for d, j in enumerate(mapper.box_classifier):
        if j is None:
            continue
        rows = (ds == d).nonzero().flatten()
        if rows.numel() == 0:
            continue
        with torch.no_grad():
            ok = torch.ones((rows.numel(), *targets.shape[2:]), dtype=torch.bool, device=targets.device)
            for k, pos in chains[j]:
                ok &= logits[k].detach()[rows].argmax(dim=1) == pos
        if out is targets:
            out = targets.clone()
        sub = out[j, rows]
        out[j, rows] = torch.where(ok, sub, torch.full_like(sub, NO_TARGET))
    return out


def pooled_ce(logits: torch.Tensor, target: torch.Tensor,
              reduce_count: Callable[[torch.Tensor], torch.Tensor] | None = None,
              weight: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy over the supervising pixels of the whole batch (0 when there are none).

    With `reduce_count` (DDP), the denominator is the pixel count over ALL processes, scaled so that
    DDP's gradient averaging yields the gradient of the global pooled mean. With class `weight`s it
    is the weighted mean sum_i w[t_i] CE_i / sum_i w[t_i] (PyTorch's weighted 'mean').
    """
    t = target.long()
    valid = t != NO_TARGET
    if weight is None:
        count = valid.sum()
    else:
        count = weight[t[valid]].sum()
    s = F.cross_entropy(logits.float(), t, weight=weight, ignore_index=NO_TARGET, reduction="sum")
    if reduce_count is not None:
        total, world = reduce_count(count)
        return s * world / _nonzero(total), total
    # an empty set gives 0 (cross_entropy's sum over no pixel is 0 and keeps the graph connected)
    return s / _nonzero(count), count


def _nonzero(count: torch.Tensor) -> torch.Tensor:
    """The denominator, 1 where nothing supervises (a weighted count may be positive and below 1)."""
    return torch.where(count > 0, count, torch.ones_like(count))


def hierarchical_loss(logits: list[torch.Tensor], labels: torch.Tensor, ds: torch.Tensor, mapper: LabelMapper,
                      lambdas: list[float], chains: dict[int, list[tuple[int, int]]],
                      reduce_count: Callable | None = None, weights: list[torch.Tensor] | None = None,
                      ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Total = sum_j lambda_j L_j; returns (total, [L_j before lambda]). `weights`: class weights per classifier."""
    targets = gate_box_targets(mapper.targets(labels, ds), logits, ds, mapper, chains)
    per_head = [pooled_ce(lg, targets[j], reduce_count, weights[j] if weights is not None else None)[0]
                for j, lg in enumerate(logits)]
    total = sum(lam * lj for lam, lj in zip(lambdas, per_head, strict=True))
    return total, per_head


def flat_loss(logits: list[torch.Tensor], labels: torch.Tensor, ds: torch.Tensor, mapper: LabelMapper,
              reduce_count: Callable | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
    loss, _ = pooled_ce(logits[0], mapper.flat_targets(labels, ds), reduce_count)
    return loss, [loss]
