"""Confusion matrices and the metrics derived from them (rows = ground truth, columns = prediction).

The semantics follow the official tools: pixels whose ground truth is ignored are not counted.
Classes are contiguous indices 0..n-1 here; callers map raw ids to indices with lookup tables.
"""

from __future__ import annotations

import numpy as np


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
    """Per-class pixel accuracy (recall), IoU, and gt pixel counts; NaN where undefined."""
    cm = cm.astype(np.float64)
    tp = np.diag(cm)
    gt = cm.sum(axis=1)
    pr = cm.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        pa = tp / gt
        iou = tp / (gt + pr - tp)
    return {"PA": pa, "IoU": iou, "pixels": gt}


def summarize(cm: np.ndarray, evaluated: np.ndarray | None = None) -> dict[str, float]:
    """mPA / mIoU over evaluated classes present in the ground truth, global PA, fwIoU."""
    pc = per_class(cm)
    present = pc["pixels"] > 0
    if evaluated is not None:
        present &= evaluated
    total = cm.sum()
    out = {
        "mPA": float(np.mean(pc["PA"][present])) if present.any() else float("nan"),
        "mIoU": float(np.mean(pc["IoU"][present])) if present.any() else float("nan"),
        "pixel_accuracy": float(np.trace(cm) / total) if total else float("nan"),
    }
    freq = pc["pixels"][present] / max(pc["pixels"][present].sum(), 1)
    out["fwIoU"] = float(np.sum(freq * pc["IoU"][present])) if present.any() else float("nan")
    return out
