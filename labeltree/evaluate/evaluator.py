"""Per-dataset evaluation: confusion matrices over a dataset's label space, and the numbers from them.

Library API (the trainer and `labeltree evaluate` both use it)::

    ev = Evaluator("cityscapes", hierarchy=h, protocol="official", pred_space="tree", levels=True)
    ev.add(gt_values, pred)            # one image: gt in stored values, pred in dataset values or tree nodes
    ev.add_scores(gt_values, scores)   # flat model: score map (C, H, W), C = tree nodes (pred_space="tree")
    ev.merge(other_evaluator_or_matrix)
    res = ev.result()                  # docs/design.md §5: protocol, rules, mIoU, mPA, pixel_accuracy, classes, ...

    evaluate_arrays(dataset, gt_values, pred_values=None, pred_nodes=None, hierarchy=None,
                    protocol="official", classes=None, mean_over=None, drop=None, levels=False) -> dict

`protocol` is a protocol name (labeltree.evaluate.protocols: `official` = the dataset's official
tool, `paper` = the authors' code) or a `Rules` object resolved once by `resolve_rules`; with a
name, `classes`, `mean_over`, `drop`, `sign_rule` (and the legacy `paper_protocol`) override single rules.

`gt_values` / predictions are numpy arrays (or torch tensors, moved to the CPU) of one image or a
batch (any leading shape). Inputs are accumulated incrementally into ONE int64 matrix over the
dataset's whole label space (labeltree.evaluate.space), counted by labeltree.evaluate.counting;
the evaluated classes (labeltree.evaluate.classes), "other" predictions, dropped predictions,
categories and tree levels are all block sums of that matrix at `result()` time.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from labeltree.core.taxonomy import Taxonomy, load_taxonomy, resolve_taxonomy_path
from labeltree.datasets.base import LabeltreeWarning, no_class_value
from labeltree.errors import LabeltreeError
from labeltree.evaluate.classes import resolve_classes
from labeltree.evaluate.counting import PairCounter
from labeltree.evaluate.metrics import fold, group_iou, per_class, summarize
from labeltree.evaluate.protocols import Rules, eval_size_name, rules_for
from labeltree.evaluate.signs import sign_rule_nodes
from labeltree.evaluate.space import OTHER_NAME, LabelSpace

if TYPE_CHECKING:  # the tree is passed in, never built here
    from labeltree.core.hierarchy import Hierarchy


@dataclass
class Evaluator:
    """Accumulates one confusion matrix over a dataset's label space, image by image.

    dataset: taxonomy name or path (or a Taxonomy); hierarchy: a loaded tree (needed for
    pred_space="tree", classes="paper", levels, paper_protocol's dropped classes); protocol: a
    protocol name or a resolved `Rules`; classes: "official" | "paper" | "all" | ids; mean_over:
    "gt" (default, docs/design.md) or "defined" (cityscapesScripts' average over classes with a defined IoU).
    """

    dataset: str | Taxonomy
    hierarchy: Hierarchy | None = None
    classes: str | Sequence[int] | None = None  # None: the protocol's
    pred_space: str = "dataset"
    paper_protocol: bool | None = None  # override: True = drop foreign + sign rule, False = neither
    mean_over: str | None = None  # None: the protocol's
    levels: bool = False
    pixel_counts: tuple[Mapping[int, int], Mapping[int, int]] | None = None
    min_pixels: int | None = None  # None: the rules' (1000)
    protocol: str | Rules = "official"
    drop: str | None = None  # override of the protocol's drop rule (none | foreign | unevaluated)
    sign_rule: bool | None = None  # override of the protocol's flat sign rule
    matrix: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.taxonomy = self.dataset if isinstance(self.dataset, Taxonomy) else load_taxonomy(self.dataset)
        self.space = LabelSpace.of(self.taxonomy)
        self.matrix = np.zeros((self.space.n, self.space.n), dtype=np.int64)
        if self.pred_space not in ("dataset", "tree"):
            raise LabeltreeError(f"--pred-space must be 'dataset' or 'tree', not {self.pred_space!r}")
        self.rules = rules_for(self.protocol, self.taxonomy.name, classes=self.classes, mean_over=self.mean_over,
                               drop=self.drop, sign_rule=self.sign_rule, paper_protocol=self.paper_protocol,
                               min_pixels=self.min_pixels)
        if "classes" not in self.rules.given and self.rules.classes == "paper" and not self._paper_classes_known():
            # arrays without the tree (or a box dataset without both splits' counts): the paper's class rule
            # cannot be applied here; evaluate every class and say so (evaluate_folder applies the rule)
            self.rules = replace(self.rules, classes="all", note="; ".join(
                x for x in (self.rules.note, "the paper's class rule needs the tree and the pixel counts of both "
                            "splits: every class evaluated") if x))
        self.classes = self.rules.classes if isinstance(self.rules.classes, str) else list(self.rules.classes)
        self.mean_over = self.rules.mean_over
        self.min_pixels = self.rules.min_pixels
        self.mapping = None
        self.node_lut = None
        if self.hierarchy is not None:
            self._project_tree(self.hierarchy)
        elif self.pred_space == "tree":
            raise LabeltreeError("--pred-space tree needs the tree (--tree) to project nodes to classes")
        elif self.levels:
            raise LabeltreeError("--levels needs the tree (--tree)")
        self.evaluated = resolve_classes(self.classes, self.space, self.hierarchy,
                                         self.mapping.dataset if self.mapping else None, self.pixel_counts,
                                         self.min_pixels)
        # paper: the classes-the-dataset-lacks rule applied to the evaluated split itself (Cityscapes Extended:
        # a sign class needs >= min_pixels in this gt too), checked on the matrix at result() time
        self.min_gt_pixels = (self.min_pixels if self.rules.classes == "paper" and self.mapping is not None
                              and self.mapping.evaluation_only and self.pixel_counts is not None else None)
        self.counter = self._counter()
        self.outside_pixels = 0
        self.outside_files = 0

    def _project_tree(self, h: Hierarchy) -> None:
        """The dataset's mapping in the tree, and predicted node -> label-space index (foreign where none)."""
        self.mapping = h.mapping(self.taxonomy.name)
        mt = self.mapping.taxonomy
        if (mt.name, mt.version, len(mt.classes)) != (self.taxonomy.name, self.taxonomy.version,
                                                       len(self.taxonomy.classes)):
            raise LabeltreeError(f"tree '{h.name}' maps {mt.name} {mt.version} but the labels are "
                                 f"{self.taxonomy.name} {self.taxonomy.version}: use a tree for this version", h.path)
        t = h.tables(self.mapping.dataset)
        n2v = t.node_to_value.astype(np.int64)
        self.node_lut = np.where(n2v >= 0, self.space.lut[np.clip(n2v, 0, None)], self.space.foreign)
        self.value_to_node = t.value_to_node

    def _counter(self) -> PairCounter:
        ref = (self.taxonomy.name if isinstance(self.dataset, Taxonomy)
               else str(resolve_taxonomy_path(self.dataset).resolve()))
        rule = sign_rule_nodes(self.hierarchy) if (self.rules.sign_rule and self.hierarchy is not None) else None
        return PairCounter(self.taxonomy.name, ref, self.space.lut, self.node_lut, self.pred_space, self.space.n,
                           len(self.hierarchy.nodes) if self.hierarchy is not None else 0,
                           (rule[0], tuple(rule[1])) if rule else None, self._outside_index(), self.rules.eval_size)

    def _outside_index(self) -> int | None:
        """Where predicted values that are no class go under `outside: ignore`: the dataset's ignore label."""
        if self.rules.outside != "ignore" or not self.taxonomy.ignore_ids:
            return None
        v = self.taxonomy.stored_value(self.taxonomy.ignore_ids[0])
        return int(self.space.lut[v]) if 0 <= v < len(self.space.lut) and self.space.lut[v] >= 0 else None

    def _paper_classes_known(self) -> bool:
        if self.hierarchy is None:
            return False
        return self.pixel_counts is not None or not self.hierarchy.mapping(self.taxonomy.name).is_boxes

    # -- counting ---------------------------------------------------------------------------------
    def confusion(self, gt: Any, pred: Any, gt_path: Any = None, pred_path: Any = None) -> np.ndarray:
        """The n x n matrix of one image (or batch), without touching the accumulated one."""
        return self.counter.confusion(gt, pred, gt_path, pred_path)

    def add(self, gt: Any, pred: Any, gt_path: Any = None, pred_path: Any = None) -> np.ndarray:
        """Count one image (or batch); returns its matrix."""
        cm, outside = self.counter.count(gt, pred, gt_path, pred_path)
        self.matrix += cm
        self.note_outside(outside)
        return cm

    def note_outside(self, pixels: int, files: int = 1) -> None:
        """Record predicted pixels that were no class and were counted as the ignore label (`outside: ignore`)."""
        if pixels:
            self.outside_pixels += pixels
            self.outside_files += files

    def decide(self, scores: Any) -> np.ndarray:
        """Flat model: node decisions from score maps (..., C = tree nodes, H, W); see PairCounter.decide."""
        if self.hierarchy is None:
            raise LabeltreeError("score maps are indexed by tree node: use --pred-space tree with a tree")
        return self.counter.decide(scores)

    def add_scores(self, gt: Any, scores: Any, gt_path: Any = None, pred_path: Any = None) -> np.ndarray:
        return self.add(gt, self.decide(scores), gt_path, pred_path)

    def merge(self, other: Evaluator | np.ndarray) -> None:
        self.matrix += other.matrix if isinstance(other, Evaluator) else np.asarray(other, dtype=np.int64)

    # -- numbers ----------------------------------------------------------------------------------
    def _col_drop(self) -> np.ndarray:
        """Per label-space index: True where predictions are dropped (neither error nor union).

        foreign (paper): tree nodes the dataset has no class for and, in dataset ids, the dataset's
        no-class value (what `labeltree predict` writes for such nodes); unevaluated (Vistas' tool):
        every label that is not evaluated.
        """
        drop = np.zeros(self.space.n, dtype=bool)
        if self.rules.drop == "foreign":
            drop[self.space.foreign] = True
            if self.pred_space == "dataset":
                v = self._no_class_value()
                if v is not None and 0 <= v < len(self.space.lut) and self.space.lut[v] >= 0:
                    drop[self.space.lut[v]] = True
        elif self.rules.drop == "unevaluated":
            drop[:] = True
            drop[: self.space.K] = ~self.evaluated
        return drop

    def _no_class_value(self) -> int | None:
        """The value `labeltree predict` writes for a node the dataset lacks (without a tree: 'unlabeled')."""
        if self.mapping is None:
            return self.taxonomy.encoding.unlabeled
        try:
            return no_class_value(self.taxonomy, self.mapping.to_node)
        except LabeltreeError:  # the taxonomy has no such value: nothing to drop in dataset ids
            return None

    def evaluated_now(self) -> np.ndarray:
        """The evaluated classes, after the split's own >= min_pixels rule where it applies."""
        if self.min_gt_pixels is None:
            return self.evaluated
        return self.evaluated & (self.matrix[: self.space.K].sum(axis=1) >= self.min_gt_pixels)

    def eval_matrix(self) -> tuple[np.ndarray, list[str]]:
        """Evaluated classes x (evaluated classes + "other"), and the row names."""
        ev = np.flatnonzero(self.evaluated_now())
        k = len(ev)
        rows = np.full(self.space.n, -1, dtype=np.int64)
        rows[ev] = np.arange(k)
        cols = np.full(self.space.n, k, dtype=np.int64)
        cols[ev] = np.arange(k)
        cols[self._col_drop()] = -1
        return fold(self.matrix, rows, cols, k, k + 1), [self.space.names[i] for i in ev]

    def level_matrix(self, level: int) -> tuple[np.ndarray, list[str]]:
        """The same at one tree level: gt and predicted classes replaced by their ancestor node there."""
        h = self.hierarchy
        assert h is not None
        node_of = np.full(self.space.n, -1, dtype=np.int64)
        node_of[: self.space.K] = self.value_to_node[self.space.values]
        anc = np.where(node_of >= 0, h.node_at_level(np.clip(node_of, 0, None), level), -1)
        ev = np.flatnonzero(self.evaluated_now() & (anc[: self.space.K] >= 0))
        level_nodes = sorted({int(anc[i]) for i in ev})
        pos = {nd: k for k, nd in enumerate(level_nodes)}
        k = len(level_nodes)
        rows = np.full(self.space.n, -1, dtype=np.int64)
        rows[ev] = [pos[int(anc[i])] for i in ev]
        cols = np.array([pos.get(int(a), k) if a >= 0 else k for a in anc], dtype=np.int64)
        cols[self._col_drop()] = -1
        return fold(self.matrix, rows, cols, k, k + 1), [h.nodes[nd].name for nd in level_nodes]

    def dataset_levels(self) -> list[int]:
        """Tree levels this dataset annotates (1 .. deepest node it maps to)."""
        if self.mapping is None:
            return []
        deepest = max((self.hierarchy.nodes[n].level for n in self.mapping.to_node.values() if n is not None),
                      default=0)
        return list(range(1, deepest + 1))

    def category_iou(self) -> dict[str, float]:
        """Cityscapes category IoU: classes grouped by the taxonomy's `category` field."""
        cm, _ = self.eval_matrix()
        by_id = {c.id: c for c in self.taxonomy.classes}
        cats = [by_id[int(self.space.ids[i])].category for i in np.flatnonzero(self.evaluated_now())]
        out = {}
        for cat in dict.fromkeys(c for c in cats if c):
            out[cat] = group_iou(cm, np.array([c == cat for c in cats]))
        return out

    def result(self) -> dict[str, Any]:
        """docs/design.md §5: mIoU, mPA, pixel_accuracy, classes {name: {IoU, PA, pixels}}, + extras."""
        cm, names = self.eval_matrix()
        out: dict[str, Any] = {"dataset": self.taxonomy.name,
                               "classes_evaluated": self.classes if isinstance(self.classes, str)
                               else [int(c) for c in self.classes],
                               "protocol": self.rules.protocol, "rules": self.rules.as_dict(),
                               "eval_size": eval_size_name(self.rules.eval_size), "mean_over": self.mean_over}
        out.update(_scores(cm, names, self.mean_over, self.rules.absent_zero))
        cats = self.category_iou()
        if any(not math.isnan(v) for v in cats.values()):
            vals = [v for v in cats.values() if not math.isnan(v)]
            out["categories"] = {k: _num(v) for k, v in cats.items()}
            out["mIoU_categories"] = _num(float(np.mean(vals)) if vals else float("nan"))
        out["confusion"] = {"labels": [*names, OTHER_NAME], "matrix": cm.tolist()}
        if self.outside_pixels:
            ignore = self.space.names[self.counter.outside_index]
            out["outside"] = {"pixels": self.outside_pixels, "files": self.outside_files, "counted_as": ignore}
            warnings.warn(f"{self.outside_pixels} predicted pixels in {self.outside_files} file(s) hold values that "
                          f"are no {self.taxonomy.name} class; counted as '{ignore}', as the official tool counts "
                          "them", LabeltreeWarning, stacklevel=2)
        if self.levels and self.hierarchy is not None:
            out["levels"] = {}
            for lv in self.dataset_levels():
                lcm, lnames = self.level_matrix(lv)
                out["levels"][str(lv)] = _scores(lcm, lnames, self.mean_over)
        return out


def _scores(cm: np.ndarray, names: list[str], mean_over: str, absent_zero: bool = False) -> dict[str, Any]:
    pc = per_class(cm)
    if absent_zero:  # BDD100K's tool: a class absent from gt and prediction has IoU 0.0 (not in its mean)
        pc["IoU"] = np.where(pc["TP"] + pc["FP"] + pc["FN"] == 0, 0.0, pc["IoU"])
    s = summarize(cm, mean_over=mean_over)
    present = pc["pixels"] > 0
    return {
        "mIoU": _num(s["mIoU"]), "mPA": _num(s["mPA"]), "pixel_accuracy": _num(s["pixel_accuracy"]),
        "fwIoU": _num(s["fwIoU"]),
        "n_classes": len(names), "n_present": int(present.sum()),
        "pixels": int(cm.sum()), "other_pixels": int(cm[:, len(names):].sum()),
        "classes": {name: {"IoU": _num(pc["IoU"][i]), "PA": _num(pc["PA"][i]), "pixels": int(pc["pixels"][i]),
                           "TP": int(pc["TP"][i]), "FP": int(pc["FP"][i]), "FN": int(pc["FN"][i])}
                    for i, name in enumerate(names)},
    }


def _num(x: float) -> float | None:
    """JSON-safe: NaN (undefined) becomes null."""
    return None if x is None or math.isnan(x) else float(x)


def evaluate_arrays(dataset: str | Taxonomy, gt_values: Any, pred_values: Any = None, pred_nodes: Any = None,
                    hierarchy: Hierarchy | None = None, classes: str | Sequence[int] | None = None,
                    paper_protocol: bool | None = None, levels: bool = False, mean_over: str | None = None,
                    protocol: str = "official", drop: str | None = None) -> dict[str, Any]:
    """One-shot evaluation of arrays (or lists of arrays, one per image).

    Give predictions either in the dataset's stored values (`pred_values`) or as tree node indices
    (`pred_nodes`, needs `hierarchy`).
    """
    if (pred_values is None) == (pred_nodes is None):
        raise LabeltreeError("give exactly one of pred_values (dataset ids) or pred_nodes (tree nodes)")
    ev = Evaluator(dataset, hierarchy=hierarchy, classes=classes,
                   pred_space="dataset" if pred_values is not None else "tree",
                   paper_protocol=paper_protocol, mean_over=mean_over, levels=levels, protocol=protocol, drop=drop)
    preds = pred_values if pred_values is not None else pred_nodes
    if isinstance(gt_values, (list, tuple)):
        if not isinstance(preds, (list, tuple)) or len(preds) != len(gt_values):
            raise LabeltreeError("gt_values and predictions must be lists of the same length")
        for g, p in zip(gt_values, preds, strict=True):
            ev.add(g, p)
    else:
        ev.add(gt_values, preds)
    return ev.result()


