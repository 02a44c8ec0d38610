"""`labeltree stats` and `labeltree stats-merge`: class statistics, class weights, tree roll-up."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from labeltree.commands._options import progress_option, split_names, tree_option
from labeltree.errors import LabeltreeError
from labeltree.vocab import DEFAULT_MASK_MODE, DEFAULT_MIN_PIXELS, MODES

if TYPE_CHECKING:
    from labeltree.core.hierarchy import Hierarchy

TABLE_SUFFIXES = (".json", ".csv", ".parquet", ".pq")


def _check_table(path: Path | None, what: str) -> None:
    if path is not None and path.suffix.lower() not in TABLE_SUFFIXES:
        raise LabeltreeError(f"{what} must end in .json, .csv or .parquet", path)


def _outputs(rep, output: Path | None, summary_out: Path | None, tree_out: Path | None, plot: Path | None,
             all_classes: bool, quiet: bool) -> None:
    from labeltree.stats.render import plot_report, render_report, write_rows

    if not quiet:
        click.echo(render_report(rep, all_classes))
    if output is not None:
        write_rows(output, rep.classes)
        click.echo(f"wrote {len(rep.classes)} class rows to {output}", err=True)
    if summary_out is not None:
        write_rows(summary_out, rep.summary)
    if tree_out is not None:
        if not rep.contributions:
            raise LabeltreeError("--tree-out needs a tree (--tree) that maps the dataset", tree_out)
        write_rows(tree_out, rep.contributions)
    if plot is not None:
        plot_report(rep, plot)
        click.echo(f"wrote plot {plot}", err=True)


_common = [
    click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
                 help="Class rows (dataset, split, class_id, name, pixels, images, share, weights, ...) as "
                      ".json (list of row objects), .csv or .parquet. With --shard: the raw-count file (.json) "
                      "for stats-merge."),
    click.option("--summary-out", type=click.Path(path_type=Path), default=None,
                 help="Per dataset split (Table I) rows, .json/.csv/.parquet."),
    click.option("--tree-out", type=click.Path(path_type=Path), default=None,
                 help="Per classifier, class and dataset: rolled-up pixels, .json/.csv/.parquet."),
    click.option("--plot", type=click.Path(path_type=Path), default=None,
                 help="PNG: log-scale pixel share per class, grouped by classifier, coloured by tree level."),
    click.option("--min-pixels", type=click.IntRange(min=0), default=DEFAULT_MIN_PIXELS, show_default=True,
                 help="A class counts as evaluated with at least this many pixels (the paper's GTSDB rule)."),
    click.option("--all-classes", is_flag=True, help="List classes without pixels in the terminal table too."),
    click.option("--quiet", is_flag=True, help="No terminal table, no progress bar."),
    click.option("--force", is_flag=True, help="Replace existing output files (-o, --summary-out, --tree-out, --plot, "
                                               "--raw); without it an existing one stops the run before counting. "
                                               "An input is never replaced."),
]


def _named(output: Path | None, summary_out: Path | None, tree_out: Path | None, plot: Path | None,
           raw_out: Path | None) -> dict[str, Path | None]:
    return {"-o": output, "--summary-out": summary_out, "--tree-out": tree_out, "--plot": plot, "--raw": raw_out}


def _apply(opts):
    def deco(f):
        for o in reversed(opts):
            f = o(f)
        return f
    return deco


@click.command("stats")
@click.argument("dataset")
@click.argument("root", type=click.Path(path_type=Path))
@click.option("--split", "splits", multiple=True, callback=split_names,
              help="Split(s) to count (repeatable; default: every split found).")
@tree_option("hierarchy", "Tree for node columns and the classifier roll-up; default: the bundled tree when it "
                          "maps DATASET; 'none' for no tree.")
@_apply(_common)
@progress_option()
@click.option("--raw", "raw_out", type=click.Path(path_type=Path), default=None,
              help="Also write the raw counts (.json) so that this run can be merged with others by stats-merge.")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Processes (default: all CPUs).")
@click.option("--shard", default=None, help="K/N: count only shard K of N (sorted samples, every N-th); "
                                              "-o then writes raw counts for stats-merge.")
@click.option("--cache/--no-cache", default=True, show_default=True,
              help="Reuse per-image counts of unchanged files (keyed on path, size, mtime).")
@click.option("--cache-dir", type=click.Path(path_type=Path), default=None,
              help="Cache folder (default: $LABELTREE_CACHE or ~/.cache/labeltree).")
@click.option("--skip-bad", is_flag=True, help="Report corrupt or invalid label files and go on without them "
                                               "(default: stop at the first, naming it).")
@click.option("--instances/--no-instances", default=True, show_default=True,
              help="Read instance files where present (instances per class, mean instance size).")
@click.option("--gtsdb-masks", "mask_mode", type=click.Choice(MODES), default=DEFAULT_MASK_MODE, show_default=True,
              help="GTSDB pixels: sign shapes inscribed in the boxes (fine) or the filled boxes (coarse).")
@click.option("--unknown", type=click.Choice(["error", "ignore"]), default="error", show_default=True,
              help="Label values the taxonomy does not define: 'error' stops (or, with --skip-bad, skips the "
                   "file); 'ignore' counts them as the ignore value.")
def stats_cmd(dataset: str, root: Path, splits: tuple[str, ...], hierarchy: str | None, output: Path | None,
              summary_out: Path | None, tree_out: Path | None, plot: Path | None, min_pixels: int,
              all_classes: bool, quiet: bool, progress: bool, force: bool, raw_out: Path | None, workers: int | None,
              shard: str | None,
              cache: bool, cache_dir: Path | None, skip_bad: bool, instances: bool, mask_mode: str,
              unknown: str) -> None:
    """Class statistics of one dataset: Table I per split, pixels / images / share / class weights per
    class (inverse frequency, median-frequency balancing, ENet), instances, GTSDB boxes, and the
    pixels each classifier of the tree sees with its imbalance.

    \b
    Examples:
      labeltree stats cityscapes data/cityscapes --split train -o cs.csv --plot cs.png
      labeltree stats vistas data/vistas --split train --shard 3/8 -o part3.json   # then stats-merge
      labeltree stats gtsdb data/FullIJCNN2013 --gtsdb-masks coarse

    DATASET is a bundled name or a taxonomy path (one with a slash or a .yaml suffix); a folder of that
    name here never replaces the bundled one, so `labeltree stats cityscapes cityscapes` works.
    """
    from labeltree.core.taxonomy import load_taxonomy
    from labeltree.fsutil import check_outputs, refuse_replacing_inside
    from labeltree.stats.collect import RunInfo, collect_stats, parse_shard, resolve_hierarchy
    from labeltree.stats.groups import write_raw
    from labeltree.stats.report import build_report

    sh = parse_shard(shard)
    if sh is not None:
        if output is None or output.suffix.lower() != ".json":
            raise LabeltreeError("with --shard, -o must name the raw-count .json file that stats-merge reads")
    else:
        _check_table(output, "-o")
    _check_table(summary_out, "--summary-out")
    _check_table(tree_out, "--tree-out")
    check_outputs(_named(output, summary_out, tree_out, plot, raw_out), [root], force)
    refuse_replacing_inside(_named(output, summary_out, tree_out, plot, raw_out), [root])
    tax = load_taxonomy(dataset)
    h = resolve_hierarchy(hierarchy, tax)
    info = RunInfo()
    groups = collect_stats(dataset, root, list(splits) or None, hierarchy=h, workers=workers, shard=sh,
                           cache_dir=cache_dir, cache=cache, skip_bad=skip_bad, instances=instances,
                           mask_mode=mask_mode, unknown=unknown, progress=progress and not quiet, info=info)
    if info.bad and not info.computed and not info.cached:  # --skip-bad skipped everything: nothing was counted
        raise LabeltreeError(f"none of the {len(info.bad)} label file(s) could be read, so nothing was counted; the "
                             f"first: {info.bad[0]}")
    for msg in info.bad:
        click.echo(f"skipped bad file: {msg}", err=True)
    click.echo(f"{info.computed} files read, {info.cached} from cache" + (f", {len(info.bad)} bad skipped"
                                                                          if info.bad else ""), err=True)
    if raw_out is not None:
        write_raw(raw_out, groups)
    if sh is not None:
        write_raw(output, groups)  # type: ignore[arg-type]
        click.echo(f"wrote shard {sh[0]}/{sh[1]} raw counts to {output}; combine with `labeltree stats-merge`",
                   err=True)
        output = None
    rep = build_report(groups, h, min_pixels)
    _outputs(rep, output, summary_out, tree_out, plot, all_classes, quiet)


@click.command("stats-merge")
@click.argument("parts", nargs=-1, required=True, type=click.Path(path_type=Path))
@tree_option("hierarchy", "Tree for the roll-up (default: the tree the parts were counted with; 'none' for no "
                          "tree).")
@_apply(_common)
@click.option("--raw", "raw_out", type=click.Path(path_type=Path), default=None,
              help="Also write the merged raw counts (.json).")
@click.option("--allow-partial", is_flag=True, help="Merge even when shards are missing.")
def stats_merge_cmd(parts: tuple[Path, ...], hierarchy: str | None, output: Path | None, summary_out: Path | None,
                    tree_out: Path | None, plot: Path | None, min_pixels: int, all_classes: bool, quiet: bool,
                    force: bool, raw_out: Path | None, allow_partial: bool) -> None:
    """Combine raw-count files (shards of one dataset, or several datasets) and report them as `stats` does.

    Shards of a dataset split are summed (each K of K/N must be there exactly once); different
    datasets are reported side by side, and the tree roll-up then shows every dataset's
    contribution to each classifier. Weights are recomputed from the merged raw counts.

    \b
    Example:
      labeltree stats-merge part*.json -o vistas.parquet
      labeltree stats-merge cs.json vistas.json gtsdb.json --tree-out classifiers.csv --plot tree.png
    """
    from labeltree.core.tree_file import load_hierarchy
    from labeltree.fsutil import check_outputs
    from labeltree.stats.groups import merge_groups, read_raw, write_raw
    from labeltree.stats.report import build_report

    _check_table(output, "-o")
    _check_table(summary_out, "--summary-out")
    _check_table(tree_out, "--tree-out")
    check_outputs(_named(output, summary_out, tree_out, plot, raw_out), parts, force)
    loaded = [(str(p), g) for p in parts for g in read_raw(p)]
    if not loaded:
        raise LabeltreeError("the parts hold no dataset splits", parts[0])
    groups = merge_groups(loaded, allow_partial)
    h: Hierarchy | None = None
    ref = hierarchy if hierarchy is not None else next((g.hierarchy for g in groups if g.hierarchy), None)
    if ref is not None and str(ref).lower() != "none":
        h = load_hierarchy(ref)
        for g in groups:
            if tuple(sorted(g.ignored)) != tuple(sorted(_ignored_with(h, g))):
                raise LabeltreeError(f"{g.dataset}/{g.split} was counted with other ignored values than tree "
                                     f"'{h.name}' implies; re-run stats with --tree {ref}")
    if raw_out is not None:
        write_raw(raw_out, groups)
    _outputs(build_report(groups, h, min_pixels), output, summary_out, tree_out, plot, all_classes, quiet)


def _ignored_with(h: Hierarchy, g) -> list[int]:
    from labeltree.core.taxonomy import load_taxonomy
    from labeltree.stats.collect import ignored_values

    tax = load_taxonomy(g.taxonomy)
    try:
        h.mapping(tax.name)
    except LabeltreeError:
        return ignored_values(tax, None)
    return ignored_values(tax, h)


COMMANDS = [stats_cmd, stats_merge_cmd]
