"""The demo's figures: predictions beside ground truth, per-class numbers of both models, training losses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from labeltree.demo.plan import MODELS


def gt_nodes(h: Any, dataset: str, lab: np.ndarray) -> np.ndarray:
    """Tree node per pixel of a stored label map; ignored and unknown values (< 0) -> len(h.nodes)."""
    v2n = h.tables(dataset).value_to_node
    nodes = v2n[np.clip(lab.astype(np.int64), 0, len(v2n) - 1)]
    return np.where(nodes >= 0, nodes, len(h.nodes))


def sign_node_mask(h: Any) -> np.ndarray:
    """[len(h.nodes) + 1] bool: the traffic-sign front node and its subclasses (all True without a box dataset)."""
    from labeltree.evaluate.signs import sign_rule_nodes

    rule = sign_rule_nodes(h)
    if rule is None:
        return np.ones(len(h.nodes) + 1, dtype=bool)
    mask = np.zeros(len(h.nodes) + 1, dtype=bool)
    mask[[rule[0], *rule[1]]] = True
    return mask

# -- figures ------------------------------------------------------------------------------------------

def _colour_nodes(h: Any, nodes: np.ndarray) -> np.ndarray:
    """Tree colours; nodes < 0 (no class) and len(h.nodes) (ignored gt) black."""
    colours = np.vstack([h.colors(), np.zeros((1, 3), np.uint8)])
    return colours[np.where(nodes >= 0, nodes, len(h.nodes))]


def plot_predictions(path: Path, h: Any, samples: dict[str, dict[str, list[tuple]]], datasets: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [d for d in datasets if samples["hierarchical"].get(d)]
    fig, axes = plt.subplots(len(rows), 4, figsize=(13, 1.9 * len(rows) + 0.4), squeeze=False)
    for r, d in enumerate(rows):
        img, lab, hn = samples["hierarchical"][d][0]
        fn = samples["flat"][d][0][2] if samples["flat"].get(d) else None
        panels = [(img, "image"), (_colour_nodes(h, gt_nodes(h, d, lab)), "ground truth"),
                  (_colour_nodes(h, hn), "hierarchical")]
        panels.append((_colour_nodes(h, fn) if fn is not None else np.zeros_like(img), "flat"))
        for c, (a, title) in enumerate(panels):
            ax = axes[r][c]
            ax.imshow(a, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(title)
            if c == 0:
                ax.set_ylabel(d, fontsize=9)
    fig.tight_layout()
    _savefig(fig, path)


def plot_per_class(path: Path, metrics: dict[str, dict[str, dict[str, Any]]], panels: list[tuple[str, str]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(panels), 1, figsize=(13, 3.2 * len(panels)), squeeze=False)
    for ax, (dataset, metric) in zip(axes[:, 0], panels, strict=True):
        names = [n for n, c in metrics["hierarchical"][dataset]["classes"].items() if c.get("pixels")]
        x = np.arange(len(names))
        for k, model in enumerate(MODELS):
            cls = metrics[model].get(dataset, {}).get("classes", {})
            vals = [(cls.get(n, {}).get(metric) or 0.0) * 100 for n in names]
            ax.bar(x + (k - 0.5) * 0.4, vals, width=0.4, label=model)
        ax.set_xticks(x)
        ax.set_xticklabels(names, rotation=60, ha="right", fontsize=7)
        ax.set_ylabel(f"{metric} (%)")
        ax.set_title(f"{dataset}: per-class {metric}")
        ax.set_ylim(0, 100)
        ax.legend(fontsize=8)
    fig.tight_layout()
    _savefig(fig, path)


def plot_losses(path: Path, runs: dict[str, Path]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(runs), figsize=(13, 3.5), squeeze=False)
    for ax, (model, ck) in zip(axes[0], runs.items(), strict=True):
        recs = [json.loads(x) for x in (ck.parent / "train.jsonl").read_text().splitlines() if x.strip()]
        steps = [r["step"] for r in recs]
        ax.plot(steps, _smooth([r["loss"] for r in recs]), label="total", lw=2)
        if len(recs[0].get("heads", {})) > 1:
            for head in recs[0]["heads"]:
                ax.plot(steps, _smooth([r["heads"].get(head, 0.0) for r in recs]), label=head, lw=1)
        ax.set_title(f"{model}: training loss (moving average)")
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    fig.tight_layout()
    _savefig(fig, path)


def _smooth(v: list[float], k: int = 10) -> np.ndarray:
    a = np.asarray(v, dtype=np.float64)
    if len(a) < k:
        return a
    c = np.cumsum(np.insert(a, 0, 0.0))
    head = c[1:k] / np.arange(1, k)
    return np.concatenate([head, (c[k:] - c[:-k]) / k])


def _savefig(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(path)
