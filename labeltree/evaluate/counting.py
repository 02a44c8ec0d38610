"""Counting: one image's confusion matrix over a dataset's label space, from raw label values.

`PairCounter` is the per-image part of an `Evaluator`: small and picklable, so the process-pool
workers of `evaluate_folder` get it cheaply. Pairs of raw values are counted with one np.bincount
(over runs of equal pairs where the maps are piecewise constant) and folded into label-space
indices with lookup tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from labeltree.errors import LabeltreeError
from labeltree.evaluate.signs import second_choice


def to_numpy(a: Any) -> np.ndarray:
    """A numpy array of `a`; torch tensors (recognised without importing torch) moved to the CPU."""
    if type(a).__module__.startswith("torch"):
        a = a.detach().cpu().numpy()
    return np.asarray(a)


@dataclass
class PairCounter:
    """The per-image part of an Evaluator: small and picklable, so process-pool workers get it cheaply."""

    dataset: str  # taxonomy name (for messages)
    taxonomy_ref: str  # what load_taxonomy() needs to re-open it in a worker
    lut: np.ndarray  # stored value -> label-space index (-1 = no class)
    node_lut: np.ndarray | None  # tree node -> label-space index (pred_space="tree")
    pred_space: str
    n: int
    n_nodes: int = 0  # tree nodes = channels of a score map
    sign_rule: tuple[int, tuple[int, ...]] | None = None  # (generic, subclasses) for flat score maps
    outside_index: int | None = None  # predicted values that are no class count as this index (None: refused)
    eval_size: tuple[int, int] | None = None  # (H, W) both maps are nearest-resized to before counting (Rules)

    def __post_init__(self) -> None:
        self.pred_lut = self.node_lut if self.pred_space == "tree" else self.lut

    @property
    def what(self) -> str:
        return "tree node indices" if self.pred_space == "tree" else f"{self.dataset} class values"

    def decide(self, scores: np.ndarray, path: Any = None) -> np.ndarray:
        """Flat model: node decisions from score maps (..., C = tree nodes, H, W).

        argmax, or with `sign_rule` set (paper protocol) the traffic-sign second-choice rule.
        """
        if self.pred_space != "tree":
            raise LabeltreeError("score maps are indexed by tree node: use --pred-space tree with a tree", path)
        scores = to_numpy(scores)
        if scores.ndim < 3 or scores.shape[-3] != self.n_nodes:
            raise LabeltreeError(f"score maps must have shape (..., {self.n_nodes}, H, W), one channel per tree "
                                 f"node in tree order; got {scores.shape}", path)
        if self.sign_rule is None:
            return np.argmax(scores, axis=-3)
        return second_choice(scores, self.sign_rule[0], self.sign_rule[1], axis=-3)

    def confusion(self, gt: Any, pred: Any, gt_path: Any = None, pred_path: Any = None) -> np.ndarray:
        """The n x n matrix of one image (or batch); see `count`."""
        return self.count(gt, pred, gt_path, pred_path)[0]

    def count(self, gt: Any, pred: Any, gt_path: Any = None, pred_path: Any = None) -> tuple[np.ndarray, int]:
        """(the n x n matrix of one image (or batch), its predicted pixels that are no class: `outside_index`).

        Fast path (label spaces up to ~1M value pairs, i.e. every 8-bit dataset and any dataset with
        tree-node predictions): one key gt * P + pred per pixel, counted over RUNS of equal keys
        (label maps are piecewise constant, so there are ~100x fewer runs than pixels) or with a
        plain bincount when the maps are too noisy for runs to pay off; the raw-value histogram is
        then folded into label-space indices with the LUTs. Other spaces map through the LUTs first.
        """
        gt = to_numpy(gt)
        pred = to_numpy(pred)
        if self.eval_size is not None:
            gt, pred = resize_nearest(gt, self.eval_size), resize_nearest(pred, self.eval_size)
        if gt.shape != pred.shape:
            where = f" (ground truth {gt_path})" if gt_path else ""
            raise LabeltreeError(f"prediction is {_size(pred)} but the ground truth{where} is {_size(gt)}; "
                                 "predict at the label resolution", pred_path)
        _check_integer(gt, gt_path, "ground truth")
        _check_integer(pred, pred_path, "prediction")
        n = self.n
        g_size, p_size = len(self.lut), len(self.pred_lut)
        if g_size * p_size <= 1 << 20 and gt.size and _in_range(gt, g_size) and _in_range(pred, p_size):
            hist, keys = _count_pairs(gt.reshape(-1), pred.reshape(-1), p_size, g_size * p_size)
            gv, pv = keys // p_size, keys % p_size
            gi, pi = self.lut[gv], self.pred_lut[pv]
            self._check_values(gv, gi, gt_path, "ground truth", "the dataset's label space")
            outside = 0
            if self.outside_index is not None and self.pred_space == "dataset":
                outside = int(hist[pi < 0].sum())
                pi = np.where(pi < 0, self.outside_index, pi)
            self._check_values(pv, pi, pred_path, "prediction", self._pred_space_name)
            return np.bincount(gi * n + pi, weights=hist, minlength=n * n).astype(np.int64).reshape(n, n), outside
        gi = self._index(gt, self.lut, gt_path, "ground truth", "the dataset's label space")
        outside = 0
        if self.outside_index is not None and self.pred_space == "dataset":
            bad = (pred < 0) | (pred >= len(self.pred_lut))
            bad[~bad] = self.pred_lut[pred[~bad]] < 0
            outside = int(bad.sum())
            pred = np.where(bad, int(np.flatnonzero(self.pred_lut >= 0)[0]), pred)  # any class; replaced below
        pi = self._index(pred, self.pred_lut, pred_path, "prediction", self._pred_space_name)
        if outside:
            pi = np.where(bad, self.outside_index, pi)
        return np.bincount((gi * n + pi).ravel(), minlength=n * n).reshape(n, n), outside

    @property
    def _pred_space_name(self) -> str:
        return "the tree's nodes" if self.pred_space == "tree" else "the dataset's label space"

    def _index(self, a: np.ndarray, lut: np.ndarray, path: Any, what: str, space: str) -> np.ndarray:
        lo, hi = (int(a.min()), int(a.max())) if a.size else (0, 0)
        if lo < 0 or hi >= len(lut):
            bad = np.unique(a[(a < 0) | (a >= len(lut))])
            raise LabeltreeError(f"{what} holds value(s) {_fmt_values(bad)} outside {space} "
                                 f"(0..{len(lut) - 1}) for dataset '{self.dataset}'", path)
        idx = lut[a]
        if (idx < 0).any():
            bad = np.unique(a[idx < 0])
            raise LabeltreeError(f"{what} holds value(s) {_fmt_values(bad)} that are no class of dataset "
                                 f"'{self.dataset}' ({space})", path)
        return idx

    def _check_values(self, values: np.ndarray, idx: np.ndarray, path: Any, what: str, space: str) -> None:
        if (idx < 0).any():
            bad = np.unique(values[idx < 0])
            raise LabeltreeError(f"{what} holds value(s) {_fmt_values(bad)} that are no class of dataset "
                                 f"'{self.dataset}' ({space})", path)


def resize_nearest(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """TensorFlow's NEAREST_NEIGHBOR resize (align_corners False: source = floor(dest * in / out)) of the
    last two axes to (H, W), as the authors resize their evaluation labels."""
    h, w = a.shape[-2:]
    if (h, w) == tuple(size):
        return a
    rows = np.minimum((np.arange(size[0]) * (h / size[0])).astype(np.int64), h - 1)
    cols = np.minimum((np.arange(size[1]) * (w / size[1])).astype(np.int64), w - 1)
    return a[..., rows[:, None], cols[None, :]]


def _in_range(a: np.ndarray, size: int) -> bool:
    return int(a.max()) < size and (a.dtype.kind == "u" or int(a.min()) >= 0)


def _count_pairs(gt: np.ndarray, pred: np.ndarray, p_size: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(counts, keys gt * p_size + pred) of the value pairs present in two flat maps; exact.

    Label maps and predictions are piecewise constant, so pairs are counted over RUNS where neither
    map changes (~1e4-1e5 per 2048x1024 frame): two byte-wise comparison passes and one gather at the
    run starts, without a per-pixel key array. Noisy maps (runs > 1/8 of the pixels) fall back to a
    bincount of per-pixel keys.
    """
    n = gt.size
    change = np.empty(n, dtype=bool)
    change[0] = True
    np.not_equal(gt[1:], gt[:-1], out=change[1:])
    np.logical_or(change[1:], pred[1:] != pred[:-1], out=change[1:])
    starts = np.flatnonzero(change)
    if starts.size * 8 < n:
        lengths = np.diff(starts, append=n)
        key = gt[starts].astype(np.int64) * p_size + pred[starts]
        hist = np.bincount(key, weights=lengths, minlength=size)  # float64: exact below 2**53 pixels
    else:
        key = np.empty(n, dtype=np.uint16 if size <= 1 << 16 else np.uint32)
        np.multiply(gt, p_size, out=key, dtype=key.dtype, casting="unsafe")
        np.add(key, pred, out=key, dtype=key.dtype, casting="unsafe")
        hist = np.bincount(key, minlength=size)
    keys = np.flatnonzero(hist)
    return hist[keys], keys


def _size(a: np.ndarray) -> str:
    return f"{a.shape[-1]}x{a.shape[-2]}" if a.ndim >= 2 else str(a.shape)


def _fmt_values(v: np.ndarray, limit: int = 8) -> str:
    s = ", ".join(str(int(x)) for x in v[:limit])
    return s + (f" and {len(v) - limit} more" if len(v) > limit else "")


def _check_integer(a: np.ndarray, path: Any, what: str) -> None:
    if not np.issubdtype(a.dtype, np.integer):
        raise LabeltreeError(f"{what} must hold integer class values, got dtype {a.dtype}", path)


