"""The human side of an evaluation result: the text table `labeltree evaluate` prints, and the confusion plot.

Both read only the result's JSON dict (`EvaluationResult.data`), so a saved `-o` file renders the same.
matplotlib is imported only when a plot is drawn.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from labeltree.evaluate.protocols import Rules
from labeltree.fsutil import atomic_path


def _fmt(x: float | None, pct: bool = True) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "   -  "
    return f"{100 * x:6.2f}" if pct else f"{x:6.3f}"


def _class_rows(res: dict[str, Any], width: int) -> list[str]:
    """One line per class with gt pixels or false positives."""
    return [f"{n:<{width}}  {_fmt(c['IoU'])}  {_fmt(c['PA'])}  {c['pixels']:>12}"
            for n, c in res["classes"].items() if c["pixels"] or c["FP"]]


def _summary_rows(res: dict[str, Any], width: int) -> list[str]:
    """The means (and what they run over), category mIoU, 'other' predictions, absent classes, tree levels."""
    if res.get("mean_over") == "defined":
        n_def = sum(1 for c in res["classes"].values() if c["IoU"] is not None)
        over = f"over {n_def} of {res['n_classes']} classes with a defined IoU"
    else:
        over = f"over {res['n_present']} of {res['n_classes']} classes present in the gt"
    lines = [f"{'mIoU':<{width}}  {_fmt(res['mIoU'])}   {over}", f"{'mPA':<{width}}  {_fmt(res['mPA'])}",
             f"{'pixel accuracy':<{width}}  {_fmt(res['pixel_accuracy'])}", f"{'fwIoU':<{width}}  {_fmt(res['fwIoU'])}"]
    if res.get("categories"):
        cats = ", ".join(f"{k} {_fmt(v).strip()}" for k, v in res["categories"].items() if v is not None)
        lines.append(f"{'category mIoU':<{width}}  {_fmt(res['mIoU_categories'])}   ({cats})")
    if res["other_pixels"]:
        lines.append(f"predictions of classes outside the evaluated set on evaluated pixels: {res['other_pixels']} "
                     "(counted as errors)")
    absent = [n for n, c in res["classes"].items() if c["pixels"] == 0 and c["IoU"] is None]
    if absent:
        lines.append(f"absent from the gt (not in the means): {', '.join(absent[:12])}"
                     + (f" ... ({len(absent) - 12} more)" if len(absent) > 12 else ""))
    for lv, r in (res.get("levels") or {}).items():
        lines.append(f"tree level {lv}: mIoU {_fmt(r['mIoU']).strip()}  mPA {_fmt(r['mPA']).strip()}  "
                     f"pixel accuracy {_fmt(r['pixel_accuracy']).strip()}  ({r['n_present']} of {r['n_classes']} "
                     "nodes present)")
    return lines


def format_table(res: dict[str, Any]) -> str:
    """Per-class IoU / PA / pixels, then the summary numbers (percent): what `labeltree evaluate` prints."""
    width = max([len(n) for n in res["classes"]] + [14])
    lines = [f"{res['dataset']} ({res.get('split', '')}, {res.get('images', '?')} images, classes: "
             f"{res['classes_evaluated']}, protocol: {res['protocol']}"
             + (f", scored at {res['eval_size']})" if res.get("eval_size") else ")")]
    if res.get("rules"):
        lines.append(Rules(**{**res["rules"], "overrides": tuple(res["rules"]["overrides"])}).describe())
    rule = "-" * (width + 32)
    lines += [f"{'class':<{width}}  {'IoU':>6}  {'PA':>6}  {'pixels':>12}", rule, *_class_rows(res, width), rule]
    return "\n".join(lines + _summary_rows(res, width))


def plot_confusion(res: dict[str, Any], path: str | Path) -> None:
    """Confusion matrix (rows = gt) as a PNG with a log colour scale, written atomically."""
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    labels = res["confusion"]["labels"]
    cm = np.asarray(res["confusion"]["matrix"], dtype=np.float64)
    size = max(6.0, 0.22 * len(labels) + 3)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    shown = np.where(cm > 0, cm, np.nan)
    vmax = max(float(np.nanmax(shown)) if np.isfinite(shown).any() else 1.0, 1.0)
    im = ax.imshow(shown, norm=LogNorm(vmin=1, vmax=vmax), cmap="viridis", interpolation="nearest")
    ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
    ax.set_yticks(range(cm.shape[0]), labels[: cm.shape[0]], fontsize=7)
    ax.set_xlabel("prediction")
    ax.set_ylabel("ground truth")
    ax.set_title(f"{res['dataset']}: mIoU {100 * (res['mIoU'] or 0):.2f}% (pixels, log scale)")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
