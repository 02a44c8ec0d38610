"""`labeltree synth`: synthetic Cityscapes / Cityscapes Extended / Vistas / GTSDB sets of one world."""

from __future__ import annotations

from pathlib import Path

import click

from labeltree.commands._options import progress_option
from labeltree.errors import LabeltreeError
from labeltree.vocab import DEFAULT_TREE, GTSDB_SIGNS


def parse_range(text: str | None, option: str) -> tuple[int, int] | None:
    """'LO-HI' (or one number N = N-N) -> (lo, hi)."""
    if text is None:
        return None
    lo, _, hi = text.partition("-")
    try:
        return int(lo), int(hi or lo)
    except ValueError:
        raise LabeltreeError(f"{option} expects LO-HI such as 2-4, got '{text}'") from None


@click.command("synth")
@click.argument("out", type=click.Path(path_type=Path, file_okay=False))
@click.option("--images", "-n", type=click.IntRange(min=1, max=1_000_000), default=50, show_default=True,
              help="Frames per dataset (GTSDB: at most 900, its numbering).")
@click.option("--gtsdb-images", type=click.IntRange(min=0, max=900), default=None,
              help="GTSDB frames if different from --images (2/3 from 00000 = train, the rest from 00600 = test).")
@click.option("--gtsdb-signs", default=f"{GTSDB_SIGNS[0]}-{GTSDB_SIGNS[1]}", show_default=True,
              help="Signs per GTSDB frame LO-HI (1 frame in 10 has none).")
@click.option("--street-signs", default=None,
              help="Sign posts per Cityscapes/Vistas frame LO-HI (default: 0-3, mostly 1-2).")
@click.option("--tree", "tree", default=DEFAULT_TREE, show_default=True,
              help="Tree: its datasets are written, each in its own layout. TREE is a bundled name, or a path "
                   "(one with a slash or a .yaml suffix).", metavar="TREE")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed and size, same bytes.")
@click.option("--size", default="256x128", show_default=True, metavar="WxH",
              help="Frame size WIDTHxHEIGHT for all datasets.")
@click.option("--workers", "-j", type=click.IntRange(min=1), default=None,
              help="Worker processes (default: all cores; 1 = in-process).")
@click.option("--force", is_flag=True,
              help="Write into a non-empty folder that is not an earlier synth output (same-named files are "
                   "replaced, nothing else is touched).")
@click.option("--json", "as_json_flag", is_flag=True, help="Print a JSON summary instead of text.")
@progress_option()
def synth_cmd(out: Path, images: int, gtsdb_images: int | None, gtsdb_signs: str, street_signs: str | None,
              tree: str, seed: int, size: str, workers: int | None, force: bool, as_json_flag: bool,
              progress: bool) -> None:
    """Write synthetic street scenes of one world in the datasets' native layouts.

    \b
    OUT/cityscapes/{leftImg8bit,gtFine}/{train,val}/{city}/...   (8-bit labelIds, 16-bit instanceIds)
    OUT/cityscapes-extended/gtFine/{train,val}/{city}/...        (16-bit, sign pixels 2000 + GTSDB ClassID)
    OUT/vistas/{training,validation}/{images,labels,instances}/ + config.json (v1.2 palette labels)
    OUT/gtsdb/NNNNN.ppm + gt.txt                                  (all 43 sign classes, drawn by shape)

    With --tree, every dataset of that tree is written under OUT/<dataset>/ in its layout (e.g.
    OUT/vistas-v2.0/{training,validation}/v2.0/labels/, BDD100K, IDD). Labels come from the
    taxonomies and the tree file. OUT must be new, empty, or an earlier synth
    output (recognised by OUT/synth.json; its dataset folders are replaced); any other folder needs
    --force.

    \b
    Example:
      labeltree synth data/synth --images 200 --seed 1 --size 256x128
      labeltree stats cityscapes data/synth/cityscapes
      labeltree synth data/synth-v2 --tree cityscapes+vistas-v2.0+gtsdb
    """
    from labeltree.fsutil import hold_output
    from labeltree.synth.runner import as_json, parse_size, summary, synthesize

    hold_output(out, "OUT")  # a second synth into OUT is refused while this one runs

    res = synthesize(out, images=images, seed=seed, size=parse_size(size), workers=workers, force=force,
                     gtsdb_images=gtsdb_images, progress=progress, hierarchy=tree,
                     gtsdb_signs=parse_range(gtsdb_signs, "--gtsdb-signs") or GTSDB_SIGNS,
                     street_signs=parse_range(street_signs, "--street-signs"))
    click.echo(as_json(res) if as_json_flag else summary(res))


COMMANDS = [synth_cmd]
