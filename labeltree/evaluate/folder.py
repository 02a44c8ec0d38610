"""Evaluating a folder of prediction files (or a predict hook) against one split of a dataset.

Files: every .png / .npy under the prediction folder, matched to the ground truth by the layout's
naming rule (`match_predictions`), decoded once each in a process pool; each worker returns one
image's matrix (labeltree.evaluate.counting). The rules are resolved once (`rules_for`) and the
paper's pixel counts gathered once (labeltree.evaluate.classes) before counting starts.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from labeltree.core.taxonomy import Taxonomy, load_taxonomy
from labeltree.datasets.base import LabeltreeWarning, Sample, known_values, read_label
from labeltree.datasets.boxmask import DEFAULT_MASK_MODE
from labeltree.datasets.decode import PNG_GREY, PNG_PALETTE, decode_array, read_file_and_header
from labeltree.datasets.registry import open_dataset, reader_class
from labeltree.errors import LabeltreeError
from labeltree.evaluate.classes import paper_pixel_counts
from labeltree.evaluate.counting import PairCounter, to_numpy
from labeltree.evaluate.evaluator import Evaluator
from labeltree.evaluate.predictor import SamplePredictor
from labeltree.evaluate.protocols import Rules, rules_for
from labeltree.evaluate.result import EvaluationResult
from labeltree.fsutil import check_input
from labeltree.parallel import pmap, resolve_workers

if TYPE_CHECKING:  # the tree is passed in, never built here
    from labeltree.core.hierarchy import Hierarchy

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


def match_predictions(samples: Sequence[Sample], pred_dir: Path, layout: str, missing_ok: bool = False,
                      ) -> list[tuple[Sample, Path | None]]:
    """Pair every gt sample with exactly one prediction file; name every missing, surplus or doubled one.

    `missing_ok` (BDD100K's tool): a sample without a prediction is paired with None (a warning says how many).
    """
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
    if missing and missing_ok:
        warnings.warn(f"{len(missing)} of {len(samples)} ground-truth images have no prediction under {pred_dir}: "
                      f"scored as all ignored, as the official tool does ({_listing([s.key for s in missing], 3)})",
                      LabeltreeWarning, stacklevel=2)
    elif missing:
        problems.append(f"{len(missing)} of {len(samples)} ground-truth images have no prediction: "
                        f"{_listing([s.key for s in missing])}")
    if surplus:
        problems.append(f"{len(surplus)} prediction file(s) match no ground-truth image of this split: "
                        f"{_listing([str(p.relative_to(pred_dir)) for p in surplus])}")
    if problems:
        raise LabeltreeError("; ".join(problems) + f" ({reader.prediction_naming}; searched {pred_dir.resolve()} "
                             "recursively)", pred_dir)
    return [(s, by_key[s.key][0] if s.key in by_key else None) for s in samples]


def read_prediction(path: Path, what: str) -> np.ndarray:
    """A prediction file as an integer map (.png, .npy) or a float score map (C, H, W) (.npy)."""
    path = Path(path)
    if path.suffix.lower() == ".npy":
        try:
            arr = np.load(check_input(path, "prediction"), allow_pickle=False)
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
class _FileJob:
    """One gt sample and its prediction file, counted in a pool worker."""

    counter: PairCounter
    sample: Sample
    pred: Path | None  # None: no prediction file, scored as all ignored (`Rules.missing_ignored`)
    mask_mode: str


def _count_job(job: _FileJob) -> tuple[np.ndarray, int]:
    """Worker: decode the gt and the prediction once each, return the image's matrix and its pixels of
    predicted values that are no class (counted as the ignore label under `outside: ignore`)."""
    tax = load_taxonomy(job.counter.taxonomy_ref)
    gt = read_label(job.sample, tax, job.mask_mode, known=_known(job.counter.taxonomy_ref))
    if job.pred is None:
        pred = np.full(gt.shape, tax.stored_value(tax.ignore_ids[0]), dtype=gt.dtype)
        return job.counter.count(gt, pred, job.sample.label or job.sample.image)
    pred = read_prediction(job.pred, job.counter.what)
    if pred.ndim == 3:
        pred = job.counter.decide(pred, job.pred)
    return job.counter.count(gt, pred, job.sample.label or job.sample.image, job.pred)


def default_split(reader: Any) -> str:
    """'val' where the dataset has it, else 'test' (GTSDB's evaluation split)."""
    splits = reader.splits()
    for s in ("val", "test"):
        if s in splits:
            return s
    return splits[-1]


def _samples(dataset: str | Taxonomy, gt_root: str | Path, split: str | None,
             mask_mode: str) -> tuple[Any, str, list[Sample]]:
    """(reader, split, its samples): the split checked against the dataset's splits, and not empty."""
    reader = open_dataset(dataset, gt_root, mask_mode=mask_mode) if _is_boxes(dataset) \
        else open_dataset(dataset, gt_root)
    split = split or default_split(reader)
    if split not in reader.splits():
        raise LabeltreeError(f"dataset '{reader.taxonomy.name}' has no split '{split}' here (splits: "
                             f"{', '.join(reader.splits())})", gt_root)
    samples = reader.samples(split)
    if not samples:
        raise LabeltreeError(f"no ground truth for split '{split}' under {Path(gt_root).resolve()}", gt_root)
    return reader, split, samples


def _count_predicted(ev: Evaluator, reader: Any, samples: Sequence[Sample], predict: Any, mask_mode: str) -> int:
    """Count `predict(sample)`'s outputs (a `SamplePredictor` gets the rules too), in this process."""
    model_run = isinstance(predict, SamplePredictor)
    for s in samples:
        gt = read_label(s, reader.taxonomy, mask_mode)
        pred = to_numpy(predict(s, ev.rules) if model_run else predict(s))
        if pred.ndim == 3 and np.issubdtype(pred.dtype, np.floating):
            pred = ev.counter.decide(pred, None)
        ev.add(gt, pred, s.label or s.image, s.key)
    return len(samples)


def _count_files(ev: Evaluator, reader: Any, samples: Sequence[Sample], pred_dir: str | Path | None,
                 mask_mode: str, workers: int | None, progress: bool) -> int:
    """Count every matched prediction file, in a process pool of `workers` (default all cores)."""
    if pred_dir is None:
        raise LabeltreeError("give a prediction folder (PRED_DIR)")
    pairs = match_predictions(samples, Path(pred_dir), reader.layout,
                              missing_ok=ev.rules.missing_ignored and ev.pred_space == "dataset")
    jobs = [_FileJob(ev.counter, s, p, mask_mode) for s, p in pairs]
    nw = resolve_workers(workers)
    if nw > 1 and len(jobs) > 1:
        # The first image is counted here, before the pool forks: that loads the PNG decoders (pyspng,
        # PIL) once, and the forked workers inherit them instead of each importing them.
        cm, outside = _count_job(jobs[0])
        ev.merge(cm)
        ev.note_outside(outside)
        jobs = jobs[1:]
    for cm, outside in pmap(_count_job, jobs, nw, desc=f"evaluate {reader.taxonomy.name}", progress=progress,
                            chunksize=max(1, min(8, len(jobs) // (4 * nw)))):
        ev.merge(cm)
        ev.note_outside(outside)
    return len(pairs)


def tree_for(rules: Rules, dataset: str, ref: str | Path | None = None, pred_space: str = "dataset",
             levels: bool = False) -> Hierarchy | None:
    """The tree an evaluation uses: `ref` when given, else where the rules or options need one (tree-node
    predictions, levels, the paper's class set or drop rule) the smallest bundled tree mapping `dataset`."""
    needs_tree = pred_space == "tree" or levels or rules.classes == "paper" or rules.drop == "foreign"
    if ref is None and not needs_tree:
        return None
    from labeltree.core.tree_file import default_tree, load_hierarchy  # trees are read only when one is needed

    return load_hierarchy(ref or default_tree([dataset]))


def evaluate_folder(dataset: str | Taxonomy, gt_root: str | Path, pred_dir: str | Path | None = None,
                    split: str | None = None, *, rules: Rules | str = "official", hierarchy: Hierarchy | None = None,
                    predict: Any = None, pred_space: str = "dataset", levels: bool = False,
                    gtsdb_root: str | Path | None = None, mask_mode: str = DEFAULT_MASK_MODE,
                    workers: int | None = None, progress: bool = True) -> EvaluationResult:
    """Evaluate a folder of predictions (or a `predict(sample) -> array` callable) on one split.

    `rules`: a protocol name or the `Rules` of `resolve_rules` (class set, mean, drop rule, sign rule,
    the paper's pixel rule). `predict` runs in this process and returns dataset values or tree nodes per
    `pred_space`, or a (C, H, W) node score map; a `SamplePredictor` (labeltree.infer's
    `Model.predictor(dataset)`, what `evaluate --checkpoint` runs) says its own pred_space and gets the rules.
    `gtsdb_root`: the box dataset whose pixel counts the paper's class rule needs for Cityscapes Extended.

    Example::

        res = evaluate_folder("cityscapes", "/data/cityscapes", "results/", rules="official")
        res["mIoU"], res.table(), res.to_json()
    """
    reader, split, samples = _samples(dataset, gt_root, split, mask_mode)
    rules = rules_for(rules, reader.taxonomy.name)
    counts = paper_pixel_counts(reader, rules, hierarchy, gtsdb_root, mask_mode)
    model_run = isinstance(predict, SamplePredictor)  # labeltree.infer's: its own pred_space
    ev = Evaluator(reader.taxonomy if isinstance(dataset, Taxonomy) else dataset, hierarchy=hierarchy,
                   pred_space=predict.pred_space if model_run else pred_space, levels=levels, pixel_counts=counts,
                   protocol=rules)
    if predict is not None:
        n_images = _count_predicted(ev, reader, samples, predict, mask_mode)
    else:
        n_images = _count_files(ev, reader, samples, pred_dir, mask_mode, workers, progress)
    res = ev.result()
    res["split"] = split
    res["images"] = n_images
    if counts is not None:
        res["paper_rule"] = {"min_pixels": rules.min_pixels,
                             "size": list(rules.pixel_size) if rules.pixel_size else None,
                             "classes": [int(c) for c in ev.space.ids[ev.evaluated_now()]]}
    return EvaluationResult(res, ev)


def _is_boxes(dataset: str | Taxonomy) -> bool:
    tax = dataset if isinstance(dataset, Taxonomy) else load_taxonomy(dataset)
    return tax.annotation == "boxes"
