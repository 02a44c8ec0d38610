"""`labeltree migrate` (a checkpoint onto an edited tree) and `labeltree tree-diff` (which numbers stay comparable)."""

from __future__ import annotations

from pathlib import Path

import click

from labeltree.commands._options import tree_option
from labeltree.errors import LabeltreeError


@click.command("migrate")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@tree_option("hierarchy_ref", "The edited tree to map the checkpoint onto (required).")
@click.option("-o", "--out", "out", type=click.Path(path_type=Path), required=True,
              help="The migrated checkpoint (.pt): a checkpoint of the new tree, without optimiser or step.")
@click.option("--rename", "renames", multiple=True, metavar="OLD=NEW",
              help="An old node's name in the new tree (repeatable).")
@click.option("--drop", "drops", multiple=True, metavar="NODE",
              help="An old node the new tree no longer has: its logit is removed (repeatable).")
@click.option("--report", type=click.Path(path_type=Path), help="Also write the report as JSON.")
@click.option("--seed", type=click.IntRange(0, 2**31 - 1), default=0, show_default=True,
              help="Seed of the new classifiers' initialisation.")
@click.option("--force", is_flag=True, help="Replace OUT / --report if they exist.")
def migrate_cmd(checkpoint: Path, hierarchy_ref: str | None, out: Path, renames: tuple[str, ...],
                drops: tuple[str, ...], report: Path | None, seed: int, force: bool) -> None:
    """Map CHECKPOINT onto an edited tree by node names, to fine-tune instead of training from scratch.

    Classifiers whose children are unchanged keep their weights (rows follow the children's names); a new child
    of an old classifier gets a row that cannot win before it is trained (every old prediction and confidence
    stays); a leaf that became an inner node keeps its row and gets a new classifier; backbone and shared layers
    are copied. A node the new tree lost needs --rename OLD=NEW or --drop NODE. Prints per classifier what was
    kept, added and initialised, and per dataset which classes keep their node (as `labeltree tree-diff`).

    \b
    Example:
      labeltree migrate runs/paper/best.pt --tree cityscapes+vistas+gtsdb+idd -o runs/idd/init.pt
    """
    from labeltree.core.tree_extends import tree_files
    from labeltree.fsutil import check_outputs, write_json
    from labeltree.train.migrate import migrate

    if hierarchy_ref is None:
        raise LabeltreeError("--tree: give the edited tree to map the checkpoint onto (a bundled name or a file)")
    if out.suffix.lower() != ".pt":
        raise LabeltreeError("-o: the migrated checkpoint must end in .pt", out)
    check_outputs({"-o": out, "--report": report}, [checkpoint, *tree_files(hierarchy_ref)], force)
    result = migrate(checkpoint, hierarchy_ref, out, renames, drops, seed)
    click.echo(result.table())
    click.echo()
    click.echo(result.diff.table())
    if report is not None:
        write_json(report, result.to_json())
    click.echo(f"wrote {out}" + (f" and {report}" if report else ""))


@click.command("tree-diff")
@click.argument("old")
@click.argument("new")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def tree_diff_cmd(old: str, new: str, fmt: str) -> None:
    """Per dataset of two trees (bundled names or tree files): which classes keep their node, which moved and
    where, and which datasets are new or gone; so that you know which evaluation numbers stay comparable.

    \b
    Example:
      labeltree tree-diff cityscapes+vistas+gtsdb cityscapes+vistas-v2.0+gtsdb
    """
    from labeltree.core.tree_diff import tree_diff
    from labeltree.core.tree_file import load_hierarchy

    click.echo(tree_diff(load_hierarchy(old), load_hierarchy(new)).to_text(fmt))


COMMANDS = [migrate_cmd, tree_diff_cmd]
