"""GTSDB layout: `NNNNN.ppm` frames + `gt.txt` boxes, the 600 / 300 split, and the per-pixel mask folder."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from labeltree.core.taxonomy import Taxonomy, load_taxonomy
from labeltree.datasets.authors_masks import DEFAULT_STYLE, STYLES, authors_items, authors_order, paint_authors
from labeltree.datasets.base import DatasetReader, LabeltreeWarning, Sample, Unknown, examples, warn
from labeltree.datasets.boxmask import (
    DEFAULT_MASK_MODE,
    MODES,
    Box,
    PaintItem,
    mask_format,
    paint,
    paint_items,
)
from labeltree.datasets.decode import image_size
from labeltree.errors import LabeltreeError
from labeltree.fsutil import check_input, read_input_text, write_png
from labeltree.parallel import pmap

GTSDB_SPLITS = {"train": range(0, 600), "test": range(600, 900)}
GT_FILE = "gt.txt"


MAX_COORD = 1 << 20  # a box coordinate beyond this is a broken line, not a frame (GTSDB frames are 1360x800)


def frame_name(index: int) -> str:
    """The release's frame file name: 00000.ppm .. 00899.ppm."""
    return f"{index:05d}.ppm"


def gt_line(frame: str, x0: int, y0: int, x1: int, y1: int, class_id: int) -> str:
    """One gt.txt line (inclusive pixel coordinates), as the release writes it."""
    return f"{frame};{x0};{y0};{x1};{y1};{class_id}"


GT_FORMAT = "'NNNNN.ppm;left;top;right;bottom;ClassID' (inclusive pixel coordinates)"
_FRAME = re.compile(r"^\d{5}$")
FRAME_SUFFIXES = (".ppm", ".png", ".jpg", ".jpeg")


@dataclass
class GtFile:
    """A parsed gt.txt: boxes per frame file name plus what was reported on the way."""

    path: Path
    lines: int = 0  # non-empty lines read
    boxes: dict[str, list[Box]] = field(default_factory=dict)
    duplicates: list[tuple[int, int]] = field(default_factory=list)  # (line, line it repeats)
    clipped: list[int] = field(default_factory=list)  # lines whose box was clipped to the frame
    dropped: list[int] = field(default_factory=list)  # lines whose box lies wholly outside the frame

    @property
    def n_boxes(self) -> int:
        return sum(len(b) for b in self.boxes.values())


class DuplicateLinesWarning(LabeltreeWarning):
    """gt.txt repeats lines; one box is kept each (`gtsdb-masks --style authors` paints both and says so)."""


def _duplicates_note(path: Path, duplicates: list[tuple[int, int]], painted_twice: bool) -> str:
    what = "each painted again where it stands, as in the authors' masks" if painted_twice else "one box kept each"
    return (f"{path}: {len(duplicates)} duplicate line(s), {what}: "
            + examples([f"line {a} repeats line {b}" for a, b in duplicates]))


def load_gt(path: str | Path, taxonomy: Taxonomy | None = None,
            frame_sizes: dict[str, tuple[int, int]] | None = None) -> GtFile:
    """Parse gt.txt strictly, keyed by frame file name ('00000.ppm').

    Errors (LabeltreeError with file and line): malformed lines, non-integer fields, ClassIDs the
    taxonomy lacks, empty boxes (right = left - 1: zero width in inclusive coordinates), inverted boxes
    (right < left or bottom < top). Warnings (LabeltreeWarning):
    exact duplicate lines (one box kept), boxes reaching outside the frame (clipped; `frame_sizes`
    maps frame stem -> (height, width); negative coordinates are clipped even without it), boxes
    wholly outside the frame (dropped).
    """
    path = Path(path)
    tax = taxonomy or load_taxonomy("gtsdb")
    class_ids = set(tax.ids)
    try:
        text = read_input_text(path, "gt.txt")
    except FileNotFoundError:
        raise LabeltreeError(f"GTSDB ground truth not found (searched {path.resolve()})", path) from None
    except (OSError, UnicodeDecodeError) as e:
        raise LabeltreeError(f"cannot read gt.txt ({e}); expected text lines {GT_FORMAT}", path) from None
    gt = GtFile(path)
    seen: dict[tuple, int] = {}
    clip_notes: list[str] = []
    drop_notes: list[str] = []
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        gt.lines += 1
        parts = [p.strip() for p in line.split(";")]
        if len(parts) != 6 or not parts[0]:
            raise LabeltreeError(f"malformed line {line!r}: expected {GT_FORMAT}", path, n)
        try:
            x0, y0, x1, y1, k = (int(p) for p in parts[1:])
        except ValueError:
            raise LabeltreeError(f"malformed line {line!r}: coordinates and ClassID must be integers "
                                 f"({GT_FORMAT})", path, n) from None
        if any(abs(v) > MAX_COORD for v in (x0, y0, x1, y1)):
            raise LabeltreeError(f"coordinate out of range (|value| > {MAX_COORD}) in line {line!r}: GTSDB frames are "
                                 "1360x800; fix or remove the line", path, n)
        if k not in class_ids:
            raise LabeltreeError(f"ClassID {k} is not a {tax.name} class (ids {min(class_ids)}..{max(class_ids)}) "
                                 f"in line {line!r}", path, n)
        if (x1 == x0 - 1 and y1 >= y0) or (y1 == y0 - 1 and x1 >= x0):
            which = "zero width: right = left - 1" if x1 == x0 - 1 else "zero height: bottom = top - 1"
            raise LabeltreeError(f"empty box ({which}) in line {line!r}: coordinates are inclusive (a one-pixel box "
                                 "has right = left); was the file written with exclusive right/bottom? fix or remove "
                                 "the line", path, n)
        if x1 < x0 or y1 < y0:
            which = "right < left" if x1 < x0 else "bottom < top"
            raise LabeltreeError(f"inverted box ({which}) in line {line!r}: coordinates are left;top;right;bottom, "
                                 "inclusive; fix the line (swap the values?)", path, n)
        sig = (parts[0], x0, y0, x1, y1, k)
        if sig in seen:
            gt.duplicates.append((n, seen[sig]))
            continue
        seen[sig] = n
        stem = Path(parts[0]).stem
        h, w = frame_sizes[stem] if frame_sizes and stem in frame_sizes else (None, None)
        cx0, cy0 = max(x0, 0), max(y0, 0)
        cx1 = min(x1, w - 1) if w is not None else x1
        cy1 = min(y1, h - 1) if h is not None else y1
        if cx1 < cx0 or cy1 < cy0:
            gt.dropped.append(n)
            drop_notes.append(f"line {n} ({parts[0]} {x0},{y0}-{x1},{y1} in a {w}x{h} frame)")
            continue
        unclipped = None
        if (cx0, cy0, cx1, cy1) != (x0, y0, x1, y1):
            gt.clipped.append(n)
            clip_notes.append(f"line {n} ({parts[0]} {x0},{y0}-{x1},{y1} -> {cx0},{cy0}-{cx1},{cy1})")
            unclipped = (x0, y0, x1, y1)
        gt.boxes.setdefault(parts[0], []).append(Box(cx0, cy0, cx1, cy1, k, n, unclipped))
    if gt.duplicates:
        warn(_duplicates_note(path, gt.duplicates, painted_twice=False), DuplicateLinesWarning)
    if clip_notes:
        warn(f"{path}: {len(clip_notes)} box(es) reach outside their frame and were clipped: {examples(clip_notes)}")
    if drop_notes:
        warn(f"{path}: {len(drop_notes)} box(es) lie wholly outside their frame (empty after clipping) and were "
              f"dropped: {examples(drop_notes)}")
    return gt


def parse_gt_txt(path: Path, taxonomy: Taxonomy | None = None) -> dict[str, list[Box]]:
    """gt.txt -> {frame file name: boxes}; see `load_gt` for what is refused and reported."""
    return load_gt(path, taxonomy).boxes


class GTSDBReader(DatasetReader):
    """`00000.ppm`..`00899.ppm` + `gt.txt`; train = 00000-00599, test = 00600-00899.

    Frames are PPM in the release; PNG/JPEG conversions are accepted when no PPM frames exist, in
    the root or one sub-folder (e.g. `frames-jpeg/`). Boxes are clipped to each frame's size (read
    from the image header). gt.txt lines for frames that are not there are reported. `read_label`
    renders the per-pixel mask (fine shapes, 16-bit 2000 + ClassID) so label statistics work too.
    """

    layout = "gtsdb"

    def __init__(self, taxonomy: Taxonomy, root: Path, unknown: Unknown = "error", gt: str | Path | None = None,
                 mask_mode: str = DEFAULT_MASK_MODE):
        super().__init__(taxonomy, root, unknown)
        self.gt_path = Path(gt) if gt is not None else self.root / GT_FILE
        self.mask_mode = mask_mode
        self._frames: dict[str, Path] | None = None
        self._gt: GtFile | None = None
        self._sizes: dict[str, tuple[int, int]] = {}

    def splits(self) -> list[str]:
        return list(GTSDB_SPLITS)

    @staticmethod
    def _frames_in(d: Path, suffixes: Iterable[str]) -> dict[str, Path]:
        """Frame stem -> file in `d`; image files not named NNNNN are named in one warning when frames are here."""
        out: dict[str, Path] = {}
        skipped: list[str] = []
        for p in sorted(d.iterdir()):
            if p.suffix.lower() not in suffixes or p.is_dir():
                continue
            if _FRAME.match(p.stem) and p.stem not in out:
                out[p.stem] = check_input(p, "GTSDB frame")  # a FIFO or device named like a frame: refused
            else:
                skipped.append(repr(p.name)[1:-1])
        if out and skipped:
            warn(f"{d}: {len(skipped)} image file(s) left out: GTSDB frames are named NNNNN (five digits, as gt.txt "
                 f"names them): {examples(skipped)}")
        return out

    def frames(self) -> dict[str, Path]:
        """Frame stem -> image file, in stem order: PPM first, else PNG/JPEG, in the root or a sub-folder."""
        if self._frames is None:
            dirs = [self.root] + sorted(p for p in self.root.iterdir() if p.is_dir())
            found: dict[str, Path] = {}
            for suffixes in ((".ppm",), FRAME_SUFFIXES[1:]):
                for d in dirs:
                    found = self._frames_in(d, suffixes)
                    if found:
                        break
                if found:
                    break
            self._frames = dict(sorted(found.items()))
        return self._frames

    def frame_size(self, stem: str) -> tuple[int, int]:
        if stem not in self._sizes:
            self._sizes[stem] = image_size(self.frames()[stem])
        return self._sizes[stem]

    def ground_truth(self) -> GtFile:
        """The parsed, clipped gt.txt (parsed once per reader; warnings issued then)."""
        if self._gt is None:
            if not self.gt_path.exists():
                raise LabeltreeError(f"GTSDB gt.txt not found (searched {self.gt_path.resolve()}); pass --gt FILE "
                                     "if it lives elsewhere", self.gt_path)
            frames = self.frames()
            sizes = {stem: self.frame_size(stem) for stem in frames}
            self._gt = load_gt(self.gt_path, self.taxonomy, sizes)
            missing = sorted(name for name in self._gt.boxes if Path(name).stem not in frames)
            if missing:
                warn(f"{self.gt_path}: {len(missing)} frame(s) named in gt.txt have no image under {self.root}: "
                      f"{examples(missing)}; their boxes are not used")
        return self._gt

    def _samples_in(self, stems: Iterable[str], split: str) -> list[Sample]:
        gt = self.ground_truth()
        by_stem: dict[str, list[Box]] = {}
        for name, boxes in gt.boxes.items():
            by_stem.setdefault(Path(name).stem, []).extend(boxes)
        frames = self.frames()
        return [Sample(self.taxonomy.name, split, stem, frames[stem], None,
                       boxes=tuple(by_stem.get(stem, ())), size=self.frame_size(stem)) for stem in stems]

    def samples(self, split: str) -> list[Sample]:
        if split not in GTSDB_SPLITS:
            raise LabeltreeError(f"GTSDB splits are {', '.join(GTSDB_SPLITS)}, not '{split}'", self.root)
        rng = GTSDB_SPLITS[split]
        return self._samples_in([s for s in self.frames() if int(s) in rng], split)

    def all_samples(self) -> list[Sample]:
        """Every frame found, including any numbered beyond the 900 of the release (split 'other')."""
        out = []
        for stem in self.frames():
            split = next((k for k, r in GTSDB_SPLITS.items() if int(stem) in r), "other")
            out.extend(self._samples_in([stem], split))
        return out


# -- the per-pixel mask folder (the authors' GTSDB masks: {stem}_labelIds.png) -----------------------

MASK_SUFFIX = "_labelIds.png"
TRAIN_MASK_SUFFIX = "_labelTrainIds.png"


def mask_path(out_dir: str | Path, key: str) -> Path:
    """A per-pixel mask in the authors' flat folder: `{stem}_labelIds.png` (16-bit, 2000 + ClassID)."""
    return Path(out_dir) / f"{key}{MASK_SUFFIX}"


def train_mask_path(out_dir: str | Path, key: str) -> Path:
    """Train ids of a mask (8-bit, ClassID, 255 = ignore): `{stem}_labelTrainIds.png`."""
    return Path(out_dir) / f"{key}{TRAIN_MASK_SUFFIX}"


@dataclass(frozen=True)
class _MaskTask:
    """One GTSDB frame's mask to paint and write: a worker's input."""

    out: str
    height: int
    width: int
    items: tuple[PaintItem, ...]
    unlabeled: int
    dtype: str
    style: str = DEFAULT_STYLE


def _write_job(job: _MaskTask) -> int:
    painter = paint_authors if job.style == "authors" else paint
    mask = painter(job.items, job.height, job.width, job.unlabeled, np.dtype(job.dtype).type)
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


def write_gtsdb_masks(gtsdb_dir: str | Path, out_dir: str | Path, mode: str = DEFAULT_MASK_MODE,
                      gt: str | Path | None = None, encoding: str = "16bit", workers: int | None = None,
                      skip_existing: bool = False,
                      progress: bool = True, taxonomy: Taxonomy | str = "gtsdb",
                      style: str = DEFAULT_STYLE, force: bool = True) -> MaskReport:
    """Write `{stem}_labelIds.png` for every frame under `gtsdb_dir` (all-unlabeled for frames without signs).

    Frame sizes come from the image headers (no pixel decoding). Each file is written atomically,
    so an interrupted run leaves only complete masks; `skip_existing` resumes one. `style` 'clean'
    is today's geometry (smaller sign on top); 'authors' reproduces the authors' release
    (`datasets.authors_masks`: their rasteriser, paint order and duplicated lines).
    """
    if style not in STYLES:
        raise LabeltreeError(f"mask style must be one of {', '.join(STYLES)}, not '{style}'")
    tax = taxonomy if isinstance(taxonomy, Taxonomy) else load_taxonomy(taxonomy)
    fmt = mask_format(encoding, tax)
    if mode not in MODES:
        raise LabeltreeError(f"mask mode must be one of {', '.join(MODES)}, not '{mode}'")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise LabeltreeError("output must be a folder", out)
    src = Path(gtsdb_dir).resolve()
    if out.resolve() == src or src in out.resolve().parents:
        raise LabeltreeError(f"OUT_DIR must lie outside the GTSDB folder {src} (no command writes into its input); "
                             "choose another folder", out)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reader = GTSDBReader(tax, Path(gtsdb_dir), gt=gt)
        if not reader.frames():
            raise LabeltreeError(f"no GTSDB frames (NNNNN.ppm, or .png/.jpg) found in {Path(gtsdb_dir).resolve()} "
                                 "or its sub-folders", gtsdb_dir)
        samples = reader.all_samples()
    gtf = reader.ground_truth() if style == "authors" else None
    if gtf is not None and gtf.duplicates:  # this style paints every copy: say so instead of 'one box kept'
        caught = [w for w in caught if not issubclass(w.category, DuplicateLinesWarning)]
        with warnings.catch_warnings(record=True) as again:
            warnings.simplefilter("always")
            warn(_duplicates_note(Path(gtf.path), gtf.duplicates, painted_twice=True))
        caught += again
    report = MaskReport(out, warnings=[str(w.message) for w in caught])
    for w in caught:  # pass them on to the caller (the CLI prints them)
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    jobs = []
    line_text: dict[int, str] = {}
    if gtf is not None:  # the test frames are painted in the string order of their gt.txt lines
        raw = read_input_text(gtf.path, "gt.txt").splitlines()
        line_text = {n: t.strip() for n, t in enumerate(raw, start=1)}
    for s in samples:
        report.frames += 1
        report.boxes += len(s.boxes)
        target = mask_path(out, s.key)
        if skip_existing and target.exists():
            report.skipped += 1
            continue
        if not force and target.exists():
            raise LabeltreeError("the mask exists; pass --force to replace the masks in the folder, or "
                                 "--skip-existing to keep them and write only the missing ones", target)
        h, w = s.size  # type: ignore[misc]
        if gtf is not None:
            lines = {b.line for b in s.boxes}
            ordered = authors_order(s.boxes, s.split, [d for d in gtf.duplicates if d[1] in lines], line_text)
            items = tuple(authors_items(ordered, mode, tax, fmt.offset))
        else:
            items = tuple(paint_items(s.boxes, mode, tax, fmt.offset))
        jobs.append(_MaskTask(str(target), h, w, items, fmt.unlabeled, np.dtype(fmt.dtype).name, style))
    out.mkdir(parents=True, exist_ok=True)
    for px in pmap(_write_job, jobs, workers, desc=f"gtsdb masks ({mode}, {style})", progress=progress, chunksize=8):
        report.written += 1
        report.labelled_pixels += px
    return report
