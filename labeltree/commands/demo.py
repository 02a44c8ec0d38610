"""`labeltree demo`: thin CLI over labeltree.demo.run_demo."""

from __future__ import annotations

from pathlib import Path

import click

from labeltree.commands._options import progress_option


@click.command("demo")
@click.option("--out", type=click.Path(path_type=Path), default=Path("labeltree-demo"), show_default=True,
              help="Folder for data, runs, figures and report.md (a re-run continues where it stopped).")
@click.option("--quick", is_flag=True, help="Smaller data and fewer steps: under 5 minutes on 2 CPU cores.")
@click.option("--steps", type=click.IntRange(1, 10**9), default=None,
              help="Training steps per model (overrides the plan).")
@click.option("--images", type=click.IntRange(4, 1_000_000), default=None, help="Frames of Cityscapes and Vistas.")
@click.option("--gtsdb-images", type=click.IntRange(min=6, max=900), default=None, help="GTSDB frames.")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=None,
              help="Seed of the data and of both runs.")
@click.option("--seeds", type=click.IntRange(1, 10), default=1, show_default=True,
              help="Train both models with this many training seeds (seed, seed+1, ...) and call a winner only "
                   "where the difference exceeds how far the numbers move between seeds (N times the training).")
@progress_option()
def demo_cmd(out: Path, quick: bool, steps: int | None, images: int | None, gtsdb_images: int | None,
             seed: int | None, seeds: int, progress: bool) -> None:
    """Run the paper in miniature on synthetic data and write OUT/report.md.

    Generates Cityscapes-, Vistas- and GTSDB-format data, merges the taxonomies, prints the class
    statistics, trains the hierarchical model and the flat baseline (same backbone, steps and data;
    on the GPU when there is one), evaluates both per dataset and on the Cityscapes Extended signs
    (cross-dataset), and writes report.md laid out like the paper's Tables I-IV with figures.

    \b
    Example:
      labeltree demo --quick --out runs/demo
      labeltree demo --out runs/demo-full      # under 20 minutes on 2 cores
      labeltree demo --quick --seeds 3         # the seed spread: the verdict's noise level
    """
    from labeltree.demo.report import tables_text
    from labeltree.demo.run import run_demo

    res = run_demo(out, quick, images=images, gtsdb_images=gtsdb_images, steps=steps, seed=seed,
                   seeds=seeds, progress=progress, log=click.echo)
    click.echo("")
    click.echo(tables_text(res))
    click.echo(f"\nreport: {res.report}")


COMMANDS = [demo_cmd]
