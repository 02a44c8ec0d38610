"""`labeltree convert`: labels from one label space to another, through the tree (thin layer over labeltree.convert)."""

from __future__ import annotations

from pathlib import Path

import click

from labeltree.commands._options import progress_option, tree_option, unknown_option
from labeltree.vocab import DEFAULT_MASK_MODE, MODES


@click.command("convert")
@click.argument("dataset")
@click.argument("root", type=click.Path(path_type=Path))
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--to", "to", required=True,
              help="Target: DATASET (its stored values and layout), DATASET:trainids (train ids, 255 = ignore), "
                   "tree or tree:LEVEL (16-bit tree-node indices cut at a depth, 65535 = ignore).")
@click.option("--split", "splits", multiple=True, help="Split(s) to convert (repeatable; default: every split).")
@tree_option("hierarchy", "Tree that maps DATASET and the target (default: the smallest bundled tree that maps "
                          "both, e.g. cityscapes+vistas+gtsdb).")
@click.option("--overrides", type=click.Path(path_type=Path), default=None,
              help="YAML mapping 'source class: target class' (name or id, or 'ignore') that replaces the tree's "
                   "choice for those classes.")
@click.option("--mask-mode", type=click.Choice(MODES), default=DEFAULT_MASK_MODE, show_default=True,
              help="GTSDB source: sign shapes in the boxes (fine) or filled boxes (coarse).")
@click.option("--gt", type=click.Path(path_type=Path), default=None, help="GTSDB source: another gt.txt.")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Processes (default: all CPUs).")
@click.option("--force", is_flag=True, help="Replace outputs already in OUT (default: keep them; a rerun resumes).")
@click.option("--report", "report_path", type=click.Path(path_type=Path), default=None,
              help="Write the report (per source class: pixels, target, rule) as JSON.")
@click.option("--all-classes", is_flag=True, help="List source classes without pixels in the table too.")
@click.option("--quiet", is_flag=True, help="No table, no progress bar.")
@progress_option()
@unknown_option
def convert_cmd(dataset: str, root: Path, out: Path, to: str, splits: tuple[str, ...], hierarchy: str | None,
                overrides: Path | None, mask_mode: str, gt: Path | None, workers: int | None, force: bool,
                report_path: Path | None, all_classes: bool, quiet: bool, progress: bool, unknown: str) -> None:
    """Convert DATASET's labels under ROOT into another label space, written to OUT in the target's layout
    with split lists OUT/{split}.txt: one 'IMAGE LABEL' line per sample, paths relative to OUT, a path with a
    space or odd character shell-quoted (Python: shlex.split(line)), as mmsegmentation / detectron2-style lists.

    A source class becomes the target class at the deepest ancestor-or-self of its tree node that the
    target maps; a class coarser than target classes below it, or outside the target's tree, becomes
    the target's ignore value. The table shows what each source class became and what was lost.

    \b
    Examples:
      labeltree convert cityscapes data/cityscapes data/cs-train --to cityscapes:trainids
      labeltree convert vistas data/vistas data/vistas-as-cs --to cityscapes --report lost.json
      labeltree convert gtsdb data/FullIJCNN2013 data/gtsdb-tree --to tree:2 --mask-mode coarse

    DATASET and the target are bundled names or taxonomy paths (one with a slash or a .yaml suffix);
    a folder of that name here never replaces the bundled one.
    """
    from labeltree.convert import conversion_tree, convert_dataset, render_report
    from labeltree.datasets.base import check_split_name
    from labeltree.errors import LabeltreeError
    from labeltree.fsutil import check_output, write_json

    for split in splits:
        check_split_name(split)
    if report_path is not None and (root.resolve() == report_path.resolve().parent
                                    or root.resolve() in report_path.resolve().parents):
        raise LabeltreeError("--report must lie outside the dataset root (convert never writes into its input)",
                             report_path)
    if report_path is not None and report_path.resolve().is_relative_to(out.resolve()):
        raise LabeltreeError(f"--report must lie outside OUT {out} (convert fills OUT with labels and split lists "
                             "that could replace it); choose another path", report_path)
    if report_path is not None:  # an existing report needs --force; an input file never becomes the report
        from labeltree.core.tree_extends import tree_files

        inputs = [p for p in (root, overrides, gt, hierarchy, dataset) if p is not None and Path(p).exists()] + \
            tree_files(hierarchy)  # with its extends / include files
        check_output(report_path, "--report", inputs, force)
    if hierarchy is None:
        hierarchy = conversion_tree(dataset, to)
    rep = convert_dataset(dataset, root, out, to, hierarchy=hierarchy, splits=list(splits) or None,
                          overrides=overrides, workers=workers, force=force, mask_mode=mask_mode,
                          unknown=unknown, progress=progress and not quiet, gt=gt)  # type: ignore[arg-type]
    if not quiet:
        click.echo(render_report(rep, all_classes))
    if report_path is not None:
        write_json(report_path, rep.to_json())
        click.echo(f"wrote report {report_path}", err=True)
    click.echo(f"{rep.written} labels written, {rep.skipped} kept; split lists: "
               f"{', '.join(rep.lists.values()) or 'none (no photos)'}", err=True)


COMMANDS = [convert_cmd]
