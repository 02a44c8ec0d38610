"""Evaluation while training: per dataset, in the dataset's own label space (docs/design.md §2.6), by the rules
of the config's `eval` section, resolved to the same `Rules` object `labeltree evaluate` uses.

Why one set of rules: the numbers in metrics.jsonl (and the choice of best.pt) are those that
`labeltree evaluate DATASET ROOT --checkpoint best.pt --protocol P --eval-size S` prints for the same split,
image for image. Each image is read at its own size; under a named evaluation size the photo is resized to it and
the network runs at it (the label nearest-resized by the rules), under `native` the network runs at the dataset's
training scale and its map is brought back to the label's size, as `evaluate --checkpoint` does. The class sets,
the dropped predictions, the flat model's sign rule and the hierarchical model's decision path are the rules';
the paper's >= 1000-pixel rule counts the config's box dataset (GTSDB), once per run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from labeltree.core.hierarchy import Hierarchy
from labeltree.datasets.boxmask import DEFAULT_MASK_MODE
from labeltree.datasets.registry import open_dataset
from labeltree.datasets.resize import nearest_resize, resize_photo
from labeltree.evaluate.classes import PixelCounts, decision_skips, paper_pixel_counts
from labeltree.evaluate.counting import resize_nearest
from labeltree.evaluate.evaluator import Evaluator
from labeltree.evaluate.protocols import Rules, resolve_rules
from labeltree.train.config import Config, EvalDatasetCfg
from labeltree.train.data import Source
from labeltree.train.predict import Predictor, dataset_resize, dataset_resize_mode, flat_sign_nodes, flat_sign_rule


@dataclass
class EvalSet:
    """One evaluated split: its photos and labels at their own size, the rules, the network's scale."""

    source: Source
    rules: Rules
    counts: PixelCounts | None  # the paper's class rule: (train, test) pixels per class, or None
    scale: tuple[tuple[int, int] | None, str]  # (resize, resize_mode) the network runs at under `native`

    @property
    def name(self) -> str:
        return self.source.name


def eval_sets(cfg: Config, h: Hierarchy) -> list[EvalSet]:
    """Each training dataset's val split, plus the evaluation-only datasets (Cityscapes Extended), with their rules.

    A missing split is refused here, before training starts (it was, once, after the last step)."""
    box_mode = DEFAULT_MASK_MODE  # evaluation scores the shape masks, whatever the training masks
    splits: list[tuple[EvalDatasetCfg, Path]] = []
    for d in cfg.datasets:
        if d.val_split:
            splits.append((EvalDatasetCfg(name=d.name, root=d.root, split=d.val_split), cfg.resolve_root(d.root)))
    for e in cfg.eval_datasets:
        if e.images:
            e = e.model_copy(update={"images": str(cfg.resolve_root(e.images))})
        splits.append((e.model_copy(update={"resize": None, "resize_mode": "fixed"}), cfg.resolve_root(e.root)))
    box_root = next((cfg.resolve_root(d.root) for d in cfg.datasets if h.mapping(d.name).is_boxes), None)
    out = []
    for e, root in splits:
        src = Source(e, root, e.split, h, box_mode)
        rules = resolve_rules(cfg.eval.protocol, src.taxonomy.name, eval_size=cfg.eval.size_rule,
                              min_pixels=cfg.eval.min_pixels)
        out.append(EvalSet(src, rules, _pixel_counts(src, root, rules, h, box_root, box_mode),
                           (dataset_resize(cfg, e.name), dataset_resize_mode(cfg, e.name))))
    return out


def _pixel_counts(src: Source, root: Path, rules: Rules, h: Hierarchy, box_root: Path | None,
                  mask_mode: str) -> PixelCounts | None:
    """What `labeltree evaluate` counts for the paper's class rule (its --gtsdb-root: the config's box dataset)."""
    if rules.classes != "paper" or (h.mapping(src.name).evaluation_only and box_root is None):
        return None  # without the box dataset the evaluator scores every sign class and says so
    reader = open_dataset(src.taxonomy, root, mask_mode=mask_mode) if src.is_boxes else open_dataset(src.taxonomy,
                                                                                                      root)
    return paper_pixel_counts(reader, rules, h, box_root, mask_mode)


def make_evaluator(pred: Predictor, s: EvalSet) -> Evaluator:
    """The evaluator `labeltree evaluate --checkpoint` builds for this model: tree nodes from a hierarchical model
    (projected with its tree, so the rules can tell a node the dataset lacks), dataset values from a flat one."""
    m = pred.h.mapping(s.name)
    return Evaluator(m.taxonomy, hierarchy=pred.h, pred_space="dataset" if pred.flat is not None else "tree",
                     levels=not m.is_boxes, pixel_counts=s.counts, protocol=s.rules)


#: called with (dataset, image, stored label, predicted nodes) for every image evaluated, at the scored size
OnImage = Callable[[str, np.ndarray, np.ndarray, np.ndarray], None]


def _predict(pred: Predictor, s: EvalSet, img: np.ndarray, sliding: bool, rule: Any) -> np.ndarray:
    """The node map of one photo at the photo's size, as `TorchModel.predict_array` makes it under these rules."""
    resize, mode = s.scale if s.rules.eval_size is None else (None, "fixed")
    if pred.flat is None:
        return pred.predict_array(img, resize, sliding, mode, skip=decision_skips(s.rules, pred.h, s.name))[0]
    if rule is None or not s.rules.sign_rule:
        return pred.predict_array(img, resize, sliding, mode)[0]
    scores = pred.scores(pred.input(img, resize, mode), sliding)
    return nearest_resize(flat_sign_nodes(pred, scores, rule)[0], img.shape[:2])


def evaluate_sources(pred: Predictor, sets: Sequence[EvalSet], sliding: bool = False, *,
                     on_image: OnImage | None = None, progress: bool = False) -> dict[str, dict[str, Any]]:
    """{dataset: the result `labeltree evaluate` gives (mIoU, mPA, pixel_accuracy, classes, levels, rules)}.

    `on_image` sees each image with its prediction (the demo keeps a few for its figure).
    """
    rule = flat_sign_rule(pred)
    was_training = pred.model.training
    pred.model.eval()
    out = {}
    try:
        for s in sets:
            ev = make_evaluator(pred, s)
            size = s.rules.eval_size
            for i in tqdm(range(len(s.source)), desc=f"evaluate {s.name}", unit="img", disable=not progress,
                          leave=False):
                img, lab = s.source.load(i)
                if size is not None:
                    img = resize_photo(np.asarray(img), size)
                nodes = _predict(pred, s, np.asarray(img), sliding, rule)
                ev.add(lab, nodes if pred.flat is None else pred.dataset_values(nodes, s.name),
                       gt_path=s.source.items[i].source)
                if on_image is not None:
                    on_image(s.name, img, resize_nearest(lab, size) if size is not None else lab, nodes)
            res = ev.result()
            res.pop("confusion", None)  # keep metrics.jsonl readable; the matrix is in `labeltree evaluate`
            res["split"], res["images"] = s.source.split, len(s.source)
            out[s.name] = res
    finally:
        pred.model.train(was_training)
    return out
