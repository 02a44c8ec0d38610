"""Per-classifier class weights for the loss (`loss.class_weights`), from `labeltree stats` output.

Why: the tree's classifiers are very unbalanced (road vs. Traffic Sign (Back)); weighting each
classifier's cross-entropy by its children's frequencies is the usual remedy. The weights come from
the tree roll-up of `labeltree stats` (a class's pixels count, for every classifier on its path, for
that classifier's child on the path), over the datasets that TRAIN the classifier (all contributing
datasets when none does), one split. Accepted files: the raw-count file (`labeltree stats --raw
FILE.json`, rolled up here with the training hierarchy) or the roll-up rows (`--tree-out FILE.json`).

Weights per classifier j over its children c with pixels p_c (N = sum, K = children with pixels):
- inverse: N / (K * p_c) (a child of mean frequency gets 1);
- medfreq: median_c(s_c) / s_c with shares s_c = p_c / N (median-frequency balancing on the
  roll-up's shares: the roll-up keeps no per-image presence, so frequency = share);
- enet: 1 / ln(1.02 + s_c) (Paszke et al. 2016).
Children without pixels get the classifier's largest weight (inverse, medfreq: rarer than any seen)
or 1 / ln(1.02) (enet, s = 0); a classifier without any pixels gets 1 everywhere.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from labeltree.core.hierarchy import Hierarchy
from labeltree.errors import LabeltreeError
from labeltree.fsutil import read_input_text

KINDS: tuple[str, ...] = ("medfreq", "enet", "inverse")


def weights_from_pixels(pixels: np.ndarray, kind: str) -> np.ndarray:
    """Weights of one classifier's children from their rolled-up pixel counts (see the module doc)."""
    if kind not in KINDS:
        raise LabeltreeError(f"loss.class_weights.kind must be one of {', '.join(KINDS)}, not '{kind}'")
    p = np.asarray(pixels, dtype=np.float64)
    use = p > 0
    if not use.any():
        return np.ones(p.shape)
    total, k = p[use].sum(), int(use.sum())
    share = p / total
    out = np.empty(p.shape)
    if kind == "enet":
        return 1.0 / np.log(1.02 + share)
    if kind == "inverse":
        out[use] = total / (k * p[use])
    else:
        out[use] = np.median(share[use]) / share[use]
    out[~use] = out[use].max()
    return out


def _rows(path: Path, h: Hierarchy) -> list[dict[str, Any]]:
    try:
        data = json.loads(read_input_text(path, "class statistics"))
    except FileNotFoundError:
        raise LabeltreeError("loss.class_weights.stats: file not found; write it with `labeltree stats DATASET "
                             "ROOT --tree TREE --raw FILE.json`", path) from None
    except (OSError, ValueError) as e:
        raise LabeltreeError(f"loss.class_weights.stats: cannot read JSON ({e})", path) from None
    from labeltree.stats.groups import RAW_FORMAT, read_raw
    from labeltree.stats.report import rollup

    if isinstance(data, dict) and data.get("format") == RAW_FORMAT:
        return rollup(read_raw(path), h)[0]
    keys = {"split", "classifier", "class", "pixels", "trains"}
    if isinstance(data, list) and all(isinstance(r, dict) and keys <= r.keys() for r in data):
        return data
    raise LabeltreeError("loss.class_weights.stats: neither a raw-count file (`labeltree stats --raw FILE.json`) "
                         "nor tree roll-up rows (`labeltree stats --tree TREE --tree-out FILE.json`)", path)


def classifier_pixels(rows: list[dict[str, Any]], h: Hierarchy, split: str = "train") -> list[np.ndarray]:
    """Rolled-up pixels per child of every classifier (children in logit order), from roll-up rows."""
    by_name = {c.name: j for j, c in enumerate(h.classifiers)}
    trained = [np.zeros(len(c.children)) for c in h.classifiers]
    everyone = [np.zeros(len(c.children)) for c in h.classifiers]
    for r in rows:
        if r["split"] != split:
            continue
        j = by_name.get(r["classifier"])
        if j is None:
            raise LabeltreeError(f"loss.class_weights.stats: classifier '{r['classifier']}' is not in tree "
                                 f"'{h.name}'; compute the stats with --tree {h.name}")
        names = [h.nodes[n].name for n in h.classifiers[j].children]
        if r["class"] not in names:
            raise LabeltreeError(f"loss.class_weights.stats: '{r['class']}' is not a child of classifier "
                                 f"'{r['classifier']}' in tree '{h.name}'; compute the stats with --tree {h.name}")
        i = names.index(r["class"])
        everyone[j][i] += float(r["pixels"])
        if r["trains"]:
            trained[j][i] += float(r["pixels"])
    return [t if t.any() else a for t, a in zip(trained, everyone, strict=True)]


def load_class_weights(path: str | Path, kind: str, h: Hierarchy, split: str = "train") -> list[np.ndarray]:
    """One float32 weight vector per classifier (children in logit order) from a stats file."""
    p = Path(path).expanduser()
    px = classifier_pixels(_rows(p, h), h, split)
    if not any(a.any() for a in px):
        raise LabeltreeError(f"loss.class_weights.stats: no pixels for split '{split}' in tree '{h.name}' "
                             "(set loss.class_weights.split to a split the file counts)", p)
    return [weights_from_pixels(a, kind).astype(np.float32) for a in px]
