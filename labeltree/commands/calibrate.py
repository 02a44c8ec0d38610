"""`labeltree calibrate`: one temperature per classifier, fitted on the config's val splits (issue 28)."""

from __future__ import annotations

from pathlib import Path

import click

from labeltree.errors import LabeltreeError


@click.command("calibrate")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.argument("config")
@click.option("--data-root", type=click.Path(path_type=Path), help="Folder that relative dataset roots are under.")
@click.option("-o", "--out", "out", type=click.Path(path_type=Path), required=True,
              help="The calibrated checkpoint (.pt): the same weights with 'temperatures'.")
@click.option("--plot", type=click.Path(path_type=Path), help="Reliability diagram PNG (default: OUT with .png).")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:1.")
@click.option("--force", is_flag=True, help="Replace OUT / --plot if they exist.")
def calibrate_cmd(checkpoint: Path, config: str, data_root: Path | None, out: Path, plot: Path | None, device: str,
                  force: bool) -> None:
    """Fit one temperature per classifier (logits / T) on the val splits of CONFIG: the NLL over the pixels
    that supervise that classifier in training (one with too few such pixels keeps T = 1). Prints NLL and
    15-bin ECE per classifier before and after with its pixel count, and a note where the pixels are too few for
    the numbers to mean much; predict, evaluate --checkpoint and export use the temperatures of OUT (path
    confidence, --min-confidence).

    \b
    Example:
      labeltree calibrate runs/tiny/best.pt cpu-tiny --data-root data/synth -o runs/tiny/calibrated.pt
    """
    from labeltree.fsutil import check_outputs, refuse_replacing_inside
    from labeltree.train.calibrate import calibrate_checkpoint, row_note

    plot = plot or out.with_suffix(".png")
    if out.suffix.lower() != ".pt":
        raise LabeltreeError("-o: the calibrated checkpoint must end in .pt", out)
    config_file = [Path(config)] if Path(config).exists() else []  # a bundled config name is no file here
    check_outputs({"-o": out, "--plot": plot}, [checkpoint, *config_file], force)
    refuse_replacing_inside({"-o": out, "--plot": plot}, [data_root])
    if plot.suffix.lower() != ".png":
        raise LabeltreeError("--plot: the reliability diagram is a PNG; give a name ending in .png", plot)
    rows = calibrate_checkpoint(checkpoint, config, out, data_root, plot, device)
    click.echo(f"{'classifier':<28} {'pixels':>9} {'T':>7} {'NLL before':>10} {'after':>7} {'ECE before':>10} "
               f"{'after':>7}  note")
    for r in rows:
        click.echo(f"{r['classifier'][:28]:<28} {r['pixels']:>9} {r['temperature']:>7.3f} {r['nll_before']:>10.4f} "
                   f"{r['nll_after']:>7.4f} {r['ece_before']:>10.4f} {r['ece_after']:>7.4f}  {row_note(r)}".rstrip())
    click.echo(f"wrote {out} and {plot}")


COMMANDS = [calibrate_cmd]
