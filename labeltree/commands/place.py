"""`labeltree place` (where a new dataset's classes go in a tree, from data) and `labeltree audit`
(a tree's mapping of a dataset checked against data): thin layer over labeltree.place."""

from __future__ import annotations

from pathlib import Path

import click

from labeltree.fsutil import check_outputs, refuse_replacing_inside, write_text

_tree_help = "Tree (bundled name or .yaml)"
_model_help = ("Trained model of that tree (.pt checkpoint or exported .onnx): adds the model's fingerprints, the "
               "strongest evidence. Without it: names and label statistics only.")
_base_help = ("Folder holding the tree's own datasets as <dataset>/ (e.g. a `labeltree synth` output); default: the "
              "roots the checkpoint was trained on.")


def _common(f):  # noqa: ANN001, ANN202 - click decorator stack
    for opt in reversed([
        click.option("--checkpoint", type=click.Path(path_type=Path), default=None, help=_model_help),
        click.option("--base-root", type=click.Path(path_type=Path), default=None, help=_base_help),
        click.option("--frames", type=click.IntRange(1, 100000), default=50, show_default=True,
                     help="Frames of DATASET read (spread over its splits)."),
        click.option("--base-frames", type=click.IntRange(1, 100000), default=50, show_default=True,
                     help="Frames read per base dataset."),
        click.option("--format", "fmt", type=click.Choice(["text", "json", "markdown"]), default="text",
                     show_default=True, help="What is printed."),
        click.option("--report", "report", type=click.Path(path_type=Path), default=None,
                     help="Also write the report here: .json, .md, or text."),
        click.option("--force", is_flag=True, help="Replace existing output files."),
    ]):
        f = opt(f)
    return f


def _emit(text: str, js: str, md: str, fmt: str, report: Path | None) -> None:
    click.echo({"text": text, "json": js, "markdown": md}[fmt])
    if report is not None:
        write_text(report, js if report.suffix == ".json" else md if report.suffix == ".md" else text + "\n")
        click.echo(f"wrote {report}", err=True)


@click.command("place")
@click.argument("dataset")
@click.argument("root", type=click.Path(path_type=Path))
@click.option("--tree", default="cityscapes+vistas+gtsdb", show_default=True, help=_tree_help + " to extend.")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True,
              help="The extension tree file to write (extends: TREE); `labeltree validate/tree/train` read it as is.")
@click.option("--crops", type=click.Path(path_type=Path), default=None,
              help="Write a PNG: per class crops of its pixels beside crops of the node it was placed on.")
@_common
def place_cmd(dataset: str, root: Path, tree: str, output: Path, crops: Path | None, checkpoint: Path | None,
              base_root: Path | None, frames: int, base_frames: int, fmt: str, report: Path | None,
              force: bool) -> None:
    """Propose where each class of DATASET (taxonomy name or file; frames under ROOT) goes in TREE.

    Per class: an existing node, an existing inner node (it covers several), new children of a leaf
    (the dataset is finer there), a new node under a parent, or ignore; with a confidence, the next two
    alternatives and the evidence (model fingerprints, position/size statistics, names and includes).

    \b
    Examples:
      labeltree place idd data/idd --tree cityscapes+vistas+gtsdb --checkpoint runs/tiny/last.pt -o idd-ext.yaml
      labeltree place my-dataset.yaml data/mine --base-root data/synth -o mine.yaml --report mine.md
    """
    from labeltree.core.tree_extends import tree_files
    from labeltree.place.propose import place
    from labeltree.place.report import render_json, render_markdown, render_table, write_extension

    inputs = [p for p in (root, checkpoint, Path(dataset), Path(tree)) if p is not None and p.exists()] + \
        tree_files(tree)  # with its extends / include files
    check_outputs({"-o": output, "--report": report, "--crops": crops}, inputs, force)
    refuse_replacing_inside({"-o": output, "--report": report, "--crops": crops}, [root, base_root])
    r = place(dataset, root, tree, checkpoint, base_root, frames, base_frames)
    if crops is not None:
        from labeltree.place.crops import write_crops

        write_crops(r, crops)
        click.echo(f"wrote {crops}", err=True)
    write_extension(r, output, f"labeltree place {dataset} {root} --tree {tree}"
                    + (f" --checkpoint {checkpoint}" if checkpoint else ""))
    _emit(render_table(r), render_json(r), render_markdown(r), fmt, report)
    click.echo(f"wrote {output}", err=True)


@click.command("audit")
@click.argument("dataset")
@click.argument("root", type=click.Path(path_type=Path))
@click.option("--tree", required=True, help=_tree_help + " that maps DATASET.")
@_common
def audit_cmd(dataset: str, root: Path, tree: str, checkpoint: Path | None, base_root: Path | None, frames: int,
              base_frames: int, fmt: str, report: Path | None, force: bool) -> None:
    """Check TREE's mapping of DATASET against its frames under ROOT: mappings ranked by how much better
    another placement fits (wrong node, mapped too fine or too coarse), and classes of two datasets on one
    node whose pixels the model sees differently (annotation policies).

    \b
    Example:
      labeltree audit idd data/idd --tree cityscapes+vistas+gtsdb+idd --checkpoint runs/tiny/last.pt
    """
    from labeltree.core.tree_extends import tree_files
    from labeltree.place.audit import audit, render_audit, render_audit_json

    inputs = [p for p in (root, checkpoint, Path(tree)) if p is not None and p.exists()] + tree_files(tree)
    check_outputs({"--report": report}, inputs, force)
    refuse_replacing_inside({"--report": report}, [root, base_root])
    r = audit(dataset, root, tree, checkpoint, base_root, frames, base_frames)
    _emit(render_audit(r), render_audit_json(r), render_audit(r, markdown=True), fmt, report)


COMMANDS = [place_cmd, audit_cmd]
