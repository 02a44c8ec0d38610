"""A `.pt` checkpoint from `labeltree train` behind the `Model` interface (torch).

The network runs as the trainer runs it (labeltree.train.predict.Predictor: softmax, sliding windows,
the cascade); its maps become files through the tables an export would carry (`model_tables`), so a
`.pt` and its `.onnx` write the same bytes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from labeltree.core.hierarchy import Hierarchy, tree_hash
from labeltree.datasets.resize import nearest_resize
from labeltree.evaluate.classes import decision_skips
from labeltree.infer.base import Model, Prediction
from labeltree.train.predict import (
    dataset_resize,
    dataset_resize_mode,
    flat_sign_nodes,
    flat_sign_rule,
    load_predictor,
    model_tables,
)


class TorchModel(Model):
    """A trained checkpoint on `device` (default: cuda where available); its tree checked on load."""

    def __init__(self, path: str | Path, device: str | None = None, weights: str = "ema"):
        self.net = load_predictor(path, device, weights)
        h = self.net.h
        super().__init__(Path(path), h.name, tree_hash(h), model_tables(h, self.net.flat))
        self._sign_rule = flat_sign_rule(self.net)
        self.config = self.net.cfg.model_dump()

    @property
    def hierarchy(self) -> Hierarchy:
        return self.net.h

    def dataset_key(self, dataset: str) -> str:
        return self.net.h.mapping(dataset).dataset  # unknown: the tree's own one line

    def pred_space(self, requested: str, hierarchy_ref: str | None) -> tuple[str, Hierarchy]:  # noqa: ARG002
        """A hierarchical model gives tree nodes whatever was asked: the evaluator projects them with the
        model's own tree (and the paper protocol can then tell a node the dataset lacks from its classes); a
        flat model gives the dataset's ids (its extra 'unlabeled' classes are no tree node)."""
        return ("dataset" if self.is_flat else "tree"), self.net.h

    def scale(self, dataset: str | None) -> tuple[tuple[int, int] | None, str]:
        """The dataset's training scale (resize, resize_mode) in the checkpoint's config; none without one."""
        if dataset is None:
            return None, "fixed"
        cfg = self.net.cfg
        for name in (dataset, self.net.h.mapping(dataset).dataset):
            if dataset_resize(cfg, name):
                return dataset_resize(cfg, name), dataset_resize_mode(cfg, name)
        return None, "fixed"

    def predict_array(self, img: np.ndarray, dataset: str | None = None, sliding: bool = False,
                      rules: Any = None, scale: bool = True) -> Prediction:
        resize, mode = self.scale(dataset) if scale else (None, "fixed")
        if not self.is_flat:  # the paper's decision path, where the rules ask for it (evaluate --checkpoint)
            skip = decision_skips(rules, self.net.h, self.dataset_key(dataset)) if dataset and rules else None
            if self.confidence or self.min_confidence > 0:
                return self._confident(img, resize, sliding, mode, skip)
            nodes, _ = self.net.predict_array(img, resize, sliding, mode, skip=skip)
            return Prediction(nodes, {})
        if self.confidence:
            return self._confident(img, resize, sliding, mode, None)
        if rules is None or not rules.sign_rule or self._sign_rule is None:
            nodes, _ = self.net.predict_array(img, resize, sliding, mode)
            return Prediction(nodes, {})
        scores = self.net.scores(self.net.input(img, resize, mode), sliding)
        nodes = flat_sign_nodes(self.net, scores, self._sign_rule)[0]
        return Prediction(nearest_resize(nodes, img.shape[:2]), {})

    def _confident(self, img: np.ndarray, resize: tuple[int, int] | None, sliding: bool, mode: str,
                   skip: dict[int, int] | None) -> Prediction:
        """The cascade with path confidence and back-off (labeltree.core.confidence), maps at the photo's size."""
        scores = self.net.scores(self.net.input(img, resize, mode), sliding)
        pc = self.net.confident_nodes(scores, self.min_confidence, skip)
        size = img.shape[:2]
        return Prediction(nearest_resize(pc.nodes[0].cpu().numpy(), size), {},
                          confidence=nearest_resize(pc.confidence[0].cpu().numpy(), size))
