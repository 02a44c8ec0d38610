"""`labeltree merge`: merge dataset taxonomies into one tree and report coverage and conflicts."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click


@click.command("merge")
@click.argument("datasets", nargs=-1, required=True)
@click.option("--rules", type=click.Path(path_type=Path),
              help="Tree file with (some of) the rules; classes it does not mention are matched by name.")
@click.option("-o", "--output", type=click.Path(path_type=Path),
              help="Write the merged tree file here (atomic); `labeltree tree OUT.yaml` reads it back. Never one of "
                   "the inputs; an existing file only with --force.")
@click.option("--force", is_flag=True, help="Replace an existing -o file.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--color/--no-color", default=None, help="Colour swatches (default: when the terminal has them).")
def merge_cmd(datasets: tuple[str, ...], rules: Path | None, output: Path | None, force: bool, fmt: str,
              color: bool | None) -> None:
    """Merge the label spaces of DATASETS (bundled names or taxonomy files) into one tree.

    A dataset with a slash or a .yaml suffix is a file (./mine.yaml); anything else is a bundled
    name, never a folder of that name here (a data folder holding cityscapes/ is fine).

    Uses --rules, else the bundled tree that covers the datasets, else proposes a flat union by
    name and prints a rules file to start from. Prints the tree with each node's classifier, each
    dataset's coverage and the conflicts a person must decide.

    \b
    Examples:
      labeltree merge cityscapes vistas gtsdb
      labeltree merge cityscapes vistas gtsdb --format json > tree.json
      labeltree merge cityscapes vistas-v2.0 gtsdb
      labeltree merge cityscapes my-bikelanes.yaml -o draft.yaml
      labeltree merge cityscapes my-bikelanes.yaml --rules my-rules.yaml -o tree.yaml
    """
    from labeltree.core.merge import merge
    from labeltree.core.tree_extends import tree_files
    from labeltree.core.tree_file import write_hierarchy
    from labeltree.fsutil import check_outputs
    from labeltree.resources import is_path_ref

    inputs = [Path(d) for d in datasets if is_path_ref(d)] + tree_files(rules)  # with its extends / include files
    check_outputs({"-o": output}, inputs, force)
    result = merge(list(datasets), rules)
    if output is not None:
        head = [f"written by `labeltree merge {' '.join(datasets)}`"
                + (f" --rules {rules}" if rules else "") + f" ({result.source})",
                f"{len(result.conflicts)} conflicts; `labeltree merge ... --rules THIS` lists them"]
        if result.extension is not None:  # an extension of the bundled tree, not a copy of it
            from labeltree.core.merge_extend import extension_text
            from labeltree.fsutil import write_text

            write_text(output, extension_text(result.extension, output, "\n".join(head)))
        else:
            write_hierarchy(result.hierarchy, output, "\n".join(head))
    if fmt == "json":
        click.echo(json.dumps(result.to_json(), indent=1))
    else:
        use_color = color if color is not None else sys.stdout.isatty()
        click.echo(result.render(color=use_color))
    if output is not None:
        click.echo(f"wrote {output}", err=True)


COMMANDS = [merge_cmd]
