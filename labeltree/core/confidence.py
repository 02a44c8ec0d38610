"""Path confidence and back-off: the cascade of labeltree.core.hierarchy.cascade, keeping per pixel the
probability of the path it took, and stopping where that probability would fall below a threshold.

The path confidence of a node is the product of the chosen softmax probabilities from the root down to it
(a classifier not asked, `skip`, counts 1). It can only fall along a path, so "the deepest node whose path
confidence is at least T" is where the first step would take it below T: an unsure sign pixel stays at
Traffic Sign (Front) instead of becoming a confident wrong sign class (issue 28). T = 0 is the plain cascade.

One implementation for numpy (ONNX Runtime on a `scores` export) and torch (the checkpoint, and traced
into the exported graph), like `cascade`.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass
class PathConfidence:
    """The cascade's answer with its confidence (numpy arrays or torch tensors, the scores' leading shape)."""

    nodes: Any  # int64 node per pixel: the leaf the argmax path reaches, or the node it backed off to
    confidence: Any  # float32 path confidence of `nodes` (1 at the root)
    levels: list[Any]  # per level 1..depth: the chosen probability of the classifier asked there (1: none asked)


def confident_cascade(probs: Sequence[Any], owners: Sequence[int], children: Sequence[Any],
                      levels: Sequence[int], min_confidence: float = 0.0) -> PathConfidence:
    """The hard top-down argmax cascade over softmax probabilities (class axis at -3), with confidences.

    `owners[j]` owns classifier j, whose level (1 = root's) is `levels[j]`; `children[j]` is its logit -> node
    table, or a node (an int: the classifier is not asked, probability 1). Classifiers come parents first.
    A pixel standing on classifier j's owner moves to the chosen child only where its path confidence times
    the chosen probability is at least `min_confidence`; otherwise it stays (backs off) at the owner.
    """
    first = probs[0]
    depth = max(levels) if levels else 0
    if type(first).__module__.startswith("torch"):
        import torch

        axis = first.dim() - 3
        cur = torch.zeros_like(first.select(axis, 0), dtype=torch.int64)
        conf = torch.ones_like(first.select(axis, 0), dtype=torch.float32)
        per_level = [torch.ones_like(conf) for _ in range(depth)]
        for s, owner, table, lvl in zip(probs, owners, children, levels, strict=True):
            if isinstance(table, int):
                cand, p = torch.full_like(cur, table), torch.ones_like(conf)
            else:
                table = table if isinstance(table, torch.Tensor) else torch.as_tensor(table, device=first.device)
                cand, p = table[s.argmax(axis)], s.amax(axis).float()
            at = cur == owner
            step = conf * p
            ok = at & (step >= min_confidence)
            cur = torch.where(ok, cand, cur)
            conf = torch.where(ok, step, conf)
            per_level[lvl - 1] = torch.where(at, p, per_level[lvl - 1])
        return PathConfidence(cur, conf, per_level)
    return back_off(decide(probs, children), owners, levels, min_confidence)


def decide(probs: Sequence[Any], children: Sequence[Any]) -> list[tuple[Any, Any]]:
    """Numpy: per classifier, (the child node its argmax picks, that probability) per pixel; a classifier not
    asked (an int table) picks that node with probability 1. Independent of the threshold, so a sweep over
    thresholds decides once (`back_off` per T)."""
    import numpy as np

    first = probs[0]
    shape = first.shape[:-3] + first.shape[-2:]
    out = []
    for s, table in zip(probs, children, strict=True):
        if isinstance(table, int):
            out.append((np.full(shape, table, dtype=np.int64), np.ones(shape, dtype=np.float32)))
        else:
            pick = np.asarray(table, dtype=np.int64)[np.argmax(s, axis=-3)]
            out.append((pick, np.max(s, axis=-3).astype(np.float32)))
    return out


def back_off(decided: Sequence[tuple[Any, Any]], owners: Sequence[int], levels: Sequence[int],
             min_confidence: float = 0.0) -> PathConfidence:
    """Numpy: the cascade over `decide`'s choices, stopping where the path confidence would fall below T."""
    import numpy as np

    shape = decided[0][0].shape
    cur = np.zeros(shape, dtype=np.int64)
    conf = np.ones(shape, dtype=np.float32)
    per_level = [np.ones(shape, dtype=np.float32) for _ in range(max(levels) if levels else 0)]
    for (cand, p), owner, lvl in zip(decided, owners, levels, strict=True):
        at = cur == owner
        step = (conf * p).astype(np.float32)
        ok = at & (step >= np.float32(min_confidence))
        cur = np.where(ok, cand, cur)
        conf = np.where(ok, step, conf)
        per_level[lvl - 1] = np.where(at, p, per_level[lvl - 1])
    return PathConfidence(cur, conf, per_level)


def check_min_confidence(value: float, option: str = "--min-confidence") -> float:
    """A back-off threshold is a probability: 0 <= T <= 1 (0: never back off)."""
    from labeltree.errors import LabeltreeError

    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= value <= 1.0:  # NaN fails
        raise LabeltreeError(f"{option}: expected a probability between 0 and 1 (0 = never back off), got {value!r}")
    return float(value)


def confidence_png(conf: Any) -> Any:
    """Path confidence -> uint16 0..65535 (what `predict --confidence` writes as {stem}_conf.png)."""
    import numpy as np

    return np.round(np.clip(np.asarray(conf, dtype=np.float64), 0.0, 1.0) * 65535.0).astype(np.uint16)
