"""Selective prediction with back-off (issue 28): how a threshold T trades full-depth answers for safe coarse ones.

Per labelled pixel (ground truth a tree node g) and threshold T, the model's node n_T (the cascade backed off
below path confidence T; n_0 the leaf it reaches) is, in the dataset's ids:
  - at full depth where the dataset's value of n_T is that of n_0 (backing off cost this dataset nothing);
    then right or wrong by its value;
  - else backed off: "correct but coarse" where n_T is an ancestor-or-self of g, else wrong.
coverage = full-depth share; risk = wrong share of full-depth pixels. The area under the risk-coverage curve
(trapezoids over the sweep) summarises it: lower is better. Sign pixels (ground truth below the sign
classifier's node) are counted apart: the wrong sign-class answers backing off removes, and how many stay.
Runs a `.pt` (torch) over a dataset's split; the probabilities are computed once per image for all T.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from labeltree.core.confidence import back_off, check_min_confidence, decide
from labeltree.evaluate.signs import sign_rule_nodes

if TYPE_CHECKING:  # torch only when a sweep runs
    from labeltree.infer.pytorch import TorchModel

DEFAULT_SWEEP = (0.0, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)


@dataclass
class Counts:
    pixels: int = 0
    full: int = 0
    full_right: int = 0
    coarse_right: int = 0
    wrong: int = 0  # full-depth wrong + backed off to a non-ancestor
    sign: dict[str, int] = field(default_factory=lambda: {"pixels": 0, "full": 0, "wrong_full": 0})

    def row(self, t: float) -> dict[str, Any]:
        full = max(self.full, 1)
        return {"T": t, "pixels": self.pixels, "coverage": self.full / max(self.pixels, 1),
                "accuracy_full": self.full_right / full, "risk": 1 - self.full_right / full,
                "coarse_right": self.coarse_right / max(self.pixels, 1), "wrong": self.wrong / max(self.pixels, 1),
                "sign_pixels": self.sign["pixels"], "sign_full": self.sign["full"],
                "sign_wrong_full": self.sign["wrong_full"]}


def selective_sweep(checkpoint: str | Path | TorchModel, dataset: str, root: str | Path, split: str | None = None,
                    thresholds: tuple[float, ...] = DEFAULT_SWEEP, device: str | None = "cpu",
                    limit: int | None = None, weights: str = "ema") -> list[dict[str, Any]]:
    """Rows per threshold: coverage, full-depth accuracy / risk, correct-but-coarse and wrong shares, signs.

    `checkpoint`: a `.pt`, or a TorchModel already open (one load for several datasets; `device` and `weights`
    then unused). `split`: None = val, or test where the dataset has no val (as `labeltree evaluate`)."""
    import torch

    from labeltree.datasets.base import read_label
    from labeltree.datasets.registry import open_dataset
    from labeltree.evaluate.folder import default_split
    from labeltree.infer.base import photo
    from labeltree.infer.pytorch import TorchModel
    from labeltree.train.predict import dataset_table

    ts = [check_min_confidence(t, "--risk-coverage thresholds") for t in thresholds]
    model = checkpoint if isinstance(checkpoint, TorchModel) else TorchModel(checkpoint, device, weights)
    h, net = model.net.h, model.net
    if net.flat is not None:
        from labeltree.errors import LabeltreeError

        raise LabeltreeError("the flat model has no ancestors to fall back on: selective prediction needs a "
                             "hierarchical model", model.path)
    key = h.mapping(dataset).dataset
    tables, tax = h.tables(key), h.mapping(dataset).taxonomy
    values = np.asarray(dataset_table(h, key)["values"], dtype=np.int64)
    anc = np.zeros((len(h.nodes), len(h.nodes)), dtype=bool)  # anc[g, n]: n is g or an ancestor of g
    for g in range(len(h.nodes)):
        anc[g, h.ancestors(g)] = True
    rule = sign_rule_nodes(h)  # sign pixels: ground truth at or below the node the box dataset hangs under
    sign = set(h.descendants(rule[0])) if rule is not None else set()
    is_sign = np.isin(np.arange(len(h.nodes)), sorted(sign))
    owners = [c.node for c in h.classifiers]
    levels = [c.level for c in h.classifiers]
    counts = [Counts() for _ in ts]
    reader = open_dataset(tax, root)
    samples = reader.samples(split or default_split(reader))[:limit]
    resize, mode = model.scale(key)
    for s in samples:
        img = photo(s)
        with torch.no_grad():
            probs = [p[0].cpu().numpy() for p in net.scores(net.input(img, resize, mode))]
        gt = tables.nodes_of(read_label(s, tax))
        ok = gt >= 0
        g = gt[ok]  # the labelled pixels' ground truth, its values and sign flags: once per image, not per T
        vg, sg = values[g], is_sign[g]
        decided = decide(probs, h.child_table)  # the argmaxes once; the cascade per T
        v0 = None  # the values at T = 0 (the leaf), the first threshold
        for t, c in zip(ts, counts, strict=True):
            n = _to_size(back_off(decided, owners, levels, t).nodes, gt.shape)[ok]
            if v0 is None:
                v0 = values[n]
            _count(c, n, values[n], v0, g, vg, sg, anc)
    return [c.row(t) for t, c in zip(ts, counts, strict=True)]


def _to_size(n: np.ndarray, size: tuple[int, ...]) -> np.ndarray:
    from labeltree.datasets.resize import nearest_resize

    return nearest_resize(n, (int(size[0]), int(size[1])))


def _count(c: Counts, n: np.ndarray, v: np.ndarray, v0: np.ndarray, g: np.ndarray, vg: np.ndarray,
           sg: np.ndarray, anc: np.ndarray) -> None:
    """Add one image at one T: over its labelled pixels, the node n_T, its value v, the leaf's value v0, the
    ground truth g, its value vg and whether it is a sign pixel sg."""
    full = v == v0
    right = full & (v == vg)
    coarse = ~full & anc[g, n]
    c.pixels += int(g.size)
    c.full += int(full.sum())
    c.full_right += int(right.sum())
    c.coarse_right += int(coarse.sum())
    c.wrong += int((~right & ~coarse).sum())
    c.sign["pixels"] += int(sg.sum())
    c.sign["full"] += int((sg & full).sum())
    c.sign["wrong_full"] += int((sg & full & ~right).sum())


def sign_back_off(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per row of a sweep (its first row T = 0): the issue's two sign figures as counts and shares.

    `kept` = sign pixels still at full depth / sign pixels; `removed` = the wrong full-depth sign answers of T = 0
    that are no longer wrong at full depth / those of T = 0 (a full-depth answer at T is the T = 0 answer, so
    backing off only removes). A share is None where its denominator is 0."""
    if not rows or rows[0]["T"] != 0.0:
        raise ValueError("sign_back_off: the sweep must start at T = 0")
    wrong0 = rows[0]["sign_wrong_full"]
    out = []
    for r in rows:
        removed = wrong0 - r["sign_wrong_full"]
        out.append({"T": r["T"], "sign_pixels": r["sign_pixels"], "sign_full": r["sign_full"],
                    "kept": r["sign_full"] / r["sign_pixels"] if r["sign_pixels"] else None,
                    "wrong0": wrong0, "removed_pixels": removed, "removed": removed / wrong0 if wrong0 else None})
    return out


def area(rows: list[dict[str, Any]]) -> float:
    """Area under the risk-coverage curve (trapezoids over coverage, the points sorted by it)."""
    pts = sorted((r["coverage"], r["risk"]) for r in rows)
    return float(sum((b[0] - a[0]) * (a[1] + b[1]) / 2 for a, b in zip(pts, pts[1:], strict=False)))


def write_sweep(rows: list[dict[str, Any]], csv_path: Path, png_path: Path | None = None) -> None:
    """The sweep as CSV (one row per T) and the risk-coverage curve as PNG."""
    from labeltree.fsutil import write_text

    cols = list(rows[0])
    write_text(csv_path, ",".join(cols) + "\n" + "".join(
        ",".join(f"{r[k]:.6g}" if isinstance(r[k], float) else str(r[k]) for k in cols) + "\n" for r in rows))
    if png_path is None:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from labeltree.fsutil import atomic_path

    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([r["coverage"] for r in rows], [r["risk"] for r in rows], "o-")
    for r in rows:
        ax.annotate(f"{r['T']:g}", (r["coverage"], r["risk"]), fontsize=6)
    ax.set_xlabel("coverage (full-depth share)")
    ax.set_ylabel("risk (wrong share at full depth)")
    ax.set_title(f"risk-coverage, area {area(rows):.4f}", fontsize=8)
    fig.tight_layout()
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
