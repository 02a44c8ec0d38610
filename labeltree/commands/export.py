"""`labeltree export`: a trained checkpoint -> one self-contained ONNX model (cascade inside)."""

from __future__ import annotations

from pathlib import Path

import click

from labeltree.commands._options import parse_size
from labeltree.errors import LabeltreeError


@click.command("export")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--output", "output", default="leaves", show_default=True, metavar="KIND",
              help="What the graph ends in: leaves (tree node ids), levels (one node map per tree level), "
                   "dataset:NAME (that dataset's own ids, e.g. dataset:cityscapes = labelIds) or scores (each "
                   "classifier's probabilities).")
@click.option("--size", metavar="WxH", help="Fixed input size WIDTHxHEIGHT (e.g. 706x512, for TensorRT); batch 1 "
                                           "unless --batch.")
@click.option("--dynamic", is_flag=True, help="Any batch and image size (the default without --size / --batch).")
@click.option("--batch", type=int, help="Fixed batch size (1..256).")
@click.option("--opset", type=int, default=17, show_default=True, help="ONNX opset (13 to the exporter's newest).")
@click.option("--layout", type=click.Choice(["nchw", "nhwc"]), default="nchw", show_default=True,
              help="uint8 input layout: N,3,H,W or N,H,W,3 (RGB).")
@click.option("--force", is_flag=True, help="Replace OUT if it exists.")
@click.option("--weights", type=click.Choice(["ema", "raw"]), default="ema", show_default=True,
              help="A .pt checkpoint's moving average of the weights (train.ema_decay; its raw weights when it has "
                   "none) or its raw weights.")
@click.option("--min-confidence", "min_confidence", type=float, default=0.0, show_default=True, metavar="T",
              help="Back off in the graph: each pixel stops at the deepest node whose path confidence (product of "
                   "the chosen probabilities) is at least T (0..1; 0 = always the leaf).")
@click.option("--confidence", is_flag=True, help="Add a float32 'confidence' output: each pixel's path confidence.")
def export_cmd(checkpoint: Path, out: Path, output: str, size: str | None, dynamic: bool, batch: int | None,
               opset: int, layout: str, force: bool, weights: str, min_confidence: float, confidence: bool) -> None:
    """Export a checkpoint to ONNX: uint8 images in, normalisation, network, argmax and the hard
    cascade inside the graph; tree name + hash, id -> name, mean / std and layout in its metadata.

    Run it with `labeltree predict OUT.onnx ...`, `labeltree evaluate ... --checkpoint OUT.onnx`,
    or ONNX Runtime / TensorRT alone. Needs the deploy extra: pip install 'labeltree[deploy]'.

    \b
    Example:
      labeltree export runs/tiny/best.pt tiny.onnx
      labeltree export runs/tiny/best.pt cs.onnx --output dataset:cityscapes --size 1024x512
      labeltree predict tiny.onnx data/synth/cityscapes/leftImg8bit/val -o preds --dataset cityscapes
    """
    from labeltree.export.graph import export_onnx
    from labeltree.fsutil import hold_output

    if dynamic and (size or batch is not None):
        raise LabeltreeError("--dynamic: give either --dynamic or a fixed --size / --batch, not both")
    wh = parse_size(size, "--size") if size else None
    hw = None if wh is None else (wh[1], wh[0])  # the exporter takes (height, width), as tensors are laid out
    if hw is not None and batch is None:
        batch = 1
    hold_output(out, "OUT")  # a second export onto OUT is refused while this one runs
    r = export_onnx(checkpoint, out, output=output, size=hw, batch=batch, opset=opset, layout=layout, force=force,
                    weights=weights, min_confidence=min_confidence, confidence=confidence)
    shape = "x".join(str(s) for s in r.input_shape)
    outs = ", ".join(f"{o['name']} ({o['dtype']})" for o in r.outputs)
    click.echo(f"wrote {r.path}: images uint8 {layout.upper()} {shape} -> {outs}; opset {r.opset}")


COMMANDS = [export_cmd]
