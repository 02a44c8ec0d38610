"""Confusion matrices and the metrics derived from them (rows = ground truth, columns = prediction).

The semantics follow the official tools: pixels whose ground truth is ignored are not counted.
Classes are contiguous indices 0..n-1 here; callers map raw ids to indices with lookup tables.

A matrix may be rectangular, n rows x m >= n columns: the first n columns are the n evaluated
classes (same order as the rows) and the extra columns are predictions of anything else
("other": a class outside the evaluated set). Those extra columns are errors (false negatives of
the row's class) but never false positives of an evaluated class, which is how cityscapesScripts
treats predictions on pixels whose ground truth is ignored, and predictions of ignored classes.
"""

from __future__ import annotations

import numpy as np

from labeltree.vocab import DEFAULT_MIN_PIXELS  # noqa: F401 - re-exported; the paper's >= 1000 gt pixels rule


def confusion(gt: np.ndarray, pred: np.ndarray, n: int, valid: np.ndarray | None = None) -> np.ndarray:
    """n x n int64 confusion matrix from index arrays via np.bincount.

    Pixels with gt outside 0..n-1 (e.g. -1 = ignore) are skipped; predictions outside 0..n-1 must be
    mapped by the caller to an extra "other" index if they should count as errors.
    """
    gt = gt.ravel()
    pred = pred.ravel()
    keep = (gt >= 0) & (gt < n) & (pred >= 0) & (pred < n)
    if valid is not None:
        keep &= valid.ravel()
    idx = gt[keep].astype(np.int64) * n + pred[keep].astype(np.int64)
    return np.bincount(idx, minlength=n * n).reshape(n, n)


def per_class(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class pixel accuracy (recall), IoU, and gt pixel counts; NaN where undefined.

    `cm` is n x m (m >= n); columns n.. are "other" predictions: they lower PA and IoU of the row's
    class (false negatives) but are nobody's false positives.
    """
    cm = cm.astype(np.float64)
    n = cm.shape[0]
    tp = np.diag(cm[:, :n])
    gt = cm.sum(axis=1)
    pr = cm[:, :n].sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        pa = tp / gt
        iou = tp / (gt + pr - tp)
    return {"PA": pa, "IoU": iou, "pixels": gt, "TP": tp, "FP": pr - tp, "FN": gt - tp}


def _mean(x: np.ndarray, mask: np.ndarray) -> float:
    return float(np.mean(x[mask])) if mask.any() else float("nan")


def summarize(cm: np.ndarray, evaluated: np.ndarray | None = None, mean_over: str = "gt") -> dict[str, float]:
    """mPA / mIoU over evaluated classes, global PA, frequency-weighted IoU.

    mean_over="gt" (docs/design.md §2.6, the paper): classes present in the ground truth.
    mean_over="defined": every class whose IoU is defined (gt or false positives), which is what
    cityscapesScripts' getScoreAverage does (a class absent from the gt but predicted scores 0).
    """
    if mean_over not in ("gt", "defined"):
        raise ValueError(f"mean_over must be 'gt' or 'defined', not {mean_over!r}")
    pc = per_class(cm)
    n = cm.shape[0]
    present = pc["pixels"] > 0
    defined = ~np.isnan(pc["IoU"])
    if evaluated is not None:
        present &= evaluated
        defined &= evaluated
        rows = np.flatnonzero(evaluated)
    else:
        rows = np.arange(n)
    iou_mask = present if mean_over == "gt" else defined
    total = cm[rows].sum()
    out = {
        "mPA": _mean(pc["PA"], present),
        "mIoU": _mean(pc["IoU"], iou_mask),
        "pixel_accuracy": float(pc["TP"][rows].sum() / total) if total else float("nan"),
    }
    freq = pc["pixels"][present] / max(pc["pixels"][present].sum(), 1)
    out["fwIoU"] = float(np.sum(freq * pc["IoU"][present])) if present.any() else float("nan")
    return out


def group_iou(cm: np.ndarray, members: np.ndarray) -> float:
    """IoU of a group of classes taken as one (Cityscapes' category IoU).

    `members` is a bool mask over the n rows/first n columns. TP = predictions inside the group on
    gt inside the group; FN = the rest of the group's rows; FP = group predictions on evaluated
    gt outside the group (cityscapesScripts' getIouScoreForCategory).
    """
    cm = cm.astype(np.float64)
    n = cm.shape[0]
    members = np.asarray(members, dtype=bool)
    if not members.any():
        return float("nan")
    cols = np.zeros(cm.shape[1], dtype=bool)
    cols[:n] = members
    tp = cm[np.ix_(members, cols)].sum()
    fn = cm[members].sum() - tp
    fp = cm[np.ix_(~members, cols)].sum()
    denom = tp + fp + fn
    return float(tp / denom) if denom else float("nan")


def fold(cm: np.ndarray, row_group: np.ndarray, col_group: np.ndarray, n_rows: int, n_cols: int) -> np.ndarray:
    """Sum blocks of a matrix: entry (i, j) goes to (row_group[i], col_group[j]); -1 drops it.

    Used to go from a dataset's full label-space matrix to the evaluated classes (+ "other"), and
    from there to the nodes of one tree level: both are sums of blocks, never a re-count of pixels.
    """
    row_group = np.asarray(row_group, dtype=np.int64)
    col_group = np.asarray(col_group, dtype=np.int64)
    out = np.zeros((n_rows, n_cols), dtype=cm.dtype)
    r = np.flatnonzero(row_group >= 0)
    c = np.flatnonzero(col_group >= 0)
    if len(r) and len(c):
        sub = cm[np.ix_(r, c)]
        # rows first, then columns: two small matrix products with 0/1 indicator matrices
        rows_onehot = np.zeros((n_rows, len(r)), dtype=cm.dtype)
        rows_onehot[row_group[r], np.arange(len(r))] = 1
        cols_onehot = np.zeros((len(c), n_cols), dtype=cm.dtype)
        cols_onehot[np.arange(len(c)), col_group[c]] = 1
        out = rows_onehot @ sub @ cols_onehot
    return out
