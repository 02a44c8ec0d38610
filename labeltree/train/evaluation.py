"""Evaluation while training: per dataset, in the dataset's own label space (docs/design.md §2.6), through
the evaluate library's incremental `Evaluator`.

The network's node map is projected with the tree's `node_to_value` (the cascade stopped at the
depth the dataset annotates) into the dataset's stored values; predicted nodes the dataset has no
class for become its 'no label' value and count as errors (standard protocol). Class sets: the
paper's for dense and evaluation-only datasets (Cityscapes 27, Vistas 65, Cityscapes Extended: the
sign classes), all classes present for box datasets (the >= 1000-pixel rule needs both splits). A
hierarchical model takes the authors' decision path (GTSDB and Cityscapes Extended: Level 1 'Traffic Sign'
straight to the sign classifier, `Hierarchy.direct_skips`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from labeltree.evaluate.classes import decision_skips
from labeltree.evaluate.evaluator import Evaluator
from labeltree.train.data import Source
from labeltree.train.predict import Predictor, flat_sign_nodes, flat_sign_rule


def make_evaluator(pred: Predictor, dataset: str) -> Evaluator:
    m = pred.h.mapping(dataset)
    # the paper's class sets and mean; predictions of nodes the dataset lacks count as errors (drop none), as
    # the training logs and the demo's tables always have
    return Evaluator(m.taxonomy, hierarchy=pred.h, classes="all" if m.is_boxes else "paper", protocol="paper",
                     drop="none", pred_space="dataset", levels=not m.is_boxes)


#: called with (dataset, image, stored label, predicted nodes) for every image evaluated
OnImage = Callable[[str, np.ndarray, np.ndarray, np.ndarray], None]


def evaluate_sources(pred: Predictor, sources: list[Source], sliding: bool = False, *,
                     on_image: OnImage | None = None, progress: bool = False) -> dict[str, dict[str, Any]]:
    """{dataset: metrics (mIoU, mPA, pixel_accuracy, classes, levels)} over whole images at training scale.

    `on_image` sees each image with its prediction (the demo keeps a few for its figure).
    """
    rule = flat_sign_rule(pred)
    was_training = pred.model.training
    pred.model.eval()
    out = {}
    try:
        for src in sources:
            ev = make_evaluator(pred, src.name)
            skip = decision_skips(ev.rules, pred.h, src.name) if pred.flat is None else {}
            # the flat model on the evaluation-only sign dataset: the paper's second-choice rule (as the demo)
            use_rule = rule is not None and pred.h.mapping(src.name).evaluation_only
            for i in tqdm(range(len(src)), desc=f"evaluate {src.name}", unit="img", disable=not progress,
                          leave=False):
                img, lab = src.load(i)
                x = torch.from_numpy(np.array(img)).permute(2, 0, 1)[None]
                scores = pred.scores(x, sliding)
                nodes = (flat_sign_nodes(pred, scores, rule)[0] if use_rule
                         else pred.nodes(scores, skip=skip)[0].cpu().numpy())
                ev.add(lab, pred.dataset_values(nodes, src.name), gt_path=src.items[i].source)
                if on_image is not None:
                    on_image(src.name, img, lab, nodes)
            res = ev.result()
            res.pop("confusion", None)  # keep metrics.jsonl readable; the matrix is in `labeltree evaluate`
            if use_rule:
                res["protocol"] = "paper second-choice sign rule (flat model)"
            out[src.name] = res
    finally:
        pred.model.train(was_training)
    return out
