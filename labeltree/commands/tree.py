"""`labeltree tree` and `labeltree validate`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from labeltree.errors import LabeltreeError
from labeltree.vocab import DEFAULT_TREE


@click.command("tree")
@click.argument("tree", default=DEFAULT_TREE)
@click.option("--color/--no-color", default=None,
              help="Colour swatches (default: when the terminal has them).")
def tree_cmd(tree: str, color: bool | None) -> None:
    """Print a tree with each node's classifier and the dataset classes mapped to it.

    \b
    Example:
      labeltree tree cityscapes+vistas

    TREE is a bundled tree name (default: the paper's), a '+' list of datasets that a bundled tree maps, or
    a path (one with a slash or a .yaml suffix); a folder of that name here never replaces the bundled one.
    """
    from labeltree.core.tree_file import load_hierarchy
    from labeltree.core.treeview import render_tree

    h = load_hierarchy(tree)
    use_color = color if color is not None else sys.stdout.isatty()
    click.echo(render_tree(h, color=use_color))


@click.command("validate")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
def validate_cmd(files: tuple[Path, ...]) -> None:
    """Validate taxonomy and tree files; exit status 2 at the first bad one.

    \b
    Example:
      labeltree validate taxonomies/*.yaml taxonomies/hierarchies/*.yaml
    """
    from labeltree.core.taxonomy import load_taxonomy
    from labeltree.core.tree_file import load_hierarchy
    from labeltree.core.yamlio import load_yaml

    for f in files:
        data = load_yaml(f, "taxonomy or tree")
        if isinstance(data, dict) and ("tree" in data or "extends" in data):
            h = load_hierarchy(f)
            click.echo(f"ok  {f}: tree '{h.name}', {len(h.classifiers)} classifiers "
                       f"({'/'.join(str(len(c.children)) for c in h.classifiers)}), {len(h.leaves)} leaves")
        elif isinstance(data, dict) and "classes" in data:
            t = load_taxonomy(f)
            version = f" {t.version}" if t.version else ""
            click.echo(f"ok  {f}: taxonomy '{t.name}'{version}, {len(t.classes)} classes, {t.annotation}")
        else:
            raise LabeltreeError("neither a taxonomy (has 'classes') nor a tree file (has 'tree' or 'extends')", f)


COMMANDS = [tree_cmd, validate_cmd]
