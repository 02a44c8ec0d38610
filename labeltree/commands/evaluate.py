"""`labeltree evaluate`: per-dataset (and per tree level) mIoU / mPA of a folder of predictions.

A thin layer over `labeltree.evaluate.folder.evaluate_folder` (the table and plot: `EvaluationResult`);
the rules are resolved once here (`resolve_rules`) and passed down. Predictions come from PRED_DIR or,
with `--checkpoint`, straight from a trained model (`labeltree.infer.open_model(...).predictor`,
the only path that imports torch).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from labeltree.commands._options import parse_size, progress_option, split_names, tree_option
from labeltree.errors import LabeltreeError
from labeltree.evaluate.protocols import DEFAULT_EVAL_SIZE, DROPS, PROTOCOLS
from labeltree.vocab import DEFAULT_MASK_MODE, DEFAULT_MIN_PIXELS, MODES


def _gtsdb_size(text: str) -> tuple[int, int] | None:
    """--gtsdb-size WIDTHxHEIGHT (or 'native') -> the (height, width) the evaluator resizes to."""
    wh = parse_size(text, "--gtsdb-size", allow_native=True)
    return None if wh is None else (wh[1], wh[0])


def _eval_size(text: str | None, protocol: str = "official") -> str | tuple[int, int]:
    """--eval-size: 'native', 'paper' or WIDTHxHEIGHT -> the rules' name or (height, width); none given: the
    protocol's (paper: the authors' network size, official: native)."""
    if text is None:
        return DEFAULT_EVAL_SIZE[protocol]
    t = text.strip().lower()
    if t in ("native", "paper"):
        return t
    wh = parse_size(text, "--eval-size (native, paper or WIDTHxHEIGHT)")
    assert wh is not None
    return wh[1], wh[0]


def _risk_coverage(kw: dict[str, Any], inputs: list[Path]) -> None:
    """`--risk-coverage PREFIX`: the selective-prediction sweep of a .pt (labeltree.infer.selective)."""
    from labeltree.fsutil import check_outputs
    from labeltree.infer.selective import area, selective_sweep, write_sweep

    if kw["checkpoint"] is None or Path(kw["checkpoint"]).suffix.lower() == ".onnx":
        raise LabeltreeError("--risk-coverage needs a .pt --checkpoint (the sweep runs the cascade at each threshold)")
    unused = {"--min-confidence": kw["min_confidence"] is not None, "-o": kw["output"] is not None,
              "--plot-confusion": kw["plot_confusion"] is not None, "--sliding-window": kw["sliding_window"],
              "--levels": kw["levels"], "--format json": kw["fmt"] == "json",
              "--eval-size": kw["eval_size"] is not None and str(kw["eval_size"]).strip().lower() != "native"}
    for opt, given in unused.items():  # the sweep would ignore them: a result the user did not ask for
        if given:
            raise LabeltreeError(f"--risk-coverage: {opt} does not apply to the sweep (it sweeps every threshold "
                                 "over whole images at their own size, into PREFIX.csv and PREFIX.png); drop it")
    prefix = Path(kw["risk_coverage"])
    if prefix.name in ("", ".", ".."):
        raise LabeltreeError(f"--risk-coverage {str(prefix)!r}: expected a file prefix like runs/rc "
                             "(writes runs/rc.csv and runs/rc.png)")
    if prefix.is_dir():
        raise LabeltreeError(f"--risk-coverage {str(prefix)!r} is a folder; give a file prefix inside it like "
                             f"{prefix / 'rc'} (writes rc.csv and rc.png there)")
    csv, png = prefix.with_name(prefix.name + ".csv"), prefix.with_name(prefix.name + ".png")
    check_outputs({"--risk-coverage CSV": csv, "--risk-coverage PNG": png}, inputs, kw["force"])
    rows = selective_sweep(kw["checkpoint"], kw["dataset"], kw["gt_root"], kw["split"], weights=kw["weights"])
    write_sweep(rows, csv, png)
    click.echo(f"{'T':>5} {'coverage':>9} {'acc@full':>9} {'coarse ok':>9} {'wrong':>7} {'sign@full':>10}")
    for r in rows:
        signs = f"{r['sign_full']}/{r['sign_pixels']}"
        click.echo(f"{r['T']:>5g} {r['coverage']:>9.4f} {r['accuracy_full']:>9.4f} {r['coarse_right']:>9.4f} "
                   f"{r['wrong']:>7.4f} {signs:>10}")
    click.echo(f"risk-coverage area {area(rows):.4f}; wrote {csv} and {png}")


@click.command("evaluate")
@click.argument("dataset")
@click.argument("gt_root", type=click.Path(path_type=Path))
@click.argument("pred_dir", type=click.Path(path_type=Path), required=False)
@click.option("--split", default=None, callback=split_names,
              help="Split to evaluate (default: val, or test where there is no val).")
@click.option("--pred-space", type=click.Choice(["dataset", "tree"]), default="dataset", show_default=True,
              help="Predictions hold the dataset's own ids (Cityscapes labelIds, Vistas indices, GTSDB 2000+k) or "
                   "tree node indices (16-bit PNG), projected with the tree's evaluation mapping.")
@tree_option("hierarchy_ref", "Tree; default: where one is needed, the smallest bundled tree that maps DATASET.")
@click.option("--levels", is_flag=True, help="Also report every tree level (needs the tree).")
@click.option("--protocol", type=click.Choice(PROTOCOLS), default="official", show_default=True,
              help="official: the dataset's official tool exactly (Cityscapes: cityscapesScripts, 19 classes, mean "
                   "over classes with a defined IoU; Vistas: the mapillary_vistas script, 65 classes, non-evaluated "
                   "predictions dropped); GTSDB / Cityscapes Extended have none and use paper. paper: the authors' "
                   "code (Cityscapes 27, GTSDB 28, Cityscapes Extended 18 by the pixel rules; mean over classes "
                   "present in the gt; predictions of classes the dataset lacks dropped; flat sign rule).")
@click.option("--classes", default=None,
              help="Override the protocol's class set: official (Cityscapes 19, Vistas 65), paper (Cityscapes 27, "
                   "GTSDB 28 by the pixel rule), all, or class ids '7,8,26'.")
@click.option("--paper-protocol", is_flag=True, default=None,
              help="Override: drop predictions of classes the dataset lacks and use the flat sign rule (part of "
                   "--protocol paper).")
@click.option("--drop", type=click.Choice(DROPS), default=None,
              help="Override which predictions are dropped (neither error nor union): none, foreign (classes the "
                   "dataset lacks), unevaluated (every non-evaluated label, Vistas' tool).")
@click.option("--mean-over", type=click.Choice(["gt", "defined"]), default=None,
              help="Override the mean: over classes present in the gt (paper) or with a defined IoU (official tools).")
@click.option("--gtsdb-root", type=click.Path(path_type=Path), default=None,
              help="Cityscapes Extended under the paper's class rule: the GTSDB root whose train and test pixel "
                   "counts the rule needs.")
@click.option("--gtsdb-size", default="850x512", show_default=True, metavar="WxH",
              help="--classes paper on GTSDB: frame size WIDTHxHEIGHT at which the >= --min-pixels rule is "
                   "counted (the authors train on GTSDB resized to 850 wide, 512 high; 'native' = no resize).")
@click.option("--eval-size", default=None, metavar="native|paper|WxH",
              help="Size gt and predictions are scored at: native (each label's own), paper (706x512, the authors' "
                   "network size: photos resized to it, labels nearest-resized, aspect not kept) or WIDTHxHEIGHT. "
                   "Default: paper under --protocol paper, native under official; the table and JSON say which.")
@click.option("--min-pixels", type=click.IntRange(min=0), default=DEFAULT_MIN_PIXELS, show_default=True,
              help="--classes paper on GTSDB: pixels a class needs in both splits.")
@click.option("--gtsdb-mask", type=click.Choice(MODES), default=DEFAULT_MASK_MODE, show_default=True,
              help="GTSDB ground truth: sign shapes in the boxes (fine) or filled boxes (coarse).")
@click.option("--checkpoint", type=click.Path(path_type=Path), default=None,
              help="Predict with this trained checkpoint (labeltree train), or a .onnx model (labeltree export), "
                   "instead of reading PRED_DIR.")
@click.option("--weights", type=click.Choice(["ema", "raw"]), default="ema", show_default=True,
              help="A .pt checkpoint's moving average of the weights (train.ema_decay; its raw weights when it has "
                   "none) or its raw weights.")
@click.option("--sliding-window", is_flag=True, help="With --checkpoint: crop-sized windows instead of whole images.")
@click.option("--min-confidence", "min_confidence", type=float, default=None, metavar="T",
              help="With --checkpoint: back off to the deepest node whose path confidence is at least T (0..1); a "
                   "backed-off pixel counts as the dataset's class at that node, else its no-class value.")
@click.option("--risk-coverage", "risk_coverage", type=click.Path(path_type=Path), default=None, metavar="PREFIX",
              help="With a .pt --checkpoint: sweep --min-confidence over 0..0.99 and write PREFIX.csv (coverage = "
                   "share of pixels at full depth, their accuracy, correct-but-coarse vs wrong) and PREFIX.png (the "
                   "risk-coverage curve, its area in the title) instead of the usual scores.")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Processes (default: all cores).")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="Write the results as JSON (an existing file only with --force).")
@click.option("--force", is_flag=True, help="Replace an existing -o / --plot-confusion file (checked first).")
@click.option("--plot-confusion", type=click.Path(path_type=Path), default=None,
              help="Write the confusion matrix as a PNG (log colour scale).")
@click.option("--quiet", is_flag=True, help="No table on stdout (JSON only with -o), no progress bar.")
@progress_option()
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="stdout: the table, or the JSON that -o writes.")
def evaluate_cmd(**kw: Any) -> None:
    """Evaluate predictions against a dataset split: per-class IoU / PA, mIoU, mPA, per tree level.

    Predictions are single-channel PNGs (or .npy) of the dataset's stored values anywhere under PRED_DIR,
    matched to the ground truth by file name. --protocol names the whole rule set (class set, mean,
    dropped predictions, flat sign rule, decision path); the table and the JSON say which protocol and
    rules produced the numbers. Single options override single rules.

    \b
    Per layout: prediction file names, and the classes `official` evaluates:
      cityscapes           {city}_{seq}_{frame}*.png      19 (cityscapesScripts)
      cityscapes-extended  as cityscapes                  paper rules (no official tool)
      vistas               {label stem}.png               65 (v1.2); vistas-v2.0: 123
      gtsdb                {frame stem}.png (00600.png)   paper rules: 28 of 43 (no official tool)
      bdd100k              {image name}.png               19 (bdd100k eval/seg.py)
      idd                  {seq}/{frame}_*.png            26 level-3 classes (evaluate_mIoU.py)
                           or {seq}_{frame}_*.png

    \b
    Examples:
      labeltree evaluate cityscapes /data/cityscapes results/ -o cs.json
      labeltree evaluate cityscapes /data/cityscapes results/ --protocol paper
      labeltree evaluate cityscapes-extended /data/cs-ext preds/ --protocol paper --gtsdb-root /data/FullIJCNN2013
      labeltree evaluate vistas /data/vistas preds/ --pred-space tree --levels
      labeltree evaluate gtsdb /data/FullIJCNN2013 preds/ --plot-confusion cm.png

    DATASET is a bundled name or a taxonomy path (one with a slash or a .yaml suffix); a folder of that
    name here never replaces the bundled one.
    """
    from labeltree.core.taxonomy import load_taxonomy
    from labeltree.core.tree_extends import tree_files
    from labeltree.evaluate.folder import evaluate_folder, tree_for
    from labeltree.evaluate.protocols import resolve_rules
    from labeltree.fsutil import check_outputs, refuse_replacing_inside, write_text

    inputs = [p for p in (kw["gt_root"], kw["pred_dir"], kw["checkpoint"]) if p is not None] + \
        tree_files(kw["hierarchy_ref"])  # --tree with its extends / include files
    if kw["risk_coverage"] is not None:
        _risk_coverage(kw, inputs)
        return
    check_outputs({"-o": kw["output"], "--plot-confusion": kw["plot_confusion"]}, inputs, kw["force"])
    refuse_replacing_inside({"-o": kw["output"], "--plot-confusion": kw["plot_confusion"]},
                            [kw["gt_root"], kw["pred_dir"]])
    predict = None
    hierarchy = None
    if kw["checkpoint"] is not None:  # a .pt (torch) or an .onnx (ONNX Runtime, no torch)
        from labeltree.infer import open_model

        model = open_model(kw["checkpoint"], weights=kw["weights"]).set_confidence(kw["min_confidence"])
        predict = model.predictor(
            kw["dataset"], kw["pred_space"], kw["sliding_window"], kw["hierarchy_ref"])
        hierarchy = predict.hierarchy  # the model's own tree (a .pt; an .onnx predicting tree nodes), else None
    elif kw["pred_dir"] is None:
        raise LabeltreeError("give PRED_DIR, the folder of prediction files (or --checkpoint)")
    elif kw["min_confidence"] is not None:
        raise LabeltreeError("--min-confidence needs --checkpoint (prediction files have no confidences)")
    rules = resolve_rules(kw["protocol"], load_taxonomy(kw["dataset"]).name, kw["classes"], kw["mean_over"],
                          kw["drop"], paper_protocol=kw["paper_protocol"], min_pixels=kw["min_pixels"],
                          pixel_size=_gtsdb_size(kw["gtsdb_size"]),
                          eval_size=_eval_size(kw["eval_size"], kw["protocol"]))
    if hierarchy is None:
        hierarchy = tree_for(rules, kw["dataset"], kw["hierarchy_ref"], kw["pred_space"], kw["levels"])
    res = evaluate_folder(kw["dataset"], kw["gt_root"], kw["pred_dir"], kw["split"], rules=rules, predict=predict,
                          hierarchy=hierarchy, pred_space=kw["pred_space"], levels=kw["levels"],
                          gtsdb_root=kw["gtsdb_root"], mask_mode=kw["gtsdb_mask"], workers=kw["workers"],
                          progress=kw["progress"] and not kw["quiet"])
    if predict is not None:  # what made the predictions: two thresholds gave JSON files that could not be told apart
        res.data["model"] = {"checkpoint": str(kw["checkpoint"]), "sliding_window": kw["sliding_window"],
                             "min_confidence": getattr(model, "min_confidence", None),
                             **({"weights": kw["weights"]} if Path(kw["checkpoint"]).suffix.lower() == ".pt" else {})}
    if kw["fmt"] == "json":
        click.echo(res.to_json())
    elif not kw["quiet"]:
        click.echo(res.table())
    if kw["output"] is not None:
        write_text(kw["output"], res.to_json())
        click.echo(f"wrote {kw['output']}", err=True)
    if kw["plot_confusion"] is not None:
        res.plot_confusion(kw["plot_confusion"])
        click.echo(f"wrote {kw['plot_confusion']}", err=True)


COMMANDS = [evaluate_cmd]
