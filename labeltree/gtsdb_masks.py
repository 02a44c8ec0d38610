"""GTSDB boxes -> per-pixel masks (DESIGN §3 "GTSDB per-pixel", the authors' released encoding).

`fine` inscribes each sign's shape (the taxonomy's `shape`: circle, triangle, inverted-triangle,
octagon, diamond) in its inclusive box; `coarse` fills the box. Where boxes overlap, the smaller
sign is painted last (on top): a small sign in front of a big one is the usual case in street
scenes, and the big box's corners are background anyway. Encodings: '16bit' = the taxonomy's
encoding (0 = unlabeled, 2000 + ClassID), '8bit' = ClassID with 255 = unlabeled for tools that only
take 8-bit labels. `render_mask` is what the trainer calls in memory; `write_gtsdb_masks` writes a
folder of `{stem}_labelIds.png` over a process pool.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from .errors import LabeltreeError
from .fsutil import write_png
from .parallel import pmap
from .readers import Box, GTSDBReader, open_dataset
from .shapes import shape_mask
from .taxonomy import DTYPE_MAX, Taxonomy, load_taxonomy

MaskMode = Literal["fine", "coarse"]
MaskEncoding = Literal["16bit", "8bit"]
MODES: tuple[str, ...] = ("fine", "coarse")
ENCODINGS: tuple[str, ...] = ("16bit", "8bit")
MASK_SUFFIX = "_labelIds.png"

# (x0, y0, x1, y1, value, shape or None for a filled box), painted in list order
PaintItem = tuple[int, int, int, int, int, str | None]


@dataclass(frozen=True)
class MaskFormat:
    dtype: type
    unlabeled: int
    offset: int


def mask_format(encoding: str, taxonomy: Taxonomy) -> MaskFormat:
    """Stored values of a mask encoding, from the gtsdb taxonomy (16bit) or the 8-bit convention."""
    if encoding == "16bit":
        unl = taxonomy.encoding.unlabeled if taxonomy.encoding.unlabeled is not None else 0
        return MaskFormat(np.uint16, unl, taxonomy.encoding.offset)
    if encoding == "8bit":
        fmt = MaskFormat(np.uint8, DTYPE_MAX["uint8"], 0)
        if max(taxonomy.ids) >= fmt.unlabeled:
            raise LabeltreeError(f"taxonomy '{taxonomy.name}' has class ids up to {max(taxonomy.ids)}; they do not "
                                 "fit an 8-bit mask with 255 = unlabeled: use --encoding 16bit")
        return fmt
    raise LabeltreeError(f"mask encoding must be one of {', '.join(ENCODINGS)}, not '{encoding}'")


def paint_items(boxes: Iterable[Box], mode: str, taxonomy: Taxonomy, offset: int) -> list[PaintItem]:
    """Boxes in painting order (largest first, so the smallest ends on top; ties by gt.txt line)."""
    if mode not in MODES:
        raise LabeltreeError(f"mask mode must be one of {', '.join(MODES)}, not '{mode}'")
    items = []
    full = [(b.full, b) for b in boxes]  # shapes span the whole sign; paint() cuts what lies off the frame
    for (x0, y0, x1, y1), b in sorted(full, key=lambda fb: (-(fb[0][2] - fb[0][0] + 1) * (fb[0][3] - fb[0][1] + 1),
                                                          fb[1].line, fb[0][1], fb[0][0])):
        if x1 < x0 or y1 < y0:
            raise LabeltreeError(f"inverted box {x0},{y0}-{x1},{y1} (ClassID {b.class_id})", None, b.line or None)
        shape = None
        if mode == "fine":
            c = taxonomy.find(b.class_id)
            if c is None:
                raise LabeltreeError(f"ClassID {b.class_id} is not a {taxonomy.name} class", None, b.line or None)
            if c.shape is None:
                raise LabeltreeError(f"class {c.id} '{c.name}' has no 'shape' in taxonomy {taxonomy.name}: add one "
                                     "or use --mode coarse")
            shape = c.shape
        elif taxonomy.find(b.class_id) is None:
            raise LabeltreeError(f"ClassID {b.class_id} is not a {taxonomy.name} class", None, b.line or None)
        items.append((x0, y0, x1, y1, b.class_id + offset, shape))
    return items


def paint(items: Iterable[PaintItem], height: int, width: int, unlabeled: int, dtype: type) -> np.ndarray:
    """Paint items in order onto an unlabeled canvas; parts outside the frame are cut off."""
    out = np.full((height, width), unlabeled, dtype=dtype)
    for x0, y0, x1, y1, value, shape in items:
        cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, width - 1), min(y1, height - 1)
        if cx1 < cx0 or cy1 < cy0:
            continue
        region = out[cy0:cy1 + 1, cx0:cx1 + 1]
        if shape is None:
            region[...] = value
        else:
            m = shape_mask(shape, y1 - y0 + 1, x1 - x0 + 1)[cy0 - y0:cy1 - y0 + 1, cx0 - x0:cx1 - x0 + 1]
            region[m] = value
    return out


def render_mask(boxes: Iterable[Box], height: int, width: int, mode: str = "fine", encoding: str = "16bit",
                taxonomy: Taxonomy | None = None) -> np.ndarray:
    """The per-pixel mask of one frame: (height, width) uint16 (16bit) or uint8 (8bit)."""
    tax = taxonomy or load_taxonomy("gtsdb")
    fmt = mask_format(encoding, tax)
    return paint(paint_items(boxes, mode, tax, fmt.offset), height, width, fmt.unlabeled, fmt.dtype)


@dataclass(frozen=True)
class _Job:
    out: str
    height: int
    width: int
    items: tuple[PaintItem, ...]
    unlabeled: int
    dtype: str


def _write_job(job: _Job) -> int:
    mask = paint(job.items, job.height, job.width, job.unlabeled, np.dtype(job.dtype).type)
    write_png(job.out, mask)
    return int(np.count_nonzero(mask != job.unlabeled))


@dataclass
class MaskReport:
    out_dir: Path
    frames: int = 0
    boxes: int = 0
    written: int = 0
    skipped: int = 0
    labelled_pixels: int = 0
    warnings: list[str] = field(default_factory=list)


def write_gtsdb_masks(gtsdb_dir: str | Path, out_dir: str | Path, mode: str = "fine", gt: str | Path | None = None,
                      encoding: str = "16bit", workers: int | None = None, skip_existing: bool = False,
                      progress: bool = True, taxonomy: Taxonomy | str = "gtsdb") -> MaskReport:
    """Write `{stem}_labelIds.png` for every frame under `gtsdb_dir` (all-unlabeled for frames without signs).

    Frame sizes come from the image headers (no pixel decoding). Each file is written atomically,
    so an interrupted run leaves only complete masks; `skip_existing` resumes one.
    """
    tax = taxonomy if isinstance(taxonomy, Taxonomy) else load_taxonomy(taxonomy)
    fmt = mask_format(encoding, tax)
    if mode not in MODES:
        raise LabeltreeError(f"mask mode must be one of {', '.join(MODES)}, not '{mode}'")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise LabeltreeError("output must be a folder", out)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reader = open_dataset(tax, gtsdb_dir, gt=gt)
        assert isinstance(reader, GTSDBReader)
        if not reader.frames():
            raise LabeltreeError(f"no GTSDB frames (NNNNN.ppm, or .png/.jpg) found in {Path(gtsdb_dir).resolve()} "
                                 "or its sub-folders", gtsdb_dir)
        samples = reader.all_samples()
    report = MaskReport(out, warnings=[str(w.message) for w in caught])
    for w in caught:  # pass them on to the caller (the CLI prints them)
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    jobs = []
    for s in samples:
        report.frames += 1
        report.boxes += len(s.boxes)
        target = out / f"{s.key}{MASK_SUFFIX}"
        if skip_existing and target.exists():
            report.skipped += 1
            continue
        h, w = s.size  # type: ignore[misc]
        jobs.append(_Job(str(target), h, w, tuple(paint_items(s.boxes, mode, tax, fmt.offset)), fmt.unlabeled,
                         np.dtype(fmt.dtype).name))
    out.mkdir(parents=True, exist_ok=True)
    for px in pmap(_write_job, jobs, workers, desc=f"gtsdb masks ({mode})", progress=progress, chunksize=8):
        report.written += 1
        report.labelled_pixels += px
    return report
