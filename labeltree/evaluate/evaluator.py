"""Per-dataset evaluation: confusion matrices over a dataset's label space, and the numbers from them.

Library API (the trainer and `labeltree evaluate` both use it)::

    ev = Evaluator("cityscapes", hierarchy=h, protocol="official", pred_space="tree", levels=True)
    ev.add(gt_values, pred)            # one image: gt in stored values, pred in dataset values or tree nodes
    ev.add_scores(gt_values, scores)   # flat model: score map (C, H, W), C = tree nodes (pred_space="tree")
    ev.merge(other_evaluator_or_matrix)
    res = ev.result()                  # docs/design.md §5: protocol, rules, mIoU, mPA, pixel_accuracy, classes, ...

    evaluate_arrays(dataset, gt_values, pred_values=None, pred_nodes=None, hierarchy=None,
                    protocol="official", classes=None, mean_over=None, drop=None, levels=False) -> dict
    second_choice(scores, generic, subclasses, axis=-3) -> decisions      # the paper's flat sign rule

`protocol` (labeltree.evaluate.protocols) selects a whole rule set: `official` = the dataset's
official tool (cityscapesScripts, the Mapillary Vistas script), `paper` = the authors' code;
`classes`, `mean_over`, `drop`, `sign_rule` (and the legacy `paper_protocol`) override single rules.

`gt_values` / predictions are numpy arrays (or torch tensors, moved to the CPU) of one image or a
batch (any leading shape). Inputs are accumulated incrementally into ONE int64 matrix over the
dataset's whole label space (every class of its taxonomy + "unlabeled" + "not a class of this
dataset"), counted with one np.bincount over raw value pairs; the evaluated classes, "other"
predictions, dropped predictions, categories and tree levels are all block sums of that matrix at
`result()` time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from labeltree.core.hierarchy import Hierarchy
from labeltree.core.taxonomy import Taxonomy, load_taxonomy, resolve_taxonomy_path
from labeltree.datasets.base import Sample, known_values, read_label
from labeltree.datasets.boxmask import DEFAULT_MASK_MODE, Box
from labeltree.datasets.decode import PNG_GREY, PNG_PALETTE, decode_array, read_file_and_header
from labeltree.datasets.gtsdb import GTSDB_SPLITS
from labeltree.datasets.registry import open_dataset, reader_class
from labeltree.errors import LabeltreeError
from labeltree.evaluate.metrics import DEFAULT_MIN_PIXELS, fold, group_iou, per_class, summarize
from labeltree.evaluate.protocols import resolve_rules
from labeltree.parallel import default_workers, pmap

CLASS_SETS = ("official", "paper", "all")
UNLABELED_NAME = "unlabeled"
FOREIGN_NAME = "not a class of this dataset"
OTHER_NAME = "other"


# -- the label space -------------------------------------------------------------------------------

@dataclass
class LabelSpace:
    """Contiguous indices for a dataset's stored label values.

    Index k < K is the k-th class of the taxonomy (ids >= 0, file order); K is the dataset's
    'unlabeled' value (GTSDB 0) and K + 1 is a prediction of a tree node the dataset has no class for.
    """

    taxonomy: Taxonomy
    ids: np.ndarray  # class id per index (K)
    values: np.ndarray  # stored value per index (K)
    names: list[str]
    lut: np.ndarray  # int64 [lut_size]: stored value -> index, -1 = no class of this dataset

    @classmethod
    def of(cls, taxonomy: Taxonomy) -> LabelSpace:
        classes = [c for c in taxonomy.classes if c.id >= 0]
        ids = np.array([c.id for c in classes], dtype=np.int64)
        values = np.array([taxonomy.stored_value(c.id) for c in classes], dtype=np.int64)
        lut = np.full(taxonomy.lut_size, -1, dtype=np.int64)
        lut[values] = np.arange(len(classes))
        if taxonomy.encoding.unlabeled is not None:
            lut[taxonomy.encoding.unlabeled] = len(classes)
        return cls(taxonomy, ids, values, [c.display for c in classes], lut)

    @property
    def K(self) -> int:  # noqa: N802 - the number of classes, as in the docs
        return len(self.ids)

    @property
    def unlabeled(self) -> int:
        return self.K

    @property
    def foreign(self) -> int:
        return self.K + 1

    @property
    def n(self) -> int:
        return self.K + 2

    @property
    def labels(self) -> list[str]:
        return [*self.names, UNLABELED_NAME, FOREIGN_NAME]

    def index_of(self, cid: int) -> int:
        hit = np.flatnonzero(self.ids == cid)
        if not len(hit):
            raise LabeltreeError(f"class id {cid} is not a class of dataset '{self.taxonomy.name}' "
                                 f"(ids {int(self.ids.min())}..{int(self.ids.max())})")
        return int(hit[0])


# -- which classes are evaluated ---------------------------------------------------------------------

def classes_with_pixels_in_both(counts_a: Mapping[int, int], counts_b: Mapping[int, int],
                                min_pixels: int = DEFAULT_MIN_PIXELS) -> list[int]:
    """The GTSDB rule of docs/design.md §2.6: class ids with >= `min_pixels` gt pixels in BOTH splits.

    The paper evaluates GTSDB on 28 of 43 classes: those with at least 1000 pixels in the train and
    the test split at the training scale. Pass per-class pixel counts of the two splits (e.g. from
    `gtsdb_class_pixels(reader, split, scale)`); a class missing from a mapping has 0 pixels.
    """
    return sorted(int(c) for c in set(counts_a) | set(counts_b)
                  if counts_a.get(c, 0) >= min_pixels and counts_b.get(c, 0) >= min_pixels)


def resolve_classes(spec: str | Sequence[int], space: LabelSpace, hierarchy: Hierarchy | None = None,
                    dataset: str | None = None, pixel_counts: tuple[Mapping[int, int], Mapping[int, int]] | None = None,
                    min_pixels: int = DEFAULT_MIN_PIXELS) -> np.ndarray:
    """Bool mask over the K classes: which are evaluated.

    official: classes not ignored in evaluation by the taxonomy (Cityscapes 19, Vistas 65, GTSDB 43);
    all: every class but the taxonomy's ignore_ids;
    paper (docs/design.md §2.6, needs the tree): the classes the tree maps to a node (Cityscapes 27, Vistas
    65); for a box dataset only those with >= min_pixels in both splits (`pixel_counts`, GTSDB 28);
    for an evaluation-only dataset (Cityscapes Extended) the classes it shares with the tree's box
    datasets (the sign classes; means run over those present in the gt, 18 in the paper);
    a sequence of class ids (or "7,8,26"): exactly those.
    """
    tax = space.taxonomy
    by_id = {c.id: c for c in tax.classes}
    if isinstance(spec, str) and spec not in CLASS_SETS:
        try:
            spec = [int(x) for x in spec.split(",") if x.strip()]
        except ValueError:
            raise LabeltreeError(f"--classes: expected official, paper, all or comma-separated class ids, "
                                 f"got {spec!r}") from None
    if not isinstance(spec, str):
        mask = np.zeros(space.K, dtype=bool)
        for cid in spec:
            mask[space.index_of(int(cid))] = True
        if not mask.any():
            raise LabeltreeError("--classes: no class ids given")
        return mask
    ignore = set(tax.ignore_ids)
    if spec == "all":
        return np.array([int(c) not in ignore for c in space.ids], dtype=bool)
    if spec == "official":
        return np.array([int(c) not in ignore and not by_id[int(c)].ignore_in_eval for c in space.ids], dtype=bool)
    # paper
    if hierarchy is None:
        raise LabeltreeError("--classes paper needs the tree (--hierarchy): the paper evaluates the classes "
                             "the tree maps to a node")
    m = hierarchy.mapping(dataset or tax.name)
    mapped = {cid for cid, node in m.to_node.items() if node is not None}
    mask = np.array([int(c) in mapped for c in space.ids], dtype=bool)
    if m.is_boxes:
        if pixel_counts is None:
            raise LabeltreeError(f"--classes paper for '{tax.name}' needs per-class pixel counts of both "
                                 f"splits (the >= {min_pixels}-pixels rule); give the dataset root")
        keep = set(classes_with_pixels_in_both(pixel_counts[0], pixel_counts[1], min_pixels))
        mask &= np.array([int(c) in keep for c in space.ids], dtype=bool)
    elif m.evaluation_only:
        box_nodes = {n for d in hierarchy.mappings.values() if d.is_boxes for n in d.to_node.values()
                     if n is not None}
        mask &= np.array([m.to_node.get(int(c)) in box_nodes for c in space.ids], dtype=bool)
        if pixel_counts is not None:  # the paper's rule: >= min_pixels in the box dataset's train AND test split
            keep = set(classes_with_pixels_in_both(pixel_counts[0], pixel_counts[1], min_pixels))
            mask &= np.array([int(c) in keep for c in space.ids], dtype=bool)
    return mask


def no_class_value(mapping: Any) -> int:
    """The stored value that means 'no class' in a dataset (its unlabeled value or first ignored id).

    `labeltree predict` writes it for a tree node the dataset has no class for, so the paper protocol
    drops predictions of it (in dataset ids there is no other way to say "a class this dataset lacks").
    """
    tax = mapping.taxonomy
    if tax.encoding.unlabeled is not None:
        return int(tax.encoding.unlabeled)
    ignored = sorted(c for c, n in mapping.to_node.items() if n is None and c >= 0)
    return int(tax.stored_value(ignored[0])) if ignored else 0


def box_counts_as(hierarchy: Hierarchy, dataset: str, counts: Mapping[int, int]) -> dict[int, int]:
    """A box dataset's per-class pixel counts re-keyed by the class ids of `dataset` mapped to the same node."""
    box = next((m for m in hierarchy.mappings.values() if m.is_boxes), None)
    if box is None:
        raise LabeltreeError(f"tree '{hierarchy.name}' has no box dataset whose pixel counts the paper's rule needs")
    by_node = {n: counts.get(c, 0) for c, n in box.to_node.items() if n is not None}
    target = hierarchy.mapping(dataset)
    return {c: by_node[n] for c, n in target.to_node.items() if n is not None and n in by_node}


# -- the flat model's traffic-sign rule -------------------------------------------------------------

def second_choice(scores: np.ndarray, generic: int, subclasses: Sequence[int], axis: int = -3) -> np.ndarray:
    """Flat decisions with the paper's traffic-sign second-choice rule (docs/design.md §2.6), done right.

    argmax over `axis`; where the top choice is the generic sign class `generic` and the second
    choice (the best class other than `generic`) is one of `subclasses`, the decision becomes that
    subclass. The pixel is then recorded as that subclass everywhere: correct where it equals the gt,
    a confusion (and a false positive of that subclass) where it does not. A generic top choice whose
    second choice is no subclass stays generic (an error on a sign pixel of any subclass). The
    authors' metric mis-records exactly that case: "generic top-1 + a non-subclass top-2" is
    recorded as class 7 (a sign subclass) instead of the generic class.
    """
    scores = np.asarray(scores)
    top = np.argmax(scores, axis=axis)
    masked = np.moveaxis(scores, axis, 0).astype(np.float64, copy=True)
    masked[generic] = -np.inf
    second = np.argmax(masked, axis=0)
    is_sub = np.zeros(max(scores.shape[axis], 1), dtype=bool)
    is_sub[np.asarray(list(subclasses), dtype=np.int64)] = True
    return np.where((top == generic) & is_sub[second], second, top)


def sign_rule_nodes(hierarchy: Hierarchy) -> tuple[int, list[int]] | None:
    """(generic node, subclass nodes) for the sign rule: the node the tree's box dataset hangs under."""
    for d, m in hierarchy.mappings.items():
        if m.is_boxes:
            j = hierarchy.tables(d).box_classifier
            if j is not None:
                c = hierarchy.classifiers[j]
                return c.node, list(c.children)
    return None


@dataclass
class PairCounter:
    """The per-image part of an Evaluator: small and picklable, so process-pool workers get it cheaply."""

    dataset: str  # taxonomy name (for messages)
    taxonomy_ref: str  # what load_taxonomy() needs to re-open it in a worker
    lut: np.ndarray  # stored value -> label-space index (-1 = no class)
    node_lut: np.ndarray | None  # tree node -> label-space index (pred_space="tree")
    pred_space: str
    n: int
    n_nodes: int = 0  # tree nodes = channels of a score map
    sign_rule: tuple[int, tuple[int, ...]] | None = None  # (generic, subclasses) for flat score maps

    def __post_init__(self) -> None:
        self.pred_lut = self.node_lut if self.pred_space == "tree" else self.lut

    @property
    def what(self) -> str:
        return "tree node indices" if self.pred_space == "tree" else f"{self.dataset} class values"

    def decide(self, scores: np.ndarray, path: Any = None) -> np.ndarray:
        """Flat model: node decisions from score maps (..., C = tree nodes, H, W).

        argmax, or with `sign_rule` set (paper protocol) the traffic-sign second-choice rule.
        """
        if self.pred_space != "tree":
            raise LabeltreeError("score maps are indexed by tree node: use --pred-space tree with a tree", path)
        scores = _to_numpy(scores)
        if scores.ndim < 3 or scores.shape[-3] != self.n_nodes:
            raise LabeltreeError(f"score maps must have shape (..., {self.n_nodes}, H, W), one channel per tree "
                                 f"node in tree order; got {scores.shape}", path)
        if self.sign_rule is None:
            return np.argmax(scores, axis=-3)
        return second_choice(scores, self.sign_rule[0], self.sign_rule[1], axis=-3)

    def confusion(self, gt: Any, pred: Any, gt_path: Any = None, pred_path: Any = None) -> np.ndarray:
        """The n x n matrix of one image (or batch).

        Fast path (label spaces up to ~1M value pairs, i.e. every 8-bit dataset and any dataset with
        tree-node predictions): one key gt * P + pred per pixel, counted over RUNS of equal keys
        (label maps are piecewise constant, so there are ~100x fewer runs than pixels) or with a
        plain bincount when the maps are too noisy for runs to pay off; the raw-value histogram is
        then folded into label-space indices with the LUTs. Other spaces map through the LUTs first.
        """
        gt = _to_numpy(gt)
        pred = _to_numpy(pred)
        if gt.shape != pred.shape:
            where = f" (ground truth {gt_path})" if gt_path else ""
            raise LabeltreeError(f"prediction is {_size(pred)} but the ground truth{where} is {_size(gt)}; "
                                 "predict at the label resolution", pred_path)
        _check_integer(gt, gt_path, "ground truth")
        _check_integer(pred, pred_path, "prediction")
        n = self.n
        g_size, p_size = len(self.lut), len(self.pred_lut)
        if g_size * p_size <= 1 << 20 and gt.size and _in_range(gt, g_size) and _in_range(pred, p_size):
            hist, keys = _count_pairs(gt.reshape(-1), pred.reshape(-1), p_size, g_size * p_size)
            gv, pv = keys // p_size, keys % p_size
            gi, pi = self.lut[gv], self.pred_lut[pv]
            self._check_values(gv, gi, gt_path, "ground truth", "the dataset's label space")
            self._check_values(pv, pi, pred_path, "prediction", self._pred_space_name)
            return np.bincount(gi * n + pi, weights=hist, minlength=n * n).astype(np.int64).reshape(n, n)
        gi = self._index(gt, self.lut, gt_path, "ground truth", "the dataset's label space")
        pi = self._index(pred, self.pred_lut, pred_path, "prediction", self._pred_space_name)
        return np.bincount((gi * n + pi).ravel(), minlength=n * n).reshape(n, n)

    @property
    def _pred_space_name(self) -> str:
        return "the tree's nodes" if self.pred_space == "tree" else "the dataset's label space"

    def _index(self, a: np.ndarray, lut: np.ndarray, path: Any, what: str, space: str) -> np.ndarray:
        lo, hi = (int(a.min()), int(a.max())) if a.size else (0, 0)
        if lo < 0 or hi >= len(lut):
            bad = np.unique(a[(a < 0) | (a >= len(lut))])
            raise LabeltreeError(f"{what} holds value(s) {_fmt_values(bad)} outside {space} "
                                 f"(0..{len(lut) - 1}) for dataset '{self.dataset}'", path)
        idx = lut[a]
        if (idx < 0).any():
            bad = np.unique(a[idx < 0])
            raise LabeltreeError(f"{what} holds value(s) {_fmt_values(bad)} that are no class of dataset "
                                 f"'{self.dataset}' ({space})", path)
        return idx

    def _check_values(self, values: np.ndarray, idx: np.ndarray, path: Any, what: str, space: str) -> None:
        if (idx < 0).any():
            bad = np.unique(values[idx < 0])
            raise LabeltreeError(f"{what} holds value(s) {_fmt_values(bad)} that are no class of dataset "
                                 f"'{self.dataset}' ({space})", path)


def _in_range(a: np.ndarray, size: int) -> bool:
    return int(a.max()) < size and (a.dtype.kind == "u" or int(a.min()) >= 0)


def _count_pairs(gt: np.ndarray, pred: np.ndarray, p_size: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(counts, keys gt * p_size + pred) of the value pairs present in two flat maps; exact.

    Label maps and predictions are piecewise constant, so pairs are counted over RUNS where neither
    map changes (~1e4-1e5 per 2048x1024 frame): two byte-wise comparison passes and one gather at the
    run starts, without a per-pixel key array. Noisy maps (runs > 1/8 of the pixels) fall back to a
    bincount of per-pixel keys.
    """
    n = gt.size
    change = np.empty(n, dtype=bool)
    change[0] = True
    np.not_equal(gt[1:], gt[:-1], out=change[1:])
    np.logical_or(change[1:], pred[1:] != pred[:-1], out=change[1:])
    starts = np.flatnonzero(change)
    if starts.size * 8 < n:
        lengths = np.diff(starts, append=n)
        key = gt[starts].astype(np.int64) * p_size + pred[starts]
        hist = np.bincount(key, weights=lengths, minlength=size)  # float64: exact below 2**53 pixels
    else:
        key = np.empty(n, dtype=np.uint16 if size <= 1 << 16 else np.uint32)
        np.multiply(gt, p_size, out=key, dtype=key.dtype, casting="unsafe")
        np.add(key, pred, out=key, dtype=key.dtype, casting="unsafe")
        hist = np.bincount(key, minlength=size)
    keys = np.flatnonzero(hist)
    return hist[keys], keys


# -- the evaluator -----------------------------------------------------------------------------------

def _to_numpy(a: Any) -> np.ndarray:
    if type(a).__module__.startswith("torch"):
        a = a.detach().cpu().numpy()
    return np.asarray(a)


@dataclass
class Evaluator:
    """Accumulates one confusion matrix over a dataset's label space, image by image.

    dataset: taxonomy name or path (or a Taxonomy); hierarchy: a loaded tree (needed for
    pred_space="tree", classes="paper", levels, paper_protocol's dropped classes); classes:
    "official" | "paper" | "all" | ids; mean_over: "gt" (default, docs/design.md) or "defined"
    (cityscapesScripts' average over classes with a defined IoU).
    """

    dataset: str | Taxonomy
    hierarchy: Hierarchy | None = None
    classes: str | Sequence[int] | None = None  # None: the protocol's
    pred_space: str = "dataset"
    paper_protocol: bool | None = None  # override: True = drop foreign + sign rule, False = neither
    mean_over: str | None = None  # None: the protocol's
    levels: bool = False
    pixel_counts: tuple[Mapping[int, int], Mapping[int, int]] | None = None
    min_pixels: int = DEFAULT_MIN_PIXELS
    protocol: str = "official"
    drop: str | None = None  # override of the protocol's drop rule (none | foreign | unevaluated)
    sign_rule: bool | None = None  # override of the protocol's flat sign rule
    matrix: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.taxonomy = self.dataset if isinstance(self.dataset, Taxonomy) else load_taxonomy(self.dataset)
        self.space = LabelSpace.of(self.taxonomy)
        self.matrix = np.zeros((self.space.n, self.space.n), dtype=np.int64)
        if self.pred_space not in ("dataset", "tree"):
            raise LabeltreeError(f"--pred-space must be 'dataset' or 'tree', not {self.pred_space!r}")
        pp = self.paper_protocol
        self.rules = resolve_rules(
            self.protocol, self.taxonomy.name, self.classes, self.mean_over,
            self.drop if self.drop is not None else (None if pp is None else ("foreign" if pp else "none")),
            self.sign_rule if self.sign_rule is not None else pp)
        if self.classes is None and self.rules.classes == "paper" and not self._paper_classes_known():
            # arrays without the tree (or a box dataset without both splits' counts): the paper's class rule
            # cannot be applied here; evaluate every class and say so (evaluate_folder applies the rule)
            self.rules = replace(self.rules, classes="all", note="; ".join(
                x for x in (self.rules.note, "the paper's class rule needs the tree and the pixel counts of both "
                            "splits: every class evaluated") if x))
        self.classes = self.rules.classes if isinstance(self.rules.classes, str) else list(self.rules.classes)
        self.mean_over = self.rules.mean_over
        if self.mean_over not in ("gt", "defined"):
            raise LabeltreeError(f"mean over must be 'gt' or 'defined', not {self.mean_over!r}")
        self.mapping = None
        self.node_lut = None
        if self.hierarchy is not None:
            self.mapping = self.hierarchy.mapping(self.taxonomy.name)
            mt = self.mapping.taxonomy
            if (mt.name, mt.version, len(mt.classes)) != (self.taxonomy.name, self.taxonomy.version,
                                                           len(self.taxonomy.classes)):
                raise LabeltreeError(f"tree '{self.hierarchy.name}' maps {mt.name} {mt.version} but the labels are "
                                     f"{self.taxonomy.name} {self.taxonomy.version}: use a tree for this version",
                                     self.hierarchy.path)
            t = self.hierarchy.tables(self.mapping.dataset)
            n2v = t.node_to_value.astype(np.int64)
            # predicted node -> label-space index; nodes without a class of this dataset -> foreign
            self.node_lut = np.where(n2v >= 0, self.space.lut[np.clip(n2v, 0, None)], self.space.foreign)
            self.value_to_node = t.value_to_node
        elif self.pred_space == "tree":
            raise LabeltreeError("--pred-space tree needs the tree (--hierarchy) to project nodes to classes")
        elif self.levels:
            raise LabeltreeError("--levels needs the tree (--hierarchy)")
        self.evaluated = resolve_classes(self.classes, self.space, self.hierarchy,
                                         self.mapping.dataset if self.mapping else None, self.pixel_counts,
                                         self.min_pixels)
        ref = (self.taxonomy.name if isinstance(self.dataset, Taxonomy)
               else str(resolve_taxonomy_path(self.dataset).resolve()))
        # paper: the classes-the-dataset-lacks rule applied to the evaluated split itself (Cityscapes Extended:
        # a sign class needs >= min_pixels in this gt too), checked on the matrix at result() time
        self.min_gt_pixels = (self.min_pixels if self.rules.classes == "paper" and self.mapping is not None
                              and self.mapping.evaluation_only and self.pixel_counts is not None else None)
        rule = sign_rule_nodes(self.hierarchy) if (self.rules.sign_rule and self.hierarchy is not None) else None
        self.counter = PairCounter(self.taxonomy.name, ref, self.space.lut, self.node_lut, self.pred_space,
                                   self.space.n, len(self.hierarchy.nodes) if self.hierarchy is not None else 0,
                                   (rule[0], tuple(rule[1])) if rule else None)

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
        cm = self.confusion(gt, pred, gt_path, pred_path)
        self.matrix += cm
        return cm

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
                v = no_class_value(self.mapping) if self.mapping is not None else self.taxonomy.encoding.unlabeled
                if v is not None and 0 <= v < len(self.space.lut) and self.space.lut[v] >= 0:
                    drop[self.space.lut[v]] = True
        elif self.rules.drop == "unevaluated":
            drop[:] = True
            drop[: self.space.K] = ~self.evaluated
        return drop

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
                               "mean_over": self.mean_over}
        out.update(_scores(cm, names, self.mean_over))
        cats = self.category_iou()
        if any(not math.isnan(v) for v in cats.values()):
            vals = [v for v in cats.values() if not math.isnan(v)]
            out["categories"] = {k: _num(v) for k, v in cats.items()}
            out["mIoU_categories"] = _num(float(np.mean(vals)) if vals else float("nan"))
        out["confusion"] = {"labels": [*names, OTHER_NAME], "matrix": cm.tolist()}
        if self.levels and self.hierarchy is not None:
            out["levels"] = {}
            for lv in self.dataset_levels():
                lcm, lnames = self.level_matrix(lv)
                out["levels"][str(lv)] = _scores(lcm, lnames, self.mean_over)
        return out


def _scores(cm: np.ndarray, names: list[str], mean_over: str) -> dict[str, Any]:
    pc = per_class(cm)
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


def _size(a: np.ndarray) -> str:
    return f"{a.shape[-1]}x{a.shape[-2]}" if a.ndim >= 2 else str(a.shape)


def _fmt_values(v: np.ndarray, limit: int = 8) -> str:
    s = ", ".join(str(int(x)) for x in v[:limit])
    return s + (f" and {len(v) - limit} more" if len(v) > limit else "")


def _check_integer(a: np.ndarray, path: Any, what: str) -> None:
    if not np.issubdtype(a.dtype, np.integer):
        raise LabeltreeError(f"{what} must hold integer class values, got dtype {a.dtype}", path)


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


# -- files: ground truth, predictions, matching ------------------------------------------------------

PRED_SUFFIXES = (".png", ".npy")


def prediction_files(pred_dir: Path) -> list[Path]:
    """Every .png / .npy under `pred_dir` (recursively), hidden files and folders left out."""
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise LabeltreeError(f"prediction folder not found (searched {pred_dir.resolve()})", pred_dir)
    return sorted(p for p in pred_dir.rglob("*") if p.suffix.lower() in PRED_SUFFIXES and p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(pred_dir).parts))


def _listing(paths: Sequence[Any], limit: int = 10) -> str:
    shown = ", ".join(str(p) for p in paths[:limit])
    return shown + (f" ... ({len(paths) - limit} more)" if len(paths) > limit else "")


def match_predictions(samples: Sequence[Sample], pred_dir: Path, layout: str) -> list[tuple[Sample, Path]]:
    """Pair every gt sample with exactly one prediction file; name every missing, surplus or doubled one."""
    pred_dir = Path(pred_dir)
    reader = reader_class(layout)
    files = prediction_files(pred_dir)
    if not files:
        raise LabeltreeError(f"no predictions (*.png, *.npy) under {pred_dir.resolve()} (searched recursively)",
                             pred_dir)
    keys = {s.key for s in samples}
    by_key: dict[str, list[Path]] = {}
    surplus = []
    for f in files:
        k = reader.prediction_key(f)
        if k in keys:
            by_key.setdefault(k, []).append(f)
        else:
            surplus.append(f)
    doubled = {k: v for k, v in by_key.items() if len(v) > 1}
    if doubled:
        k, v = next(iter(doubled.items()))
        raise LabeltreeError(f"{len(doubled)} sample(s) have several predictions, e.g. '{k}': {_listing(v)}; "
                             "keep one file per image", pred_dir)
    missing = [s for s in samples if s.key not in by_key]
    problems = []
    if missing:
        problems.append(f"{len(missing)} of {len(samples)} ground-truth images have no prediction: "
                        f"{_listing([s.key for s in missing])}")
    if surplus:
        problems.append(f"{len(surplus)} prediction file(s) match no ground-truth image of this split: "
                        f"{_listing([str(p.relative_to(pred_dir)) for p in surplus])}")
    if problems:
        raise LabeltreeError("; ".join(problems) + f" ({reader.prediction_naming}; searched {pred_dir.resolve()} "
                             "recursively)", pred_dir)
    return [(s, by_key[s.key][0]) for s in samples]


def read_prediction(path: Path, what: str) -> np.ndarray:
    """A prediction file as an integer map (.png, .npy) or a float score map (C, H, W) (.npy)."""
    path = Path(path)
    if path.suffix.lower() == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise LabeltreeError(f"cannot read .npy prediction ({e})", path) from None
        if arr.ndim == 2 and np.issubdtype(arr.dtype, np.integer):
            return arr
        if arr.ndim == 3 and np.issubdtype(arr.dtype, np.floating):
            return arr
        raise LabeltreeError(f".npy predictions must be an integer map (H, W) of {what} or a float score map "
                             f"(C, H, W); got {arr.dtype} {arr.shape}", path)
    data, hdr = read_file_and_header(path)  # one read: decoded from memory
    if hdr is None or hdr.colour_type not in (PNG_GREY, PNG_PALETTE):
        kind = hdr.description if hdr is not None else "file that is no PNG"
        raise LabeltreeError(f"prediction is a {kind}; predictions must be single-channel PNGs of {what} "
                             "(grey or palette indices), not colour visualisations", path)
    return decode_array(path, hdr, data=data)


@lru_cache(maxsize=8)
def _known(taxonomy_ref: str) -> np.ndarray:
    """The taxonomy's defined label values, once per worker process (not once per file)."""
    return known_values(load_taxonomy(taxonomy_ref))


@dataclass(frozen=True)
class _Job:
    counter: PairCounter
    sample: Sample
    pred: Path
    mask_mode: str


def _count_job(job: _Job) -> np.ndarray:
    """Worker: decode the gt and the prediction once each, return the image's matrix."""
    tax = load_taxonomy(job.counter.taxonomy_ref)
    gt = read_label(job.sample, tax, job.mask_mode, known=_known(job.counter.taxonomy_ref))
    pred = read_prediction(job.pred, job.counter.what)
    if pred.ndim == 3:
        pred = job.counter.decide(pred, job.pred)
    return job.counter.confusion(gt, pred, job.sample.label or job.sample.image, job.pred)


def default_split(reader: Any) -> str:
    """'val' where the dataset has it, else 'test' (GTSDB's evaluation split)."""
    splits = reader.splits()
    for s in ("val", "test"):
        if s in splits:
            return s
    return splits[-1]


def gtsdb_class_pixels(reader: Any, split: str, size: tuple[int, int] | None = None,
                       mask_mode: str = DEFAULT_MASK_MODE) -> dict[int, int]:
    """Per GTSDB class id: gt pixels of one split with every frame resized to `size` (H, W).

    The paper's rule counts pixels "at the training scale": the authors' input pipeline resizes
    GTSDB frames to 512 x 850 (nearest-neighbour labels), which gives their 28 classes. Boxes are
    scaled with the frame and rendered with the shared shape masks (`read_label`), frame by frame,
    for every frame gt.txt names in the split. `size=None` counts at the native size. Frames whose
    image is absent take the most common frame size of the ones present.
    """
    from collections import Counter

    tax = reader.taxonomy
    gt = reader.ground_truth()
    frames = reader.frames()
    sizes = Counter(reader.frame_size(stem) for stem in frames)
    if not sizes:
        raise LabeltreeError("no GTSDB frames found: their size is needed to scale the boxes", reader.root)
    common = sizes.most_common(1)[0][0]
    counts: dict[int, int] = {}
    for name, boxes in gt.boxes.items():
        stem = Path(name).stem
        if not (stem.isdigit() and int(stem) in GTSDB_SPLITS[split]) or not boxes:
            continue
        h, w = reader.frame_size(stem) if stem in frames else common
        sh, sw = size if size is not None else (h, w)
        sy, sx = sh / h, sw / w
        scaled = []
        for b in boxes:
            x0, y0 = min(round(b.x0 * sx), sw - 1), min(round(b.y0 * sy), sh - 1)
            x1 = min(max(x0, round((b.x1 + 1) * sx) - 1), sw - 1)
            y1 = min(max(y0, round((b.y1 + 1) * sy) - 1), sh - 1)
            scaled.append(Box(x0, y0, x1, y1, b.class_id, b.line))
        mask = read_label(Sample(tax.name, split, stem, None, None, boxes=tuple(scaled), size=(sh, sw)), tax, mask_mode)
        values, n = np.unique(mask, return_counts=True)
        for v, c in zip(values.tolist(), n.tolist(), strict=True):
            if v != tax.encoding.unlabeled:
                cid = v - tax.encoding.offset
                counts[cid] = counts.get(cid, 0) + c
    return counts


def evaluate_folder(dataset: str | Taxonomy, gt_root: str | Path, pred_dir: str | Path | None = None,
                    split: str | None = None, *, predict: Any = None, hierarchy: Hierarchy | None = None,
                    classes: str | Sequence[int] | None = None, pred_space: str = "dataset",
                    paper_protocol: bool | None = None, levels: bool = False, mean_over: str | None = None,
                    workers: int | None = None, progress: bool = True, gtsdb_size: tuple[int, int] | None = (512, 850),
                    min_pixels: int = DEFAULT_MIN_PIXELS, mask_mode: str = DEFAULT_MASK_MODE,
                    protocol: str = "official", drop: str | None = None, gtsdb_root: str | Path | None = None,
                    sign_rule: bool | None = None) -> tuple[dict[str, Any], Evaluator]:
    """Evaluate a folder of predictions (or a `predict(sample) -> array` callable) on one split.

    Files are decoded once each, in a process pool (`workers`, default all cores); each worker
    returns one image's matrix. `predict` (the trainer's checkpoint hook) runs in this process and
    returns dataset values or tree nodes per `pred_space`, or a (C, H, W) node score map.
    """
    reader = open_dataset(dataset, gt_root, mask_mode=mask_mode) if _is_boxes(dataset) \
        else open_dataset(dataset, gt_root)
    split = split or default_split(reader)
    if split not in reader.splits():
        raise LabeltreeError(f"dataset '{reader.taxonomy.name}' has no split '{split}' here (splits: "
                             f"{', '.join(reader.splits())})", gt_root)
    samples = reader.samples(split)
    if not samples:
        raise LabeltreeError(f"no ground truth for split '{split}' under {Path(gt_root).resolve()}", gt_root)
    counts = None
    pp = None if paper_protocol is None else ("foreign" if paper_protocol else "none")
    rules = resolve_rules(protocol, reader.taxonomy.name, classes, mean_over, drop if drop is not None else pp)
    if rules.classes == "paper" and reader.taxonomy.annotation == "boxes":
        counts = (gtsdb_class_pixels(reader, "train", gtsdb_size, mask_mode),
                  gtsdb_class_pixels(reader, "test", gtsdb_size, mask_mode))
    elif rules.classes == "paper" and hierarchy is not None and hierarchy.mapping(reader.taxonomy.name).evaluation_only:
        if gtsdb_root is None:
            raise LabeltreeError(f"the paper's class rule for '{reader.taxonomy.name}' needs the box dataset's pixel "
                                 "counts (>= --min-pixels in GTSDB train and test): pass --gtsdb-root DIR, or choose "
                                 "the classes yourself with --classes all|IDS")
        box = next(m for m in hierarchy.mappings.values() if m.is_boxes)
        greader = open_dataset(box.taxonomy, gtsdb_root, mask_mode=mask_mode)
        counts = tuple(box_counts_as(hierarchy, reader.taxonomy.name, gtsdb_class_pixels(greader, sp, gtsdb_size,
                                                                                         mask_mode))
                       for sp in ("train", "test"))
    ev = Evaluator(reader.taxonomy if isinstance(dataset, Taxonomy) else dataset, hierarchy=hierarchy,
                   classes=classes, pred_space=getattr(predict, "pred_space", pred_space),
                   paper_protocol=paper_protocol, mean_over=mean_over, levels=levels, pixel_counts=counts,
                   min_pixels=min_pixels, protocol=protocol, drop=drop, sign_rule=sign_rule)
    if predict is not None:
        for s in samples:
            gt = read_label(s, reader.taxonomy, mask_mode)
            pred = _to_numpy(predict(s, ev.rules) if getattr(predict, "takes_rules", False) else predict(s))
            if pred.ndim == 3 and np.issubdtype(pred.dtype, np.floating):
                pred = ev.counter.decide(pred, None)
            ev.add(gt, pred, s.label or s.image, s.key)
        n_images = len(samples)
    else:
        if pred_dir is None:
            raise LabeltreeError("give a prediction folder (PRED_DIR)")
        pairs = match_predictions(samples, Path(pred_dir), reader.layout)
        jobs = [_Job(ev.counter, s, p, mask_mode) for s, p in pairs]
        nw = default_workers() if workers is None else max(1, workers)
        if nw > 1 and len(jobs) > 1:
            # The first image is counted here, before the pool forks: that loads the PNG decoders (pyspng,
            # PIL) once, and the forked workers inherit them instead of each importing them.
            ev.merge(_count_job(jobs[0]))
            jobs = jobs[1:]
        for cm in pmap(_count_job, jobs, nw, desc=f"evaluate {reader.taxonomy.name}", progress=progress,
                       chunksize=max(1, min(8, len(jobs) // (4 * nw)))):
            ev.merge(cm)
        n_images = len(pairs)
    res = ev.result()
    res["split"] = split
    res["images"] = n_images
    if counts is not None:
        res["paper_rule"] = {"min_pixels": min_pixels, "size": list(gtsdb_size) if gtsdb_size else None,
                             "classes": [int(c) for c in ev.space.ids[ev.evaluated_now()]]}
    return res, ev


def _is_boxes(dataset: str | Taxonomy) -> bool:
    tax = dataset if isinstance(dataset, Taxonomy) else load_taxonomy(dataset)
    return tax.annotation == "boxes"
