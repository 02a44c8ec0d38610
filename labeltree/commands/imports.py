"""`labeltree import ...`: turn a dataset's own label table into a taxonomy file (no code needed)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from labeltree.errors import LabeltreeError
from labeltree.vocab import LAYOUT_NAMES

if TYPE_CHECKING:
    from labeltree.core.taxonomy import Taxonomy


def _common(f: Any) -> Any:
    f = click.option("-o", "--output", type=click.Path(path_type=Path),
                     help="Write the taxonomy file here (atomic); default: print it.")(f)
    f = click.option("--force", is_flag=True, help="Overwrite an existing OUTPUT file.")(f)
    f = click.option("--name", help="Dataset name in the taxonomy (default: from the source).")(f)
    f = click.option("--ignore", "ignore", multiple=True,
                     help="Class id or name that carries no class (repeatable; default: classes named "
                          "'unlabeled').")(f)
    return f


def _emit(tax: Taxonomy, output: Path | None, force: bool, sources: list[Path]) -> None:
    from labeltree.core.importers import dump_taxonomy, taxonomy_to_dict, write_taxonomy

    if output is None:
        click.echo(dump_taxonomy(taxonomy_to_dict(tax)), nl=False)
        return
    if any(output.resolve() == s.resolve() for s in sources):
        raise LabeltreeError("refusing to overwrite the source file; choose another -o", output)
    if output.exists() and not force:
        raise LabeltreeError("output exists; pass --force to overwrite it", output)
    write_taxonomy(tax, output)
    click.echo(f"wrote {output}: taxonomy '{tax.name}', {len(tax.classes)} classes, ignored ids {tax.ignore_ids}",
               err=True)


def _precheck(output: Path | None, force: bool, sources: list[Path]) -> None:
    """Before reading: never the source, an existing file only with --force (fsutil's one output policy)."""
    from labeltree.fsutil import check_outputs, same_file

    if output is not None:
        if any(same_file(output, s) for s in sources):
            raise LabeltreeError("refusing to overwrite the source file; choose another -o", output)
        check_outputs({"-o": output}, sources, force)


def _opts(name: str | None, ignore: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if name:
        out["name"] = name
    if ignore:
        out["ignore"] = list(ignore)
    return out


@click.group("import")
def import_group() -> None:
    """Import a dataset's label table as a taxonomy file.

    \b
    Examples:
      labeltree import vistas-config config_v1.2.json -o vistas-v1.2.yaml
      labeltree import table my-dataset.tsv --name bikelanes -o bikelanes.yaml
      labeltree import cityscapes-scripts -o cityscapes.yaml
    """


@import_group.command("vistas-config")
@click.argument("file", type=click.Path(path_type=Path))
@_common
def vistas_config_cmd(file: Path, output: Path | None, force: bool, name: str | None,
                      ignore: tuple[str, ...]) -> None:
    """Mapillary Vistas config.json (`labels` list; class id = position, read as palette index).

    \b
    Example:
      labeltree import vistas-config config_v1.2.json -o vistas-v1.2.yaml
    """
    from labeltree.core.importers import import_vistas_config

    _precheck(output, force, [file])
    _emit(import_vistas_config(file, **_opts(name, ignore)), output, force, [file])


@import_group.command("table")
@click.argument("file", type=click.Path(path_type=Path))
@_common
@click.option("--annotation", type=click.Choice(["dense", "boxes"]), default="dense", show_default=True)
@click.option("--encoding", "fmt", type=click.Choice(["png-ids", "png-palette-index", "gtsdb-gt-txt"]),
              default="png-ids", show_default=True, help="How label files store a class.")
@click.option("--layout", type=click.Choice(LAYOUT_NAMES), default=None,
              help="File layout when it is not the encoding's usual one (png-ids: cityscapes).")
@click.option("--dtype", type=click.Choice(["uint8", "uint16"]), help="Label image type (default: smallest fit).")
@click.option("--offset", type=int, default=0, show_default=True, help="Stored value = id + offset.")
@click.option("--palette", type=click.Choice(["auto"]), help="Generate colours when the table has none.")
@click.option("--column", "columns", multiple=True, metavar="FIELD=COLUMN",
              help="Read FIELD (id, name, category, category_id, ...) from COLUMN (repeatable). With id=COLUMN, "
                   "rows sharing a value become one class and the files are taken to store COLUMN.")
@click.option("--version", "version", default="", help="Release the table belongs to (the taxonomy's `version`).")
@click.option("--description", default="", help="One line on the source (the taxonomy's `description`).")
def table_cmd(file: Path, output: Path | None, force: bool, name: str | None, ignore: tuple[str, ...],
              annotation: str, fmt: str, layout: str | None, dtype: str | None, offset: int,
              palette: str | None, columns: tuple[str, ...], version: str, description: str) -> None:
    """CSV/TSV label table: columns id, name, colour ('r,g,b' or color_r/color_g/color_b), optional
    readable, category, trainId, hasInstances, ignoreInEval/evaluate, shape, synonyms.

    \b
    Examples:
      labeltree import table bikelanes.tsv --name bikelanes -o bikelanes.yaml
      labeltree import table taxonomies/tables/bdd100k.tsv --name bdd100k --layout bdd100k -o bdd100k.yaml
      labeltree import table taxonomies/tables/idd.tsv --name idd --layout idd \\
        --column id=level3Id --column name=level3Name -o idd.yaml
    """
    _precheck(output, force, [file])
    remap: dict[str, str] = {}
    for spec in columns:
        field, sep, col = spec.partition("=")
        if not sep or not field.strip() or not col.strip():
            raise LabeltreeError(f"--column {spec}: expected FIELD=COLUMN, e.g. id=level3Id")
        if field.strip() in remap:
            raise LabeltreeError(f"--column {spec}: field '{field.strip()}' is already read from column "
                                 f"'{remap[field.strip()]}'; give each field once")
        remap[field.strip()] = col.strip()
    enc: dict[str, Any] = {"format": fmt, "offset": offset}
    if dtype:
        enc["dtype"] = dtype
    if layout:
        enc["layout"] = layout
    from labeltree.core.importers import import_table

    tax = import_table(file, palette=palette, annotation=annotation, encoding=enc, columns=remap or None,
                       version=version, description=description, **_opts(name, ignore))
    _emit(tax, output, force, [file])


@import_group.command("cityscapes-scripts")
@_common
def cityscapes_scripts_cmd(output: Path | None, force: bool, name: str | None, ignore: tuple[str, ...]) -> None:
    """The label table of cityscapesScripts (needs `pip install cityscapesscripts`).

    \b
    Example:
      labeltree import cityscapes-scripts -o cityscapes.yaml
    """
    from labeltree.core.importers import import_cityscapes_scripts

    _emit(import_cityscapes_scripts(**_opts(name, ignore)), output, force, [])


COMMANDS = [import_group]
