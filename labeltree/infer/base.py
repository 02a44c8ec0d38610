"""The one interface to a trained model, whatever its file (`labeltree.infer.load.open_model(path)`).

A `.pt` checkpoint (`TorchModel`, labeltree.infer.pytorch: torch, imported only when one is opened) and a
`.onnx` export (`OnnxModel`, labeltree.infer.onnx: ONNX Runtime and numpy, no torch) answer the same
questions: a photo -> its `Prediction` at the photo's size (tree nodes, a dataset's stored values),
and turn it into files through the same tables (`labeltree.train.predict.model_tables`, which an export
carries in its metadata): tree colours, dataset ids, the cascade stopped at each level.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from labeltree.core.hierarchy import Hierarchy
from labeltree.datasets.base import Sample
from labeltree.datasets.decode import read_rgb
from labeltree.datasets.resize import resize_photo
from labeltree.errors import LabeltreeError
from labeltree.evaluate.predictor import SamplePredictor


@dataclass
class Prediction:
    """One image's maps at the image's size; None = not in the model (a dataset:NAME export has no nodes)."""

    nodes: np.ndarray | None  # tree node per pixel (-1: the flat model's 'unlabeled' classes)
    values: dict[str, np.ndarray]  # dataset key -> stored values, where the model gives them directly
    levels: list[np.ndarray] | None = None  # the cascade stopped at level 1..depth, where the model gives them
    scores: list[np.ndarray] | None = None  # per classifier [C, h, w] probabilities, where the model gives them
    confidence: np.ndarray | None = None  # float32 path confidence of `nodes` (labeltree.core.confidence), if asked


class Model(ABC):
    """A trained model and the tables that turn its decisions into files (`tables`: names, colours, levels,
    classifiers, flat classes, per-dataset node -> value tables)."""

    path: Path
    tree: str  # the tree's name
    tree_sha256: str  # labeltree.core.hierarchy.tree_hash of the tree it was trained on
    config: dict[str, Any] | None = None  # the training config where the file keeps it (a `.pt`)

    def __init__(self, path: Path, tree: str, tree_sha256: str, tables: dict[str, Any]):
        self.path, self.tree, self.tree_sha256 = path, tree, tree_sha256
        self.node_names: list[str] = tables["nodes"]
        colors = np.asarray(tables["colors"], dtype=np.uint8).reshape(-1, 3)
        self.colors = np.vstack([colors, np.zeros((1, 3), np.uint8)])  # -1 -> black
        self.level_tables = [np.asarray(x, dtype=np.int64) for x in tables["levels"]]
        self.classifiers: list[dict[str, Any]] = tables["classifiers"]
        flat = tables.get("flat_nodes")
        self.flat_nodes = np.asarray(flat, dtype=np.int64) if flat is not None else None
        self.datasets: dict[str, dict[str, Any]] = tables["datasets"]
        self.min_confidence = 0.0  # back off below this path confidence (set_confidence)
        self.confidence = False  # give Prediction.confidence

    def set_confidence(self, min_confidence: float | None = None, confidence: bool = False) -> Model:
        """Ask for each pixel's path confidence and/or back-off to the deepest node at least that sure (issue 28).

        The flat model has no ancestors to fall back on: a threshold above 0 is refused for it."""
        from labeltree.core.confidence import check_min_confidence

        min_confidence = check_min_confidence(0.0 if min_confidence is None else min_confidence)
        if min_confidence > 0 and self.is_flat:
            raise LabeltreeError("--min-confidence: a flat model has no ancestors to back off to (its classes are "
                                 "leaves only); use a hierarchical model, or --confidence alone", self.path)
        self.min_confidence, self.confidence = min_confidence, confidence
        return self

    # -- what the model can answer ------------------------------------------------------------
    @property
    def is_flat(self) -> bool:
        return self.flat_nodes is not None

    @property
    def has_nodes(self) -> bool:
        """Does it give tree nodes (a dataset:NAME export gives that dataset's ids only)?"""
        return True

    @property
    def hierarchy(self) -> Hierarchy | None:
        """The tree itself, where the model carries it (a `.pt`); an `.onnx` carries its tables only."""
        return None

    def dataset_key(self, dataset: str) -> str:
        """The tree's key for a dataset given by key or taxonomy name (as Hierarchy.mapping accepts)."""
        if dataset in self.datasets:
            return dataset
        for k, d in self.datasets.items():
            if d["name"] == dataset:
                return k
        raise LabeltreeError(f"the model's tree '{self.tree}' has no mapping for dataset '{dataset}' (it maps "
                             f"{', '.join(self.datasets)})", self.path)

    def check_dataset(self, dataset: str | None) -> str | None:
        """The key of `dataset` (None for None); one line where the model cannot give its ids."""
        return None if dataset is None else self.dataset_key(dataset)

    def check_sliding(self, sliding: bool) -> None:  # noqa: B027 - a check that most models pass
        """One line where the model cannot run sliding windows."""

    # -- running -------------------------------------------------------------------------------
    @abstractmethod
    def predict_array(self, img: np.ndarray, dataset: str | None = None, sliding: bool = False,
                      rules: Any = None, scale: bool = True) -> Prediction:
        """One HxWx3 uint8 photo -> its Prediction at the photo's size, the network at `dataset`'s training scale
        (`scale` False: at the photo's own size, where the model's input size is free).

        `rules`: the evaluator's (labeltree.evaluate.protocols.Rules) where it asks for a decision rule the model
        can follow: the flat model's second-choice sign rule, the paper's decision path (`path: direct`)."""

    def pred_space(self, requested: str, hierarchy_ref: str | None) -> tuple[str, Hierarchy | None]:  # noqa: ARG002
        """Which maps `evaluate --checkpoint` gets, 'tree' (node ids) or 'dataset' (the dataset's values), and the
        tree the evaluator projects node ids with (the model's own)."""
        return ("tree" if requested == "tree" and not self.is_flat else "dataset"), self.hierarchy

    def predictor(self, dataset: str, pred_space: str = "dataset", sliding: bool = False,
                  hierarchy_ref: str | None = None) -> ModelPredictor:
        """This model on `dataset`'s samples, for the evaluator (`evaluate --checkpoint`)."""
        self.check_sliding(sliding)
        key = self.check_dataset(dataset)
        assert key is not None
        space, tree = self.pred_space(pred_space, hierarchy_ref)
        return ModelPredictor(self, key, space, tree, sliding)

    # -- maps derived from a Prediction ---------------------------------------------------------
    def dataset_values(self, p: Prediction, dataset: str) -> np.ndarray:
        """The dataset's stored values; a node it has no class for -> its 'no label' value (the fill)."""
        key = self.dataset_key(dataset)
        if key in p.values:
            return p.values[key]
        if p.nodes is None:
            raise LabeltreeError(f"this model gives no {dataset} ids", self.path)
        d = self.datasets[key]
        table = np.asarray(d["values"] + [d["fill"]], dtype=np.uint16 if d["dtype"] == "uint16" else np.uint8)
        return table[p.nodes]  # index -1 (the flat model's 'unlabeled') -> the fill value

    def level_maps(self, p: Prediction) -> list[np.ndarray]:
        """The cascade stopped at each level 1..depth (the ancestor at that level of each pixel's node)."""
        if p.levels is not None:
            return p.levels
        if p.nodes is None:
            return []
        return [t[p.nodes] for t in self.level_tables]

    def colour(self, nodes: np.ndarray) -> np.ndarray:
        return self.colors[nodes]  # -1 -> black (the last row)


@dataclass
class ModelPredictor(SamplePredictor):
    """A model run on one dataset's samples (labeltree.evaluate.predictor.SamplePredictor)."""

    model: Model
    dataset: str  # the tree's key
    pred_space: str
    hierarchy: Hierarchy | None
    sliding: bool = False

    def __call__(self, sample: Sample, rules: Any = None) -> np.ndarray:
        """The model's map of the sample's photo; at the rules' evaluation size where they name one (the photo
        resized to it, the network run and answering at it, as the authors evaluate)."""
        img = photo(sample)
        size = getattr(rules, "eval_size", None)
        if size is not None:
            img = resize_photo(img, size)
        p = self.model.predict_array(img, self.dataset, self.sliding, rules, scale=size is None)
        if self.pred_space == "tree":
            assert p.nodes is not None
            return p.nodes
        return self.model.dataset_values(p, self.dataset)


def photo(sample: Sample) -> np.ndarray:
    """A sample's photo (HxWx3 uint8); one line where the sample has a label but no photo."""
    if sample.image is None:
        raise LabeltreeError("image not found (the sample has a label but no photo)", sample.label)
    return read_rgb(sample.image)
