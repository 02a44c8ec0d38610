"""The Python API: `import labeltree as lt` and each task of the command line is one call.

Every function imports its machinery on first call (nothing here at import time), so `import labeltree`
stays light: no torch, pandas or matplotlib until a function that needs them runs. The trainer's
entry points (`train`, `predict`) need the `[train]` extra (torch); a `.onnx` model predicts with
ONNX Runtime alone.

    import labeltree as lt
    tree = lt.load_tree("cityscapes+vistas+gtsdb")
    lt.synthesize("data/synth", images=4)
    res = lt.evaluate("cityscapes", "data/synth/cityscapes", "preds/cityscapes")
    print(res.miou, res.table())
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from labeltree.convert import ConvertReport
    from labeltree.core.hierarchy import Hierarchy
    from labeltree.core.merge import MergeResult
    from labeltree.core.taxonomy import Taxonomy
    from labeltree.core.tree_diff import TreeDiff
    from labeltree.datasets.base import DatasetReader, Sample
    from labeltree.evaluate.protocols import Rules
    from labeltree.evaluate.result import EvaluationResult
    from labeltree.stats.report import Report
    from labeltree.synth.runner import SynthResult
    from labeltree.train.loop import RunResult
    from labeltree.train.migrate import Migration

__all__ = ["convert", "evaluate", "load_tree", "merge", "migrate", "open_dataset", "predict", "read_label", "stats",
           "synthesize", "train", "tree_diff"]


def load_tree(ref: str | Path = "cityscapes+vistas+gtsdb") -> Hierarchy:
    """A tree by bundled name or tree-file path (a name of datasets gets the smallest bundled tree covering them).

    Example::

        tree = lt.load_tree("cityscapes+vistas+gtsdb")
        [c.node for c in tree.classifiers][:2], tree.mapping("gtsdb").is_boxes
    """
    from labeltree.core.tree_file import load_hierarchy

    return load_hierarchy(ref)


def merge(datasets: Sequence[str | Path], rules: str | Path | None = None) -> MergeResult:
    """Merge label spaces (taxonomy names or files) into one tree, with conflicts listed (`labeltree merge`).

    Example::

        m = lt.merge(["cityscapes", "vistas", "gtsdb"])   # the bundled tree that covers them
    """
    from labeltree.core.merge import merge as _merge

    return _merge(datasets, rules)


def open_dataset(dataset: str | Path | Taxonomy, root: str | Path, **options: Any) -> DatasetReader:
    """A reader of a dataset folder in its native layout: `.splits()`, `.samples(split)`, `.taxonomy`.

    Options: `unknown="ignore"` (unknown label values -> the no-class value), GTSDB `mask_mode`, `gt`.

    Example::

        reader = lt.open_dataset("cityscapes", "data/synth/cityscapes")
        sample = reader.samples("val")[0]
    """
    from labeltree.datasets.registry import open_dataset as _open

    return _open(dataset, root, **options)


def read_label(sample: Sample, taxonomy: Taxonomy | str | None = None, **options: Any) -> np.ndarray:
    """A sample's stored label values (H x W); box datasets rendered as masks. `taxonomy`: default the sample's.

    Example::

        labels = lt.read_label(reader.samples("val")[0])    # uint8 Cityscapes labelIds
    """
    from labeltree.core.taxonomy import Taxonomy, load_taxonomy
    from labeltree.datasets.base import read_label as _read

    tax = taxonomy if isinstance(taxonomy, Taxonomy) else load_taxonomy(taxonomy or sample.dataset)
    return _read(sample, tax, **options)


def evaluate(dataset: str, gt_root: str | Path, predictions: str | Path | None = None, split: str | None = None, *,
             rules: Rules | str = "official", tree: str | Path | Hierarchy | None = None, levels: bool = False,
             pred_space: str = "dataset", gtsdb_root: str | Path | None = None, workers: int | None = None,
             progress: bool = False, **overrides: Any) -> EvaluationResult:
    """Evaluate a folder of predictions on one split, as `labeltree evaluate` does (the same numbers).

    `rules`: a protocol name ("official" = the dataset's tool, "paper" = the authors' rules) with
    single `overrides` (classes, mean_over, drop, sign_rule, min_pixels, pixel_size, eval_size: default the
    protocol's, "paper" under paper and "native" under official, as the command), or a `Rules`
    object from `labeltree.evaluate.protocols.resolve_rules`. `tree`: where one is needed and none is
    given, the smallest bundled tree mapping the dataset. Returns the numbers (`.miou`, `.classes`,
    `.levels`), `.table()` (the printed table) and `.to_json()` (the `-o` file).

    Example::

        res = lt.evaluate("cityscapes", "data/cityscapes", "preds/", rules="paper", levels=True)
        print(res.miou, res.levels[1]["mIoU"]); print(res.table())
    """
    from labeltree.core.hierarchy import Hierarchy
    from labeltree.core.taxonomy import load_taxonomy
    from labeltree.evaluate.folder import evaluate_folder, tree_for
    from labeltree.evaluate.protocols import DEFAULT_EVAL_SIZE, rules_for

    name = load_taxonomy(dataset).name
    if isinstance(rules, str) and overrides.get("eval_size") is None:  # the protocol's size, as the command's
        overrides["eval_size"] = DEFAULT_EVAL_SIZE.get(rules, "native")
    resolved = rules_for(rules, name, **overrides)
    h = tree if isinstance(tree, Hierarchy) else tree_for(resolved, dataset, tree, pred_space, levels)
    return evaluate_folder(dataset, gt_root, predictions, split, rules=resolved, hierarchy=h, pred_space=pred_space,
                           levels=levels, gtsdb_root=gtsdb_root, workers=workers, progress=progress)


def stats(dataset: str, root: str | Path, splits: Sequence[str] | None = None, *, tree: str | Path | None = None,
          min_pixels: int | None = None, workers: int | None = None, progress: bool = False,
          **options: Any) -> Report:
    """Class statistics of a dataset (`labeltree stats`): Table I rows, per-class pixels and weights, tree roll-up.

    `tree`: default the smallest bundled tree mapping the dataset, "none" for none. `options` go to
    `labeltree.stats.collect.collect_stats` (cache, mask_mode, unknown, instances, ...).

    Example::

        rep = lt.stats("cityscapes", "data/synth/cityscapes", ["train"])
        rep.summary[0]["images"], rep.classes[0]["pixels"]
    """
    from labeltree.core.taxonomy import load_taxonomy
    from labeltree.evaluate.metrics import DEFAULT_MIN_PIXELS
    from labeltree.stats.collect import collect_stats, resolve_hierarchy
    from labeltree.stats.report import build_report

    h = resolve_hierarchy(tree, load_taxonomy(dataset))
    split_list = [splits] if isinstance(splits, str) else list(splits) if splits else None  # "train": one split
    groups = collect_stats(dataset, root, split_list, hierarchy=h, workers=workers,
                           progress=progress, **options)
    return build_report(groups, h, DEFAULT_MIN_PIXELS if min_pixels is None else min_pixels)


def convert(dataset: str, root: str | Path, out: str | Path, to: str, *, tree: str | Path | None = None,
            progress: bool = False, **options: Any) -> ConvertReport:
    """Convert a dataset's labels into another label space through the tree (`labeltree convert`).

    `to`: a dataset (`cityscapes`, `cityscapes:trainids`, `vistas`) or `tree:LEVEL`; `tree`: default the
    smallest bundled tree mapping source and target. Never writes under `root`.

    Example::

        rep = lt.convert("vistas", "data/synth/vistas", "data/vistas-as-cs", to="cityscapes")
        rep.written
    """
    from labeltree.convert import conversion_tree, convert_dataset

    return convert_dataset(dataset, root, out, to, hierarchy=tree or conversion_tree(dataset, to), progress=progress,
                           **options)


def synthesize(out: str | Path, images: int = 50, *, seed: int = 0, size: tuple[int, int] = (256, 128),
               tree: str | None = None, progress: bool = False, **options: Any) -> SynthResult:
    """Synthetic street scenes of every dataset of a tree in their native layouts (`labeltree synth`).

    `size` is (W, H); `tree` default the paper's. Returns counts per dataset.

    Example::

        lt.synthesize("data/synth", images=4, seed=1)    # data/synth/{cityscapes,vistas,gtsdb,...}
    """
    from labeltree.synth.runner import synthesize as _synth
    from labeltree.synth.world import HIERARCHY

    return _synth(out, images=images, seed=seed, size=size, hierarchy=tree or HIERARCHY, progress=progress,
                  **options)


def train(config: str | Path, out: str | Path, *, data_root: str | Path | None = None,
          overrides: Sequence[str] = (), resume: bool = False, force: bool = False, progress: bool = True,
          log: Any = print, init: str | Path | None = None, init_weights: str | None = None) -> RunResult:
    """Train the hierarchical classifiers (`labeltree train`; needs torch, the `[train]` extra).

    `config`: a bundled config name or YAML file; `overrides`: dotted "key=value" settings; `init`: fine-tune from
    that checkpoint's weights (`init_weights`: "ema", the default, or "raw"; `train --init`).

    Example::

        run = lt.train("cpu-tiny", "runs/tiny", data_root="data/synth", overrides=["train.steps=20"])
        run.best    # path of the best checkpoint
    """
    from labeltree.train.config import check_init_options, check_run_folder, load_config

    check_init_options(init, init_weights, resume, Path(out))
    cfg = load_config(config, list(overrides), data_root=data_root)
    check_run_folder(Path(out), resume, force)  # before torch is imported: a refusal takes no time
    from labeltree.train.loop import train as _train

    return _train(cfg, out, resume=resume, force=force, progress=progress, log=log, init=init,
                  init_weights=init_weights or "ema")


def predict(checkpoint: str | Path, inputs: str | Path | Sequence[str | Path], out: str | Path, *,
            dataset: str | None = None, overlay: bool = False, sliding: bool = False, levels: bool = False,
            colour: bool = True, device: str | None = None, weights: str = "ema", confidence: bool = False,
            confidence_npy: bool = False, min_confidence: float | None = None, progress: bool = True) -> list[Path]:
    """Segment images with a `.pt` checkpoint (torch) or an exported `.onnx` model (`labeltree predict`: the same
    files, byte for byte); returns the paths written.

    Per image the tree-colour `{stem}_tree.png`; with `dataset` the dataset's ids as `out/{dataset}/{stem}.png`
    (ready for `lt.evaluate`); `overlay`, `levels` (`{stem}_L{k}.png`), `sliding` windows, `colour=False` (ids
    only), `weights` ("ema" or "raw", a `.pt`). Confidence (issue 28): `confidence` writes `{stem}_conf.png`, the
    path confidence per pixel (16-bit, 0..65535 = 0..1), `confidence_npy` `{stem}_conf.npy` (float16);
    `min_confidence` T backs each pixel off to the deepest node at least T sure (None: 0 for a `.pt`, an `.onnx`'s
    exported threshold). A checkpoint written by `labeltree calibrate` applies its temperatures, as the command does.

    Example::

        lt.predict("runs/tiny/best.pt", ["data/synth/cityscapes/leftImg8bit/val"], "preds", dataset="cityscapes")
        lt.predict("runs/tiny/calibrated.pt", "photo.png", "out", confidence=True, min_confidence=0.8)
    """
    from labeltree.core.confidence import check_min_confidence
    from labeltree.errors import LabeltreeError
    from labeltree.infer import predict_files  # torch only for a .pt

    for name, flag in (("confidence", confidence), ("confidence_npy", confidence_npy)):
        if not isinstance(flag, bool):  # confidence="no" wrote the confidence files
            raise LabeltreeError(f"{name}={flag!r}: expected True or False")
    if min_confidence is not None:
        check_min_confidence(min_confidence)  # before any model or image is read
    paths = [inputs] if isinstance(inputs, str | Path) else list(inputs)  # one path, not its characters
    return predict_files(checkpoint, paths, out, dataset=dataset, overlay=overlay, sliding=sliding, levels=levels,
                         colour=colour, device=device, weights=weights, confidence=confidence,
                         confidence_npy=confidence_npy, min_confidence=min_confidence, progress=progress)


def migrate(checkpoint: str | Path, tree: str | Path, out: str | Path, *, rename: Sequence[str] = (),
            drop: Sequence[str] = (), seed: int = 0, force: bool = False) -> Migration:
    """Map a trained checkpoint onto an edited tree by node names (`labeltree migrate`; needs torch): old
    predictions stay, new classifiers and rows are ready to fine-tune. `rename`: "OLD=NEW" node names; `drop`:
    old nodes whose logits go. The result records what is new under "migration" (new_heads, new_rows).

    Example::

        m = lt.migrate("runs/paper/best.pt", "cityscapes+vistas+gtsdb+idd", "runs/idd/init.pt")
        print(m.table(), m.record["new_rows"])
    """
    from labeltree.core.tree_extends import tree_files
    from labeltree.fsutil import check_output

    check_output(Path(out), "out", [checkpoint, *tree_files(tree)], force)
    from labeltree.train.migrate import migrate as _migrate

    return _migrate(checkpoint, tree, out, rename=rename, drop=drop, seed=seed)


def tree_diff(old: str | Path | Hierarchy, new: str | Path | Hierarchy) -> TreeDiff:
    """Per dataset of two trees: which classes keep their node and which moved (`labeltree tree-diff`), so that
    you know which evaluation numbers stay comparable across the change.

    Example::

        d = lt.tree_diff("cityscapes+vistas+gtsdb", "cityscapes+vistas-v2.0+gtsdb")
        print(d.table(), d.to_json()["removed_datasets"])
    """
    from labeltree.core.hierarchy import Hierarchy
    from labeltree.core.tree_diff import tree_diff as _diff
    from labeltree.core.tree_file import load_hierarchy

    a, b = (t if isinstance(t, Hierarchy) else load_hierarchy(t) for t in (old, new))
    return _diff(a, b)
