"""Decisions out of the database: the label CSV, its import, and Cityscapes Extended label images."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from labeltree.annotate import db
from labeltree.annotate.classes import sign_decisions
from labeltree.annotate.propose import read_components
from labeltree.core.taxonomy import load_taxonomy
from labeltree.datasets import cityscapes
from labeltree.datasets.base import Sample, read_label
from labeltree.errors import LabeltreeError
from labeltree.fsutil import MAX_TEXT_BYTES, atomic_path, read_input, write_png, write_text
from labeltree.parallel import pmap

CSV_COLUMNS = ["image", "component", "x0", "y0", "x1", "y1", "area", "class"]
REQUIRED_IMPORT = ("image", "component", "class")


def export_labels(workdir: str | Path, target: str | Path) -> int:
    """Write one CSV row per proposal (class empty while undecided); returns the row count."""
    con = db.connect(workdir)
    try:
        rows = con.execute("SELECT i.key, p.component, p.x0, p.y0, p.x1, p.y1, p.area, d.class "
                           "FROM proposals p JOIN images i ON i.id=p.image_id "
                           "LEFT JOIN decisions d ON d.proposal_id=p.id ORDER BY p.id").fetchall()
    finally:
        con.close()
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for r in rows:
        w.writerow([*tuple(r)[:7], r[7] if r[7] is not None else ""])
    write_text(target, buf.getvalue())
    return len(rows)


@dataclass
class ImportReport:
    set: int = 0  # undecided -> class
    changed: int = 0  # class -> other class
    unchanged: int = 0
    empty: int = 0  # rows with an empty class: left as they are
    changes: list[tuple[str, int, str | None, str]] = field(default_factory=list)  # image, component, old, new


def _rows(reader: csv.DictReader, source: Path) -> Iterator[dict[Any, Any]]:
    try:
        yield from reader
    except csv.Error as e:
        raise LabeltreeError(f"not a readable CSV ({e})", source, reader.line_num) from None


def import_labels(workdir: str | Path, source: str | Path, annotator: str = "import") -> ImportReport:
    """Validate every row first (image, component, class), then write all of them in one transaction."""
    source = Path(source)
    space = sign_decisions()
    try:
        text = read_input(source, "CSV", MAX_TEXT_BYTES).decode("utf-8-sig")
    except OSError as e:
        raise LabeltreeError(f"cannot read the CSV ({e.strerror})", source) from None
    except UnicodeDecodeError as e:
        raise LabeltreeError(f"not a text CSV (byte {e.start} is no UTF-8); give the CSV written by export-labels",
                             source) from None
    if "\0" in text:
        raise LabeltreeError("not a text CSV (it holds NUL bytes); give the CSV written by export-labels", source)
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in REQUIRED_IMPORT if c not in header]
    if missing:
        raise LabeltreeError(f"CSV header lacks {', '.join(missing)} (needs at least {', '.join(REQUIRED_IMPORT)}; "
                             f"found: {', '.join(header) or 'nothing'})", source, 1)
    reader.fieldnames = header
    con = db.connect(workdir)
    try:
        index = {(r["key"], r["component"]): r["id"] for r in con.execute(
            "SELECT p.id, p.component, i.key FROM proposals p JOIN images i ON i.id=p.image_id")}
        planned: dict[int, tuple[str, int, str, int]] = {}
        report = ImportReport()
        for row in _rows(reader, source):
            line = reader.line_num
            if None in row or any(v is None for v in row.values()):  # short rows get None, long ones a None key
                n = sum(v is not None for k, v in row.items() if k is not None) + len(row.get(None) or [])
                raise LabeltreeError(f"row has {n} fields but the header has {len(header)} ({', '.join(header)}): "
                                     "fix the row", source, line)
            image = (row.get("image") or "").strip()
            comp_s = (row.get("component") or "").strip()
            cls_s = (row.get("class") or "").strip()
            if not (comp_s.isascii() and comp_s.isdigit()):
                raise LabeltreeError(f"component must be a positive integer, got {comp_s!r}", source, line)
            pid = index.get((image, int(comp_s)))
            if pid is None:
                raise LabeltreeError(f"no proposal {image!r} component {comp_s} in this WORKDIR "
                                     "(image = the Cityscapes key as written by export-labels)", source, line)
            if not cls_s:
                report.empty += 1
                continue
            try:
                cls = space.parse(cls_s)
            except ValueError as e:
                raise LabeltreeError(str(e), source, line) from None
            if pid in planned and planned[pid][2] != cls:
                raise LabeltreeError(f"{image} component {comp_s} is given class {cls!r} here and "
                                     f"{planned[pid][2]!r} on line {planned[pid][3]}", source, line)
            planned[pid] = (image, int(comp_s), cls, line)
        with db.transaction(con):
            for pid, (image, comp, cls, _line) in planned.items():
                cur = db.current_class(con, pid)
                if cur == cls:
                    report.unchanged += 1
                    continue
                db.write_decision(con, pid, cur, cls, f"import:{source.name}", annotator, time.time())
                if cur is None:
                    report.set += 1
                else:
                    report.changed += 1
                report.changes.append((image, comp, cur, cls))
        return report
    finally:
        con.close()


@dataclass(frozen=True)
class _ExportJob:
    label: str
    components: str
    out: str
    lut: tuple[int, ...]  # component index -> exported value (index 0 unused)
    sign_id: int


def _export_one(job: _ExportJob) -> int:
    """Worker: Cityscapes ids everywhere, 2000 + ClassID on the pixels of labelled components."""
    tax = load_taxonomy("cityscapes")
    label = read_label(Sample.of_label(job.label, tax), tax)
    comps = read_components(Path(job.components))
    if comps.shape != label.shape:
        raise LabeltreeError(f"component map is {comps.shape}, label image {label.shape}: the label file changed "
                             "since propose; use a new WORKDIR", job.label)
    if np.any((comps > 0) & (label != job.sign_id)):
        raise LabeltreeError("the traffic-sign pixels differ from those proposed: the label file changed since "
                             "propose; use a new WORKDIR", job.label)
    lut = np.asarray(job.lut, dtype=np.uint16)
    if comps.max(initial=0) >= lut.size:
        raise LabeltreeError(f"component map has component {int(comps.max())}, the database only "
                             f"{lut.size - 1}", job.components)
    out = label.astype(np.uint16)
    sel = comps > 0
    out[sel] = lut[comps[sel]]
    write_png(job.out, out)
    return int(np.count_nonzero(out != label))


@dataclass
class ExportReport:
    images: int = 0
    labelled_components: int = 0
    relabelled_pixels: int = 0


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def export_extended(workdir: str | Path, out_root: str | Path, workers: int | None = None, progress: bool = True,
                    images: str = "none") -> ExportReport:
    """Write OUT_ROOT/gtFine/{split}/{city}/*_gtFine_labelIds.png as 16-bit Cityscapes Extended labels.

    `images`: "none", "symlink" or "copy" the leftImg8bit frames next to them, so that the
    output is a complete dataset for the cityscapes-extended reader.
    """
    workdir = Path(workdir).resolve()
    space = sign_decisions()
    con = db.connect(workdir)
    try:
        root = db.registered_root(con, workdir).resolve()
        out_root = Path(out_root).resolve()
        if _inside(out_root, root):
            raise LabeltreeError(f"OUT_ROOT {out_root} is inside the Cityscapes root {root}; the export never writes "
                                 "into the source dataset: choose a folder outside it", out_root)
        imgs = con.execute("SELECT id, split, key, city, label, image, components FROM images ORDER BY id").fetchall()
        dec: dict[int, dict[int, str]] = {}
        for r in con.execute("SELECT p.image_id, p.component, d.class FROM proposals p JOIN decisions d "
                             "ON d.proposal_id=p.id"):
            dec.setdefault(r["image_id"], {})[r["component"]] = r["class"]
        ncomp = {r[0]: r[1] for r in con.execute("SELECT image_id, MAX(component) FROM proposals GROUP BY image_id")}
    finally:
        con.close()
    report = ExportReport()
    jobs = []
    for r in imgs:
        n = ncomp.get(r["id"], 0)
        lut = [space.sign_id] * (n + 1)
        for comp, cls in dec.get(r["id"], {}).items():
            lut[comp] = space.export_value(cls)
            report.labelled_components += int(lut[comp] != space.sign_id)
        label = root / r["label"]
        jobs.append(_ExportJob(str(label), str(workdir / r["components"]),
                               str(cityscapes.label_path(out_root, r["split"], r["city"], r["key"])), tuple(lut),
                               space.sign_id))
    for n in pmap(_export_one, jobs, workers=workers, desc="export", progress=progress):
        report.images += 1
        report.relabelled_pixels += n
    if images != "none":
        for r in imgs:
            if not r["image"]:
                continue
            src = root / r["image"]
            dst = cityscapes.image_path(out_root, r["split"], r["city"], r["key"])
            if dst.exists() or dst.is_symlink():
                continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            if images == "symlink":
                dst.symlink_to(src)
            else:
                with atomic_path(dst) as tmp:
                    tmp.write_bytes(src.read_bytes())
    return report
