"""From raw counts to the report's rows: shares and class weights, Table I, the tree roll-up.

Definitions (what the numbers mean):
- annotated pixels: pixels whose value carries a class, i.e. not the taxonomy's unlabeled value,
  not an `ignore_ids` class and, with a hierarchy, not a class the tree mapping ignores.
- share p(c) = pixels(c) / annotated pixels.
- inverse frequency: w(c) = N / (K * pixels(c)) with N annotated pixels and K classes present
  (sklearn's "balanced": a class with the mean frequency gets 1).
- median-frequency balancing (Eigen & Fergus 2015): freq(c) = pixels(c) / annotated pixels of the
  images where c is present; w(c) = median over present classes of freq / freq(c).
- ENet (Paszke et al. 2016): w(c) = 1 / ln(1.02 + p(c)).
- GTSDB: box pixels are the sum of box areas from gt.txt.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from labeltree.core.hierarchy import Hierarchy
from labeltree.core.taxonomy import load_taxonomy
from labeltree.errors import LabeltreeError
from labeltree.evaluate.metrics import DEFAULT_MIN_PIXELS
from labeltree.stats.groups import GroupStats

IMBALANCE_FLAG = 100.0  # classes of one classifier spanning more than two orders of magnitude


def class_weights(pixels: np.ndarray, present_pixels: np.ndarray, counted: np.ndarray) -> dict[str, np.ndarray]:
    """Share and the three weightings over the classes in `counted` with pixels > 0 (NaN elsewhere)."""
    pixels = pixels.astype(np.float64)
    use = counted & (pixels > 0)
    total = pixels[use].sum()
    k = int(use.sum())
    nan = np.full(pixels.shape, np.nan)
    share, inv, freq, mfb, enet = nan.copy(), nan.copy(), nan.copy(), nan.copy(), nan.copy()
    if k:
        share[use] = pixels[use] / total
        inv[use] = total / (k * pixels[use])
        freq[use] = pixels[use] / present_pixels[use]
        mfb[use] = np.median(freq[use]) / freq[use]
        enet[use] = 1.0 / np.log(1.02 + share[use])
    return {"share": share, "frequency": freq, "w_inverse": inv, "w_median_freq": mfb, "w_enet": enet}


def _num(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def _node_of(h: Hierarchy | None, g: GroupStats) -> np.ndarray | None:
    if h is None:
        return None
    try:
        m = h.mapping(g.dataset)
    except LabeltreeError:
        return None
    return h.tables(m.dataset).value_to_node


def class_rows(g: GroupStats, h: Hierarchy | None = None, min_pixels: int = DEFAULT_MIN_PIXELS) -> list[dict]:
    """One row per class of the dataset: raw counts, share, weights, instances/signs/boxes, tree node."""
    tax = load_taxonomy(g.taxonomy)
    w = class_weights(g.pixels, g.present_pixels, g.annotated_mask)
    v2n = _node_of(h, g)
    rows = []
    for c in tax.classes:
        if c.id < 0:
            continue
        v = tax.stored_value(c.id)
        ann = bool(g.annotated_mask[v])
        px = int(g.pixels[v])
        row: dict[str, Any] = {"dataset": g.dataset, "split": g.split, "class_id": c.id, "value": v,
                               "name": c.display, "pixels": px, "images": int(g.images[v]), "ignored": not ann,
                               "evaluated": ann and px >= min_pixels}
        for k in ("share", "frequency", "w_inverse", "w_median_freq", "w_enet"):
            row[k] = _num(w[k][v])
        row["present_pixels"] = int(g.present_pixels[v])
        if c.has_instances and g.instances.any():
            n = int(g.instances[v])
            row["instances"] = n
            row["instance_pixels"] = int(g.instance_pixels[v])
            row["mean_instance_size"] = g.instance_pixels[v] / n if n else None
        if c.shape is not None and g.annotation == "dense":
            row["signs"] = int(g.signs[v])
            row["mean_sign_size"] = px / int(g.signs[v]) if g.signs[v] else None
        if g.annotation == "boxes":
            nb = int(g.boxes[v])
            row["boxes"] = nb
            row["box_pixels"] = int(g.box_pixels[v])
            row["mean_box_w"] = g.box_w[v] / nb if nb else None
            row["mean_box_h"] = g.box_h[v] / nb if nb else None
            row["min_box_area"] = g.box_area_min.get(v)
            row["max_box_area"] = g.box_area_max.get(v)
            row["mean_box_area"] = g.box_pixels[v] / nb if nb else None
        if v2n is not None:
            node = int(v2n[v]) if v < len(v2n) else -2
            row["node"] = h.nodes[node].name if node >= 0 else None  # type: ignore[union-attr]
            row["level"] = h.nodes[node].level if node >= 0 else None  # type: ignore[union-attr]
        rows.append(row)
    return rows


def _megapixels(sizes: Counter) -> tuple[float | None, float | None, float | None]:
    if not sizes:
        return None, None, None
    mp, n = [], []
    for k, c in sizes.items():
        wd, ht = (int(x) for x in k.split("x"))
        mp.append(wd * ht / 1e6)
        n.append(c)
    arr = np.repeat(np.array(mp), np.array(n))
    return float(arr.min()), float(np.median(arr)), float(arr.max())


def summary_row(g: GroupStats, min_pixels: int = DEFAULT_MIN_PIXELS) -> dict[str, Any]:
    """Paper Table I for one dataset split."""
    tax = load_taxonomy(g.taxonomy)
    values = [tax.stored_value(c.id) for c in tax.classes if c.id >= 0]
    classes = [v for v in values if g.annotated_mask[v]]
    ann_px = int(g.pixels[g.annotated_mask].sum())
    total_px = sum(int(k.split("x")[0]) * int(k.split("x")[1]) * c for k, c in g.sizes.items())
    lo, med, hi = _megapixels(g.sizes)
    return {"dataset": g.dataset, "split": g.split, "images": g.n_images, "samples": g.samples,
            "bad_files": len(g.bad), "mp_min": lo, "mp_median": med, "mp_max": hi, "annotation": g.annotation,
            "mask_mode": g.mask_mode, "pixels": total_px, "annotated_pixels": ann_px,
            "annotated_share": ann_px / total_px if total_px else None, "classes": len(classes),
            "classes_present": sum(1 for v in classes if g.pixels[v] > 0),
            "classes_evaluated": sum(1 for v in classes if g.pixels[v] >= min_pixels),
            "boxes": int(g.boxes.sum()) if g.annotation == "boxes" else None}


def rollup(groups: Sequence[GroupStats], h: Hierarchy) -> tuple[list[dict], list[dict]]:
    """Pixels rolled up to each classifier's classes, per dataset and split, and per-classifier imbalance.

    A class's pixels go, for every classifier on its node's path, to that classifier's child on the
    path. `trains` says whether the dataset supervises the classifier (docs/design.md §2.3-2.4); imbalance is
    max/min pixels over the classifier's classes with pixels, counting the datasets that train it
    (all contributing datasets when none does, e.g. evaluation-only data).
    """
    contrib: list[dict] = []
    acc: dict[tuple[str, int], dict[int, dict[str, list[int]]]] = {}
    for g in groups:
        v2n = _node_of(h, g)
        if v2n is None:
            continue
        t = h.tables(h.mapping(g.dataset).dataset)
        per: dict[tuple[int, int], int] = {}
        for v in np.flatnonzero(g.pixels[:len(v2n)]):
            node = int(v2n[v])
            if node < 0:
                continue
            for anc in h.path_to(node):
                j = h.classifier_of.get(h.nodes[anc].parent)
                if j is not None:
                    per[(j, anc)] = per.get((j, anc), 0) + int(g.pixels[v])
        for (j, node), px in sorted(per.items()):
            c = h.classifiers[j]
            trains = bool(t.supervised[j])
            contrib.append({"split": g.split, "classifier": c.name, "level": c.level, "class": h.nodes[node].name,
                            "dataset": g.dataset, "pixels": px, "trains": trains})
            slot = acc.setdefault((g.split, j), {}).setdefault(node, {"all": [0], "train": [0]})
            slot["all"][0] += px
            if trains:
                slot["train"][0] += px
    summary = []
    for (split, j), nodes in sorted(acc.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        c = h.classifiers[j]
        trained = {n: d["train"][0] for n, d in nodes.items()}
        basis = "trained" if any(trained.values()) else "all"
        px = {n: (d["train"][0] if basis == "trained" else d["all"][0]) for n, d in nodes.items()}
        nonzero = {n: p for n, p in px.items() if p > 0}
        lo = min(nonzero.values()) if nonzero else 0
        hi = max(nonzero.values()) if nonzero else 0
        imb = hi / lo if lo else None
        datasets = sorted({r["dataset"] for r in contrib if r["split"] == split and r["classifier"] == c.name})
        summary.append({"split": split, "classifier": c.name, "level": c.level, "classes": len(c.children),
                        "classes_with_pixels": len(nonzero), "pixels": sum(px.values()), "basis": basis,
                        "min_class": h.nodes[min(nonzero, key=nonzero.get)].name if nonzero else None,
                        "min_pixels": lo,
                        "max_class": h.nodes[max(nonzero, key=nonzero.get)].name if nonzero else None,
                        "max_pixels": hi, "imbalance": imb, "flag": bool(imb is not None and imb > IMBALANCE_FLAG),
                        "datasets": ",".join(datasets)})
    return contrib, summary


@dataclass
class Report:
    classes: list[dict]
    summary: list[dict]
    contributions: list[dict]
    classifiers: list[dict]
    hierarchy: Hierarchy | None = None


def build_report(groups: Sequence[GroupStats], h: Hierarchy | None = None,
                 min_pixels: int = DEFAULT_MIN_PIXELS) -> Report:
    classes = [r for g in groups for r in class_rows(g, h, min_pixels)]
    summary = [summary_row(g, min_pixels) for g in groups]
    contrib, cls = rollup(groups, h) if h is not None else ([], [])
    return Report(classes, summary, contrib, cls, h)
