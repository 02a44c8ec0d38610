"""Evaluation while training: per dataset, in the dataset's own label space (DESIGN §2.6).

The network's node map is projected with the tree's `node_to_value` (the cascade stopped at the
depth the dataset annotates); predicted nodes the dataset has no class for count as errors (an
extra 'other' column). When the evaluate library (`labeltree.evaluate.Evaluator`) is present it
computes the numbers; otherwise the same confusion-matrix formulas from `labeltree.metrics`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from labeltree.hierarchy import Hierarchy
from labeltree.metrics import confusion, per_class, summarize

from .data import Source
from .predict import Predictor


class DatasetScorer:
    """Accumulates a confusion matrix over the evaluated classes of one dataset."""

    def __init__(self, h: Hierarchy, dataset: str):
        m = h.mapping(dataset)
        t = h.tables(dataset)
        self.dataset = m.dataset
        self.classes = sorted((m.taxonomy.stored_value(c), c) for c, n in m.to_node.items()
                              if n is not None and c >= 0)
        self.values = [v for v, _ in self.classes]
        self.names = [m.taxonomy.by_id(c).name for _, c in self.classes]
        self.n = len(self.classes)
        lut = np.full(max(t.value_to_node.shape[0], max(self.values) + 1) + 1, -1, dtype=np.int64)
        lut[self.values] = np.arange(self.n)
        self.lut = lut
        self.node_to_value = t.node_to_value
        # classes whose node lies below a box classifier's node: the sign classes (Extended signs)
        box_nodes = {h.classifiers[h.tables(d).box_classifier].node for d in h.mappings
                     if h.tables(d).box_classifier is not None}
        below = set()
        for b in box_nodes:
            below |= set(h.descendants(b)) - {b}
        self.sub = np.array([m.to_node[c] in below for _, c in self.classes], dtype=bool)
        self.cm = np.zeros((self.n + 1, self.n + 1), dtype=np.int64)

    def add(self, gt_values: np.ndarray, nodes: np.ndarray) -> None:
        gt = self.lut[np.clip(gt_values.astype(np.int64), 0, len(self.lut) - 1)]
        pv = np.where(nodes >= 0, self.node_to_value[np.clip(nodes, 0, None)], -1)
        pred = np.where(pv >= 0, self.lut[np.clip(pv, 0, len(self.lut) - 1)], -1)
        pred = np.where(pred < 0, self.n, pred)  # no class of this dataset -> 'other' (an error)
        self.cm += confusion(gt, pred, self.n + 1)

    def result(self) -> dict[str, Any]:
        evaluated = np.zeros(self.n + 1, dtype=bool)
        evaluated[:self.n] = True
        out: dict[str, Any] = summarize(self.cm, evaluated)
        pc = per_class(self.cm)
        out["classes"] = {name: {"IoU": _f(pc["IoU"][i]), "PA": _f(pc["PA"][i]), "pixels": int(pc["pixels"][i])}
                          for i, name in enumerate(self.names) if pc["pixels"][i] > 0}
        if self.sub.any() and not self.sub.all():
            ev = np.zeros(self.n + 1, dtype=bool)
            ev[:self.n] = self.sub
            s = summarize(self.cm, ev)
            out["signs"] = {"mIoU": s["mIoU"], "mPA": s["mPA"]}
        return out


def _f(x: float) -> float | None:
    return None if np.isnan(x) else float(x)


def evaluate_sources(pred: Predictor, sources: list[Source], sliding: bool = False) -> dict[str, dict[str, Any]]:
    """{dataset: metrics} over whole images at training scale."""
    was_training = pred.model.training
    pred.model.eval()
    out = {}
    try:
        for src in sources:
            scorer = DatasetScorer(pred.h, src.name)
            for i in range(len(src)):
                img, lab = src.load(i)
                x = torch.from_numpy(np.array(img)).permute(2, 0, 1)[None]
                nodes = pred.nodes(pred.scores(x, sliding))[0].cpu().numpy()
                scorer.add(lab, nodes)
            out[src.name] = scorer.result()
    finally:
        pred.model.train(was_training)
    return out
