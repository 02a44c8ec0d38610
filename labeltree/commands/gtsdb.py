"""`labeltree gtsdb-masks`: per-pixel GTSDB masks from gt.txt boxes."""

from __future__ import annotations

import warnings
from pathlib import Path

import click

from labeltree.commands._options import progress_option
from labeltree.vocab import DEFAULT_MASK_MODE, DEFAULT_STYLE, ENCODINGS, MODES, STYLES


@click.command("gtsdb-masks")
@click.argument("gtsdb_dir", type=click.Path(path_type=Path))
@click.argument("out_dir", type=click.Path(path_type=Path))
@click.option("--mode", type=click.Choice(MODES), default=DEFAULT_MASK_MODE, show_default=True,
              help="'fine': the sign's shape inscribed in its box; 'coarse': the filled box.")
@click.option("--gt", type=click.Path(path_type=Path), default=None,
              help="Ground-truth file (default: GTSDB_DIR/gt.txt).")
@click.option("--encoding", type=click.Choice(ENCODINGS), default="16bit", show_default=True,
              help="'16bit': 0 = unlabeled, 2000 + ClassID; '8bit': ClassID, 255 = unlabeled.")
@click.option("--style", type=click.Choice(STYLES), default=DEFAULT_STYLE, show_default=True,
              help="'clean': exact shapes, smaller sign on top; 'authors': the authors' released masks (Pillow<5.2 "
                   "rasteriser, truncated corners, last gt.txt line on top, duplicates painted twice).")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Processes (default: all CPUs).")
@click.option("--skip-existing", is_flag=True, help="Keep masks already in OUT_DIR (resume an interrupted run).")
@click.option("--force", is_flag=True, help="Replace masks already in OUT_DIR (without it, or --skip-existing, an "
                                            "existing mask stops the run before anything is written).")
@progress_option("--quiet")
def gtsdb_masks_cmd(gtsdb_dir: Path, out_dir: Path, mode: str, gt: Path | None, encoding: str, style: str,
                    workers: int | None, skip_existing: bool, force: bool, progress: bool) -> None:
    """Write one mask PNG per GTSDB frame: OUT_DIR/{stem}_labelIds.png.

    Frames without signs get an all-unlabeled mask; where boxes overlap the smaller sign is on top.
    Frame sizes are read from the image headers; boxes reaching outside a frame are clipped
    (reported), duplicate gt.txt lines are reported and drawn once. `--style authors` reproduces
    the authors' released masks instead: their rasteriser and corner truncation, the sign of the
    last gt.txt line on top (test frames: lines in string order), duplicate lines painted twice.

    \b
    Example:
      labeltree gtsdb-masks data/FullIJCNN2013 data/gtsdb-masks --mode fine
      labeltree gtsdb-masks data/FullIJCNN2013 out8 --encoding 8bit --mode coarse
      labeltree gtsdb-masks data/FullIJCNN2013 data/gtsdb-authors --style authors
    """
    from labeltree.datasets.gtsdb import MASK_SUFFIX, write_gtsdb_masks
    from labeltree.fsutil import hold_output

    hold_output(out_dir, "OUT_DIR")  # a second gtsdb-masks into OUT_DIR is refused while this one runs

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # reported below, once each
        r = write_gtsdb_masks(gtsdb_dir, out_dir, mode=mode, gt=gt, encoding=encoding, style=style, workers=workers,
                              skip_existing=skip_existing, progress=progress, force=force)
    for w in r.warnings:
        click.echo(f"warning: {w}", err=True)
    click.echo(f"{r.written} masks written to {r.out_dir}/*{MASK_SUFFIX} ({r.frames} frames, {r.boxes} boxes, "
               f"{r.labelled_pixels} sign pixels, mode {mode}, {encoding}, style {style})"
               + (f", {r.skipped} existing kept" if r.skipped else ""))


COMMANDS = [gtsdb_masks_cmd]
