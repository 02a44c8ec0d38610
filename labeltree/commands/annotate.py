"""`labeltree annotate-extended`: build Cityscapes Extended (sign classes on Cityscapes signs)."""

from __future__ import annotations

from pathlib import Path

import click

from labeltree.commands._options import split_names
from labeltree.errors import LabeltreeError

_PATH = click.Path(path_type=Path)


@click.group("annotate-extended")
def annotate_group() -> None:
    """Label Cityscapes traffic signs with the 43 GTSDB classes (Cityscapes Extended).

    \b
    Workflow:
      labeltree annotate-extended propose ~/data/cityscapes work/          # sign proposals -> work/
      labeltree annotate-extended serve work/                              # label them in a browser
      labeltree annotate-extended export work/ ~/data/cityscapes-extended  # 16-bit label images
    """


@annotate_group.command("propose")
@click.argument("cityscapes_root", type=_PATH)
@click.argument("workdir", type=_PATH)
@click.option("--splits", default=None, callback=split_names,
              help="Comma-separated splits (default: train,val where present).")
@click.option("--min-size", default=20, show_default=True, type=int,
              help="Components whose box is smaller on either side stay plain 'traffic sign'.")
@click.option("--split-touching", is_flag=True, help="Separate touching signs (distance transform + watershed).")
@click.option("--rule", type=click.Choice(["authors", "connected"]), default="authors", show_default=True,
              help="authors: drop 4-connected components under --min-size, then 8-connect the rest (the authors' "
                   "annotation tool); connected: 8-connected components, then the size filter.")
@click.option("--workers", default=None, type=click.IntRange(min=1), help="Processes (default: all cores).")
def propose_cmd(cityscapes_root: Path, workdir: Path, splits: str | None, min_size: int, split_touching: bool,
                rule: str, workers: int | None) -> None:
    """Find sign instances (connected components of the traffic-sign mask, --rule) to label.

    Re-running adds images that are new and never touches decisions already made.

    \b
    Example:
      labeltree annotate-extended propose ~/data/cityscapes work/ --splits val --min-size 20
    """
    from labeltree.annotate.propose import propose

    split_list = [s.strip() for s in splits.split(",") if s.strip()] if splits else None
    r = propose(cityscapes_root, workdir, split_list, min_size, split_touching, workers, rule=rule)
    per = ", ".join(f"{s} {n}" for s, n in r.splits.items()) or "none"
    click.echo(f"{r.images_new} new images ({per}), {r.images_known} already known; "
               f"{r.proposals_new} new proposals, {r.small} components under {min_size} px left as 'traffic sign'")
    if split_touching:
        click.echo(f"--split-touching split {r.split} components into several signs")
    click.echo(f"database: {workdir / 'annotations.sqlite'}")


@annotate_group.command("serve")
@click.argument("workdir", type=_PATH)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (default: this machine only).")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(1, 65535))
@click.option("--order", type=click.Choice(["image", "confidence"]), default="image", show_default=True,
              help="Proposal order: image by image, or most confident model suggestion first (after suggest).")
@click.option("--gtsdb", "gtsdb_dir", type=_PATH, default=None,
              help="GTSDB folder (gt.txt + 00000.ppm ...): each class button shows pictures of that class cropped "
                   "from its largest boxes (cached in WORKDIR/gtsdb-examples/).")
@click.option("--examples", "per_class", default=4, show_default=True, type=click.IntRange(1, 12),
              help="Example pictures per class with --gtsdb.")
def serve_cmd(workdir: Path, host: str, port: int, order: str, gtsdb_dir: Path | None, per_class: int) -> None:
    """Open the labelling page: http://HOST:PORT/ (several tabs / annotators may work at once).

    \b
    Example:
      labeltree annotate-extended serve work/ --port 8765 --gtsdb ~/data/FullIJCNN2013
      # then open http://127.0.0.1:8765/?annotator=alice
    """
    from labeltree.annotate.server import allowed_hosts_for, check_bind, create_app, serve

    check_bind(host, port)  # before the (slow) app build: a port in use is one line, exit 2

    # built before binding, so that a WORKDIR or --gtsdb that is not ready fails here with a clear message
    app = create_app(workdir, allowed_hosts=allowed_hosts_for(host), order=order, gtsdb=gtsdb_dir,
                     examples_per_class=per_class)
    ex = app.state.annotation.examples
    if ex is not None:
        how = "reused" if ex.reused else "cropped"
        missing = ex.missing()
        click.echo(f"GTSDB examples: {how} {ex.n_examples} pictures of {len(ex.by_class) - len(missing)} classes "
                   f"from {ex.source} (cache {ex.folder})"
                   + (f"; {len(missing)} classes with no box in the frames found keep their glyph" if missing else ""),
                   err=True)
    if host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(f"warning: serving on {host}: anyone who can reach it can label and read frames", err=True)
    click.echo(f"labelling page: http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/  (Ctrl+C stops)",
               err=True)
    serve(workdir, host, port, app=app)


@annotate_group.command("export-labels")
@click.argument("workdir", type=_PATH)
@click.argument("csv_file", type=_PATH)
@click.option("--force", is_flag=True, help="Replace an existing CSV_FILE.")
def export_labels_cmd(workdir: Path, csv_file: Path, force: bool) -> None:
    """Write one CSV row per proposal: image, component, x0, y0, x1, y1, area, class.

    \b
    Example:
      labeltree annotate-extended export-labels work/ signs.csv
    """
    from labeltree.annotate.export import export_labels
    from labeltree.fsutil import check_outputs

    check_outputs({"CSV_FILE": csv_file}, [workdir, workdir / "annotations.sqlite"], force)
    n = export_labels(workdir, csv_file)
    click.echo(f"{n} proposals written to {csv_file}")


@annotate_group.command("import")
@click.argument("workdir", type=_PATH)
@click.argument("csv_file", type=_PATH)
def import_cmd(workdir: Path, csv_file: Path) -> None:
    """Set decisions from a CSV (columns image, component, class; class = ClassID, other or not-a-sign).

    Every row is checked before anything is written.

    \b
    Example:
      labeltree annotate-extended import work/ signs.csv
    """
    from labeltree.annotate.export import import_labels

    r = import_labels(workdir, csv_file)
    click.echo(f"{r.set} set, {r.changed} changed, {r.unchanged} unchanged, {r.empty} rows with empty class skipped")
    for image, comp, old, new in r.changes[:20]:
        click.echo(f"  {image} #{comp}: {old or '(undecided)'} -> {new}")
    if len(r.changes) > 20:
        click.echo(f"  ... and {len(r.changes) - 20} more")


@annotate_group.command("export")
@click.argument("workdir", type=_PATH)
@click.argument("out_root", type=_PATH)
@click.option("--images", type=click.Choice(["none", "symlink", "copy"]), default="symlink", show_default=True,
              help="Also put the leftImg8bit frames into OUT_ROOT.")
@click.option("--workers", default=None, type=click.IntRange(min=1), help="Processes (default: all cores).")
@click.option("--force", is_flag=True, help="Replace the label images of an earlier export in OUT_ROOT (without it "
                                            "an OUT_ROOT holding gtFine/ files is refused before anything is written).")
def export_cmd(workdir: Path, out_root: Path, images: str, workers: int | None, force: bool) -> None:
    """Write 16-bit Cityscapes Extended labels: OUT_ROOT/gtFine/{split}/{city}/*_gtFine_labelIds.png.

    Labelled sign pixels become 2000 + ClassID; every other pixel keeps its Cityscapes id.

    \b
    Example:
      labeltree annotate-extended export work/ ~/data/cityscapes-extended
      labeltree stats cityscapes-extended ~/data/cityscapes-extended
    """
    from labeltree.annotate.export import export_extended
    from labeltree.fsutil import check_output

    check_output(out_root, "OUT_ROOT", folder=True)
    gt = out_root / "gtFine"
    if not force and gt.is_dir() and next((p for p in gt.rglob("*") if p.is_file()), None) is not None:
        raise LabeltreeError("OUT_ROOT holds label images (gtFine/) of an earlier export; pass --force to replace "
                             "them, or choose another OUT_ROOT", out_root)
    r = export_extended(workdir, out_root, workers=workers, images=images)
    if r.images == 0:
        raise LabeltreeError("the database has no images; run propose first", workdir)
    click.echo(f"{r.images} label images written to {out_root / 'gtFine'}; {r.labelled_components} labelled signs, "
               f"{r.relabelled_pixels} pixels relabelled")


@annotate_group.command("suggest")
@click.argument("workdir", type=_PATH)
@click.argument("checkpoint", type=_PATH)
@click.option("--device", default=None, help="cpu, cuda, cuda:N (default: cuda when available).")
@click.option("--sliding", is_flag=True, help="Sliding-window inference at the training crop size.")
def suggest_cmd(workdir: Path, checkpoint: Path, device: str | None, sliding: bool) -> None:
    """Pre-fill every proposal with a trained model's Level-3 sign class and its confidence.

    The page shows the guess as a one-key accept (Space); `serve --order confidence` shows the
    most confident guesses first. Decisions are never changed.

    \b
    Example:
      labeltree annotate-extended suggest work/ runs/paper/best.pt
      labeltree annotate-extended serve work/ --order confidence
    """
    from labeltree.annotate.suggest import suggest

    r = suggest(workdir, checkpoint, device=device, sliding=sliding)
    click.echo(f"{r.proposals} proposals in {r.images} images got a suggestion"
               + (f"; {r.skipped_images} images without a photo skipped" if r.skipped_images else ""))


COMMANDS = [annotate_group]
