"""Readers for the datasets' native layouts (DESIGN §3).

Every downstream tool (stats, evaluate, annotate-extended, the trainer) reads through
`open_dataset(...)`: a deterministic list of `Sample`s per split, and `read_label` that decodes a
label file ONCE into the stored values (uint8/uint16 numpy array), never via RGB. The PNG decoder is
chosen in one place, `labeltree.decode.decode_array` (the fastest exact one; see that module).

Bad input raises `LabeltreeError` naming the file (and gt.txt line); recoverable problems (a frame
without its label, a box clipped to its frame, a duplicate gt.txt line) are reported with
`warnings.warn(..., LabeltreeWarning)`, one warning per problem kind and file, listing examples.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from .decode import (
    PHOTO_CHANGE,
    PNG_GREY,
    PNG_PALETTE,
    change_fraction,
    decode_array,
    image_size,
    read_file_and_header,
    read_rgb,
)
from .errors import LabeltreeError
from .taxonomy import DTYPE_MAX, Taxonomy, load_taxonomy, normalise_name

Unknown = Literal["error", "ignore"]
# a single-channel file is called a photo when its values change at most neighbour pairs (see
# decode.change_fraction), it has many distinct values and is big enough for that to mean something
PHOTO_MIN_VALUES = 24
PHOTO_MIN_PIXELS = 1024
UNKNOWN_CHOICES: tuple[str, ...] = ("error", "ignore")


class LabeltreeWarning(UserWarning):
    """A recoverable problem in the input data (reported, then worked around)."""


def _warn(message: str) -> None:
    warnings.warn(message, LabeltreeWarning, stacklevel=3)


def _examples(items: Sequence[str], n: int = 3) -> str:
    shown = ", ".join(str(i) for i in items[:n])
    return shown + (f", ... ({len(items) - n} more)" if len(items) > n else "")


@dataclass(frozen=True)
class Box:
    """A GTSDB box: inclusive pixel coordinates, ClassID, and the gt.txt line it came from."""

    x0: int
    y0: int
    x1: int
    y1: int
    class_id: int
    line: int = 0
    # the box as written in gt.txt when it was clipped to the frame: a sign cut by the frame edge keeps
    # its full shape (cut off), it is not squeezed into the visible part
    unclipped: tuple[int, int, int, int] | None = None

    @property
    def full(self) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) of the whole sign, also the part outside the frame."""
        return self.unclipped if self.unclipped is not None else (self.x0, self.y0, self.x1, self.y1)

    @property
    def area(self) -> int:
        return (self.x1 - self.x0 + 1) * (self.y1 - self.y0 + 1)

    @property
    def width(self) -> int:
        return self.x1 - self.x0 + 1

    @property
    def height(self) -> int:
        return self.y1 - self.y0 + 1


@dataclass(frozen=True)
class Sample:
    dataset: str  # taxonomy name
    split: str
    key: str  # stable id: Cityscapes "{city}_{seq}_{frame}", Vistas / GTSDB file stem
    image: Path | None
    label: Path | None  # dense label file; None for box datasets
    instances: Path | None = None
    city: str | None = None
    boxes: tuple[Box, ...] = field(default=())
    size: tuple[int, int] | None = None  # (height, width) from the image header, where the reader needed it


# -- label values ----------------------------------------------------------------------------------

def known_values(taxonomy: Taxonomy) -> np.ndarray:
    """Boolean LUT over every value the label dtype can hold: True where the taxonomy defines it."""
    size = DTYPE_MAX.get(taxonomy.encoding.dtype, 65535) + 1
    size = max(size, taxonomy.lut_size)
    lut = np.zeros(size, dtype=bool)
    for c in taxonomy.classes:
        v = taxonomy.stored_value(c.id)
        if 0 <= v < size:
            lut[v] = True
    if taxonomy.encoding.unlabeled is not None:
        lut[taxonomy.encoding.unlabeled] = True
    return lut


def ignore_value(taxonomy: Taxonomy) -> int:
    """Stored value that means 'no label': encoding.unlabeled, else the first ignore id (Cityscapes 0, Vistas 65)."""
    if taxonomy.encoding.unlabeled is not None:
        return taxonomy.encoding.unlabeled
    if taxonomy.ignore_ids:
        return taxonomy.stored_value(taxonomy.ignore_ids[0])
    raise LabeltreeError(f"taxonomy '{taxonomy.name}' defines no ignore value (encoding.unlabeled or ignore_ids), "
                         "so unknown label values cannot be mapped to ignore")


def _describe_colour_image(rgb: np.ndarray, taxonomy: Taxonomy) -> str:
    """Say whether an RGB file is a colour-coded label visualisation or a photo."""
    flat = rgb.reshape(-1, rgb.shape[-1])[:, :3].astype(np.uint32)
    code = (flat[:, 0] << 16) | (flat[:, 1] << 8) | flat[:, 2]
    colours = {(c.color[0] << 16) | (c.color[1] << 8) | c.color[2] for c in taxonomy.classes}
    share = float(np.isin(code, np.fromiter(colours, dtype=np.uint32)).mean()) if code.size else 0.0
    if share >= 0.95:
        return (f"its colours are {taxonomy.name} class colours ({share:.0%} of pixels), so it is a colour-coded "
                "visualisation (like *_color.png)")
    return f"{len(np.unique(code))} distinct colours, {share:.0%} of pixels in {taxonomy.name} class colours: a photo"


def _label_kind(taxonomy: Taxonomy) -> str:
    if taxonomy.encoding.format == "png-palette-index":
        return "8-bit palette (or greyscale) PNGs whose pixel values are class indices"
    return f"{'16' if taxonomy.encoding.dtype == 'uint16' else '8'}-bit greyscale PNGs whose values are class ids"


def _what_to_use(taxonomy: Taxonomy) -> str:
    f = taxonomy.encoding.format
    if f == "png-palette-index":
        return "use the files in {training,validation}/[v1.2|v2.0/]labels/ (mode P), not a colour rendering"
    return "use the dataset's *_gtFine_labelIds.png files, not *_color.png or the photos"


def decode_label(path: str | Path, taxonomy: Taxonomy, unknown: Unknown = "error",
                 known: np.ndarray | None = None) -> np.ndarray:
    """Decode a label PNG to the stored values (uint8/uint16 HxW), refusing files that are not label maps.

    Values the taxonomy does not define raise LabeltreeError listing them, or with `unknown='ignore'`
    become the taxonomy's ignore value. Colour images and palette photos are detected and explained.
    `known` is a precomputed `known_values(taxonomy)` (readers pass it to save the work per file).
    """
    path = Path(path)
    if unknown not in UNKNOWN_CHOICES:
        raise ValueError(f"unknown must be one of {UNKNOWN_CHOICES}, got {unknown!r}")
    data, hdr = read_file_and_header(path)
    if hdr is None or hdr.colour_type not in (PNG_GREY, PNG_PALETTE):
        what = hdr.description if hdr is not None else f"{path.suffix or 'non-PNG'} file (not a PNG)"
        detail = ""
        try:
            rgb = read_rgb(path)
            detail = f"; {_describe_colour_image(rgb, taxonomy)}"
        except LabeltreeError:
            pass
        raise LabeltreeError(f"this is a {what}, not a label map{detail}. {taxonomy.name} labels are "
                             f"{_label_kind(taxonomy)}: {_what_to_use(taxonomy)}", path)
    arr = decode_array(path, hdr, data=data)
    if arr.ndim != 2:
        raise LabeltreeError(f"label image decodes to shape {arr.shape}, expected a single channel", path)
    want = np.uint16 if taxonomy.encoding.dtype == "uint16" else np.uint8
    if arr.dtype != want and arr.dtype.itemsize < np.dtype(want).itemsize:
        arr = arr.astype(want)
    return check_label_values(arr, taxonomy, path, unknown, known)


def _unknown_runs(known: np.ndarray) -> list[tuple[int, int]]:
    """Inclusive (first, last) runs of False in a boolean LUT."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], (~known).view(np.int8), [0]])))
    return [(int(a), int(b) - 1) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def check_label_values(arr: np.ndarray, taxonomy: Taxonomy, path: str | Path | None = None,
                       unknown: Unknown = "error", known: np.ndarray | None = None) -> np.ndarray:
    """Refuse (or map to ignore) values the taxonomy does not define; detect photos saved as label maps."""
    if known is None:
        known = known_values(taxonomy)
    if arr.size == 0:
        return arr
    top = int(arr.max())
    # fast path: every value up to the maximum is known (Cityscapes 0..33, Vistas 0..65)
    if top < known.size and known[: top + 1].all():
        return arr
    lut = known if top < known.size else np.concatenate([known, np.zeros(top + 1 - known.size, dtype=bool)])
    gaps = _unknown_runs(lut[: top + 1])
    # a few range tests (Cityscapes Extended: 34..1999, 2043..) cost ~0.3 ms on 2 Mpx, a LUT gather ~2-3 ms
    if len(gaps) <= 4 and not any(((arr >= lo) & (arr <= hi)).any() if lo < hi else (arr == lo).any()
                                  for lo, hi in gaps):
        return arr
    bad = ~lut[arr]
    if not bad.any():
        return arr
    values, counts = np.unique(arr[bad], return_counts=True)
    share = counts.sum() / arr.size
    change = change_fraction(arr)
    n_distinct = len(np.unique(arr))
    if change > PHOTO_CHANGE and n_distinct >= PHOTO_MIN_VALUES and arr.size >= PHOTO_MIN_PIXELS:
        raise LabeltreeError(
            f"this looks like a photo (or rendering) stored as a {arr.shape[1]}x{arr.shape[0]} single-channel "
            f"image, not a label map: {n_distinct} distinct values, {change:.0%} of neighbouring pixels "
            f"differ (label maps: a few %), {share:.0%} of pixels hold values {taxonomy.name} does not define. "
            f"{taxonomy.name} labels are {_label_kind(taxonomy)}: {_what_to_use(taxonomy)}", path)
    if unknown == "ignore":
        out = arr.copy()
        out[bad] = ignore_value(taxonomy)
        return out
    listed = ", ".join(f"{v} ({c} px)" for v, c in zip(values[:12].tolist(), counts[:12].tolist(), strict=True))
    more = f", ... ({len(values) - 12} more values)" if len(values) > 12 else ""
    hint = ""
    if taxonomy.encoding.dtype == "uint8" and top > 255:
        hint = (" This is a 16-bit label map; if it is Cityscapes Extended (signs stored as 2000 + ClassID), "
                "open it with taxonomy 'cityscapes-extended'.")
    raise LabeltreeError(
        f"label values not defined in taxonomy '{taxonomy.name}': {listed}{more}.{hint} Fix the file or the "
        f"taxonomy, or pass --unknown ignore (unknown='ignore') to map them to {ignore_value(taxonomy)} (ignore)",
        path)


# -- readers -------------------------------------------------------------------------------------

class DatasetReader:
    """Base reader: lists samples of a split and decodes labels to stored values."""

    layout = "generic"

    def __init__(self, taxonomy: Taxonomy, root: Path, unknown: Unknown = "error"):
        self.taxonomy = taxonomy
        self.root = Path(root)
        self.unknown = unknown
        self._known: np.ndarray | None = None
        if unknown not in UNKNOWN_CHOICES:
            raise LabeltreeError(f"--unknown must be one of {', '.join(UNKNOWN_CHOICES)}, not '{unknown}'")
        if not self.root.exists():
            raise LabeltreeError(f"dataset root not found (searched {self.root.resolve()})", self.root)
        if not self.root.is_dir():
            raise LabeltreeError("dataset root must be a folder", self.root)

    @property
    def known(self) -> np.ndarray:
        if self._known is None:
            self._known = known_values(self.taxonomy)
        return self._known

    def splits(self) -> list[str]:
        raise NotImplementedError

    def samples(self, split: str) -> list[Sample]:
        raise NotImplementedError

    def all_samples(self) -> list[Sample]:
        """Samples of every split, in split order."""
        return [s for split in self.splits() for s in self.samples(split)]

    def read_image(self, s: Sample) -> np.ndarray:
        """The sample's photo as HxWx3 uint8 RGB."""
        if s.image is None:
            raise LabeltreeError(f"sample '{s.key}' has no image file (it was missing when the split was listed)",
                                 s.label or self.root)
        return read_rgb(s.image)

    def read_label(self, s: Sample) -> np.ndarray:
        """The sample's label map as stored values (uint8/uint16 HxW), decoded once."""
        if s.label is None:
            raise LabeltreeError(f"sample '{s.key}' has no label file", s.image or self.root)
        return decode_label(s.label, self.taxonomy, self.unknown, self.known)

    def read_instances(self, s: Sample) -> np.ndarray:
        """The sample's 16-bit instance map (Cityscapes id*1000+k, Vistas class*256+k)."""
        if s.instances is None:
            raise LabeltreeError(f"sample '{s.key}' has no instance file", s.label or s.image or self.root)
        data, hdr = read_file_and_header(s.instances)
        if hdr is None or hdr.colour_type != PNG_GREY:
            what = hdr.description if hdr is not None else "non-PNG file"
            raise LabeltreeError(f"instance maps are 16-bit greyscale PNGs, this is a {what}", s.instances)
        return decode_array(s.instances, hdr, data=data)


def _report_unpaired(kind: str, paths: list[Path], what: str) -> None:
    if paths:
        _warn(f"{len(paths)} {kind}: {_examples([str(p) for p in paths])}; {what}")


# -- Cityscapes -------------------------------------------------------------------------------------

_CS_KEY = re.compile(r"^(?P<city>[^_]+)_(?P<seq>\d{6})_(?P<frame>\d{6})")


class CityscapesReader(DatasetReader):
    """`leftImg8bit/{split}/{city}/*_leftImg8bit.png` + `gtFine/{split}/{city}/*_gtFine_labelIds.png`.

    Also Cityscapes Extended (taxonomy 'cityscapes-extended': the same layout, 16-bit labelIds).
    A label without its photo is kept (image=None; stats need only labels) and reported; a photo
    without its label is left out and reported.
    """

    layout = "cityscapes"
    label_suffix = "_gtFine_labelIds.png"
    image_suffix = "_leftImg8bit.png"
    instance_suffix = "_gtFine_instanceIds.png"

    def splits(self) -> list[str]:
        found: set[str] = set()
        for base in (self.root / "gtFine", self.root / "leftImg8bit"):
            if base.is_dir():
                found.update(p.name for p in base.iterdir() if p.is_dir())
        if not found:
            raise LabeltreeError("no Cityscapes splits: expected gtFine/{train,val,test}/ or leftImg8bit/{...}/ "
                                 f"under {self.root.resolve()}", self.root)
        order = {"train": 0, "val": 1, "test": 2}
        return sorted(found, key=lambda s: (order.get(s, 3), s))

    def cities(self, split: str) -> list[str]:
        return sorted({s.city for s in self.samples(split) if s.city})

    def _by_key(self, base: Path, suffix: str) -> dict[str, Path]:
        out: dict[str, Path] = {}
        if base.is_dir():
            for p in sorted(base.glob(f"*/*{suffix}")):
                m = _CS_KEY.match(p.name)
                if m and p.name == m.group(0) + suffix:
                    out[m.group(0)] = p
        return out

    def samples(self, split: str) -> list[Sample]:
        gt = self.root / "gtFine" / split
        img = self.root / "leftImg8bit" / split
        if not gt.is_dir() and not img.is_dir():
            raise LabeltreeError(f"no Cityscapes split '{split}' (searched {gt} and {img}); splits here: "
                                 f"{', '.join(self.splits())}", self.root)
        labels = self._by_key(gt, self.label_suffix)
        images = self._by_key(img, self.image_suffix)
        out = []
        for key in sorted(labels):
            lab = labels[key]
            inst = lab.with_name(key + self.instance_suffix)
            city = _CS_KEY.match(key).group("city")  # type: ignore[union-attr]
            out.append(Sample(self.taxonomy.name, split, key, images.get(key), lab,
                              inst if inst.exists() else None, city))
        _report_unpaired("labels without their photo", [labels[k] for k in sorted(labels) if k not in images],
                         f"expected the photo at {img}/{{city}}/{{key}}{self.image_suffix}; kept with image=None")
        _report_unpaired("photos without a label", [images[k] for k in sorted(images) if k not in labels],
                         f"expected {gt}/{{city}}/{{key}}{self.label_suffix}; left out")
        return out


# -- Mapillary Vistas -------------------------------------------------------------------------------

VISTAS_SPLITS = {"train": "training", "val": "validation", "test": "testing"}


class VistasReader(DatasetReader):
    """`{training,validation}/images/*.jpg` + `[v1.2/|v2.0/]labels/*.png` (palette indices).

    Releases up to v1.2 keep labels in `labels/`; v2.0 releases hold `v1.2/labels` and `v2.0/labels`
    side by side. The root may also be one split folder itself (holding `images/` and the labels),
    which is then the split 'all'. A `config*.json` next to the splits is checked against the taxonomy.
    """

    layout = "vistas"

    def __init__(self, taxonomy: Taxonomy, root: Path, unknown: Unknown = "error"):
        super().__init__(taxonomy, root, unknown)
        self._check_config()

    @property
    def _version_dir(self) -> str:
        return f"v{self.taxonomy.version}"

    def _is_split_dir(self, d: Path) -> bool:
        return (d / "images").is_dir() or (d / "labels").is_dir() or (d / self._version_dir / "labels").is_dir()

    def _split_dir(self, split: str) -> Path:
        if split == "all" and self._is_split_dir(self.root):
            return self.root
        return self.root / VISTAS_SPLITS.get(split, split)

    def _label_dir(self, split: str) -> Path:
        d = self._split_dir(split)
        cands = [d / self._version_dir / "labels"]
        if not self.taxonomy.version.startswith("2"):
            cands.append(d / "labels")  # v1.x releases: flat labels/
        for cand in cands:
            if cand.is_dir():
                return cand
        hint = ""
        if self.taxonomy.version.startswith("2") and (d / "labels").is_dir():
            hint = "; this looks like a v1.x release (flat labels/): open it with taxonomy 'vistas' (v1.2)"
        raise LabeltreeError(f"no Vistas v{self.taxonomy.version} labels for split '{split}' (searched "
                             f"{', '.join(str(c) for c in cands)}){hint}", self.root)

    def splits(self) -> list[str]:
        found = [s for s, d in VISTAS_SPLITS.items() if self._is_split_dir(self.root / d)]
        if not found and self._is_split_dir(self.root):
            return ["all"]
        if not found:
            raise LabeltreeError("no Vistas splits: expected training/, validation/ (with images/ and labels/) "
                                 f"under {self.root.resolve()}", self.root)
        return found

    def _config_path(self) -> Path | None:
        v = self.taxonomy.version
        for base in (self.root, self.root.parent):
            names = [f"config_v{v}.json", "config.json"]
            if v.startswith("1"):
                names += [p.name for p in sorted(base.glob("config_v1.*.json"), reverse=True)]
            for n in names:
                if (base / n).is_file():
                    return base / n
        return None

    def _check_config(self) -> None:
        """A release's config lists the labels in index order: it must agree with the taxonomy."""
        path = self._config_path()
        if path is None:
            return
        try:
            labels = json.loads(path.read_text())["labels"]
            names = [str(lab.get("readable") or lab["name"]) for lab in labels]
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise LabeltreeError(f"cannot read the Vistas config ({e}); expected JSON with a 'labels' list", path) \
                from None
        tax = [c.display for c in sorted(self.taxonomy.classes, key=lambda c: c.id)]
        if len(names) != len(tax):
            raise LabeltreeError(f"the config lists {len(names)} labels but taxonomy '{self.taxonomy.name}' "
                                 f"(v{self.taxonomy.version}) has {len(tax)}: open the dataset with the taxonomy of "
                                 "its version (vistas = v1.2, vistas-v2.0)", path)
        for i, (a, b) in enumerate(zip(names, tax, strict=True)):
            if normalise_name(a) != normalise_name(b):
                raise LabeltreeError(f"label index {i} is '{a}' in the config but '{b}' in taxonomy "
                                     f"'{self.taxonomy.name}': label values would be misread", path)

    def samples(self, split: str) -> list[Sample]:
        labels = self._label_dir(split)
        images = self._split_dir(split) / "images"
        label_files = {p.stem: p for p in sorted(labels.glob("*.png"))}
        image_files = {p.stem: p for p in sorted(images.glob("*.jpg"))} if images.is_dir() else {}
        out = []
        for stem in sorted(label_files):
            lab = label_files[stem]
            inst = labels.parent / "instances" / lab.name
            out.append(Sample(self.taxonomy.name, split, stem, image_files.get(stem), lab,
                              inst if inst.exists() else None))
        _report_unpaired("labels without their photo", [label_files[k] for k in label_files if k not in image_files],
                         f"expected {images}/{{key}}.jpg; kept with image=None")
        _report_unpaired("photos without a label", [image_files[k] for k in image_files if k not in label_files],
                         f"expected {labels}/{{key}}.png; left out")
        return out


# -- GTSDB ------------------------------------------------------------------------------------------

GTSDB_SPLITS = {"train": range(0, 600), "test": range(600, 900)}
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
        text = path.read_text(encoding="utf-8-sig")
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
        _warn(f"{path}: {len(gt.duplicates)} duplicate line(s), one box kept each: "
              + _examples([f"line {a} repeats line {b}" for a, b in gt.duplicates]))
    if clip_notes:
        _warn(f"{path}: {len(clip_notes)} box(es) reach outside their frame and were clipped: {_examples(clip_notes)}")
    if drop_notes:
        _warn(f"{path}: {len(drop_notes)} box(es) lie wholly outside their frame (empty after clipping) and were "
              f"dropped: {_examples(drop_notes)}")
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
                 mask_mode: str = "fine"):
        super().__init__(taxonomy, root, unknown)
        self.gt_path = Path(gt) if gt is not None else self.root / "gt.txt"
        self.mask_mode = mask_mode
        self._frames: dict[str, Path] | None = None
        self._gt: GtFile | None = None
        self._sizes: dict[str, tuple[int, int]] = {}

    def splits(self) -> list[str]:
        return list(GTSDB_SPLITS)

    @staticmethod
    def _frames_in(d: Path, suffixes: Iterable[str]) -> dict[str, Path]:
        out: dict[str, Path] = {}
        for p in sorted(d.iterdir()):
            if p.is_file() and p.suffix.lower() in suffixes and _FRAME.match(p.stem) and p.stem not in out:
                out[p.stem] = p
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
                _warn(f"{self.gt_path}: {len(missing)} frame(s) named in gt.txt have no image under {self.root}: "
                      f"{_examples(missing)}; their boxes are not used")
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

    def read_label(self, s: Sample) -> np.ndarray:
        """The frame's per-pixel GTSDB mask (16-bit, taxonomy encoding), rendered from its boxes."""
        from .gtsdb_masks import render_mask

        h, w = s.size if s.size is not None else image_size(s.image)  # type: ignore[arg-type]
        return render_mask(s.boxes, h, w, self.mask_mode, taxonomy=self.taxonomy)


READERS: dict[str, type[DatasetReader]] = {
    "png-ids": CityscapesReader,
    "png-palette-index": VistasReader,
    "gtsdb-gt-txt": GTSDBReader,
}


def open_dataset(dataset: str | Path | Taxonomy, root: str | Path, unknown: Unknown = "error",
                 **options) -> DatasetReader:
    """A reader for `root` in the layout of the dataset's taxonomy (by encoding format).

    `unknown='ignore'` maps label values the taxonomy lacks to its ignore value instead of failing.
    GTSDB takes `gt=` (another gt.txt) and `mask_mode=` ('fine' | 'coarse', for `read_label`).
    """
    tax = dataset if isinstance(dataset, Taxonomy) else load_taxonomy(dataset)
    cls = READERS[tax.encoding.format]
    return cls(tax, Path(root), unknown, **options)

