"""`labeltree train`, `labeltree predict`, `labeltree prepare`: thin click layer over `trainer`."""

from __future__ import annotations

from pathlib import Path

import click

from labeltree.commands._options import progress_option
from labeltree.errors import LabeltreeError


def _config(config: str, data_root: Path | None, sets: tuple[str, ...], steps: int | None):
    from labeltree.train.config import load_config

    overrides = list(sets) + ([f"train.steps={steps}"] if steps is not None else [])
    return load_config(config, overrides, data_root=data_root)


@click.command("train")
@click.argument("config")
@click.option("--data-root", type=click.Path(path_type=Path), help="Folder that relative dataset roots are under.")
@click.option("--out", "out", type=click.Path(path_type=Path), default=Path("runs/train"), show_default=True,
              help="Run folder: config.yaml, train.jsonl, metrics.jsonl, last.pt, best.pt.")
@click.option("--steps", type=int, help="Train until this step (overrides train.steps).")
@click.option("--resume", is_flag=True, help="Continue exactly from OUT/last.pt.")
@click.option("--force", is_flag=True, help="Start a new run in an OUT that holds one (its checkpoints and logs are "
                                            "replaced); without --resume or --force such an OUT is refused.")
@click.option("--init", "init", type=click.Path(path_type=Path), metavar="CKPT.pt",
              help="Fine-tune: start from this checkpoint's weights (not its optimiser, step or random state); it must "
                   "be of the config's tree (labeltree migrate makes one of a grown tree).")
@click.option("--init-weights", "init_weights", type=click.Choice(["ema", "raw"]),
              help="With --init: the checkpoint's moving average of the weights (its raw weights when it has none; "
                   "the default, as predict's) or its raw weights.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override a config value (dotted, YAML value), e.g. --set model.pretrained=r50.pth.")
@progress_option()
def train_cmd(config: str, data_root: Path | None, out: Path, steps: int | None, resume: bool, force: bool,
              init: Path | None, init_weights: str | None, sets: tuple[str, ...], progress: bool) -> None:
    """Train the hierarchical classifiers (or the flat baseline: --set model.kind=flat).

    CONFIG is a bundled name (paper, cpu-tiny) or a file (one with a slash or a .yaml suffix); a folder
    of that name here never replaces the bundled config. Multi-GPU / multi-process:
    `torchrun --nproc_per_node N -m labeltree train ...`.

    \b
    Example:
      labeltree synth data/synth
      labeltree train cpu-tiny --data-root data/synth --out runs/tiny --steps 200
      labeltree train cpu-tiny --data-root data/synth --out runs/tiny --steps 400 --resume
      labeltree train grown.yaml --data-root data/synth --out runs/grown --init grown.pt   (fine-tune)
    """
    from labeltree.train.config import check_init_options, check_run_folder

    if resume and force:
        raise LabeltreeError("--resume continues the run in --out, --force starts it over: give one of them")
    check_init_options(init, init_weights, resume, Path(out))
    cfg = _config(config, data_root, sets, steps)
    check_run_folder(out, resume, force)  # before torch is imported: a refusal takes no time
    from labeltree.train.loop import train

    r = train(cfg, out, resume=resume, force=force, progress=progress, log=click.echo, init=init,
              init_weights=init_weights or "ema")
    if r.losses:
        last = r.losses[-1]
        heads = " ".join(f"{k}={v:.4f}" for k, v in last["heads"].items())
        click.echo(f"step {last['step']}: loss {last['loss']:.4f} ({heads})")
    click.echo(f"checkpoints: {r.last or '-'} (last), {r.best or '-'} (best)")


@click.command("predict")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--out", "out", type=click.Path(path_type=Path), required=True,
              help="Output folder (a prediction folder: files named as this run's outputs are replaced; an input "
                   "image never is).")
@click.option("--dataset", help="Also write the ids of this dataset (e.g. cityscapes) as {dataset}/{stem}.png "
              "(evaluate with: labeltree evaluate DATASET GT_ROOT OUT/{dataset}).")
@click.option("--overlay", is_flag=True, help="Write {stem}_overlay.png (image blended with tree colours).")
@click.option("--levels", is_flag=True, help="Write {stem}_L{k}.png: the cascade stopped at each tree level.")
@click.option("--sliding-window", "sliding", is_flag=True, help="Crop-sized windows (1/3 overlap) instead of "
              "the whole image at once.")
@click.option("--no-colour", "no_colour", is_flag=True, help="With --dataset: skip the tree-colour PNG.")
@click.option("--device", help="cpu, cuda, cuda:1 (default: cuda when available).")
@click.option("--weights", type=click.Choice(["ema", "raw"]), default="ema", show_default=True,
              help="A .pt checkpoint's moving average of the weights (train.ema_decay; its raw weights when it has "
                   "none) or its raw weights.")
@click.option("--confidence", is_flag=True, help="Write {stem}_conf.png: each pixel's path confidence (product of the "
              "chosen probabilities along the cascade), 16-bit, 0..65535 = 0..1.")
@click.option("--confidence-npy", "confidence_npy", is_flag=True, help="Write {stem}_conf.npy: the same, float16.")
@click.option("--min-confidence", "min_confidence", type=float, metavar="T", help="Back off: each pixel stops at "
              "the deepest node whose path confidence is at least T (0..1; default 0 = the leaf; an .onnx: the "
              "threshold it was exported with).")
def predict_cmd(checkpoint: Path, inputs: tuple[Path, ...], out: Path, dataset: str | None, overlay: bool,
                levels: bool, sliding: bool, no_colour: bool, device: str | None, weights: str, confidence: bool,
                confidence_npy: bool, min_confidence: float | None) -> None:
    """Segment images with a trained checkpoint: per image a PNG in tree colours and/or dataset ids.

    CHECKPOINT is a .pt from `labeltree train`, or a .onnx from `labeltree export` (run with ONNX
    Runtime: the same files, no torch needed).

    \b
    Example:
      labeltree predict runs/tiny/best.pt data/synth/cityscapes/leftImg8bit/val -o preds --dataset cityscapes
      labeltree evaluate cityscapes data/synth/cityscapes preds/cityscapes --classes paper
    """
    if no_colour and not dataset:
        raise LabeltreeError("--no-colour needs --dataset (otherwise nothing would be written)")
    from labeltree.infer import predict_files  # torch only for a .pt

    files = predict_files(checkpoint, list(inputs), out, dataset=dataset, overlay=overlay, sliding=sliding,
                          levels=levels, colour=not no_colour, device=device, weights=weights,
                          log=lambda s: click.echo(s, err=True),
                          confidence=confidence, confidence_npy=confidence_npy, min_confidence=min_confidence)
    click.echo(f"wrote {len(files)} files to {out}")


@click.command("prepare")
@click.argument("config")
@click.option("--data-root", type=click.Path(path_type=Path))
@click.option("--out", "out", type=click.Path(path_type=Path), required=True,
              help="Cache folder; then train with --set train.cache=OUT.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE")
@click.option("--workers", type=click.IntRange(min=1), help="Processes (default: all cores).")
def prepare_cmd(config: str, data_root: Path | None, out: Path, sets: tuple[str, ...], workers: int | None) -> None:
    """Resize every training/validation image and label to its training scale once, into a cache.

    GTSDB boxes are rendered into coarse (box) and fine (shape) masks. Source data is never modified.

    \b
    Example:
      labeltree prepare paper --data-root /data --out /data/cache
      labeltree train paper --data-root /data --set train.cache=/data/cache
    """
    from labeltree.core.tree_file import load_hierarchy
    from labeltree.train.data import prepare_cache

    cfg = _config(config, data_root, sets, None)
    written = prepare_cache(cfg, load_hierarchy(cfg.hierarchy), out, workers)
    for w in written:
        click.echo(f"wrote {w}")


COMMANDS = [train_cmd, predict_cmd, prepare_cmd]
