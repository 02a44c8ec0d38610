"""The one label path and the reader base (docs/design.md §3; docs/architecture.md).

Every consumer (stats, evaluate, annotate-extended, the trainer) gets a sample's label through
`read_label(sample, taxonomy, mask_mode)`: a dense label file decoded ONCE into its stored values
(uint8/uint16 numpy array, never via RGB), or for a box dataset the per-pixel mask rendered from
its boxes (`datasets.boxmask`). Each layout's reader (cityscapes.py, vistas.py, gtsdb.py) lists
`Sample`s per split; `registry.open_dataset` picks the reader from the taxonomy's encoding.

Bad input raises `LabeltreeError` naming the file (and gt.txt line); recoverable problems (a frame
without its label, a box clipped to its frame, a duplicate gt.txt line) are reported with
`warnings.warn(..., LabeltreeWarning)`, one warning per problem kind and file, listing examples.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from labeltree.core.taxonomy import DTYPE_MAX, Taxonomy
from labeltree.datasets.boxmask import DEFAULT_MASK_MODE, Box, render_mask
from labeltree.datasets.decode import (
    PHOTO_CHANGE,
    PNG_GREY,
    PNG_PALETTE,
    change_fraction,
    decode_array,
    image_size,
    read_file_and_header,
    read_rgb,
)
from labeltree.errors import LabeltreeError
from labeltree.vocab import UNKNOWN_CHOICES  # noqa: F401 - re-exported

Unknown = Literal["error", "ignore"]
# a single-channel file is called a photo when its values change at most neighbour pairs (see
# decode.change_fraction), it has many distinct values and is big enough for that to mean something
PHOTO_MIN_VALUES = 24
PHOTO_MIN_PIXELS = 1024


class LabeltreeWarning(UserWarning):
    """A recoverable problem in the input data (reported, then worked around)."""


def warn(message: str, category: type[LabeltreeWarning] = LabeltreeWarning) -> None:
    warnings.warn(message, category, stacklevel=3)


def examples(items: Sequence[str], n: int = 3) -> str:
    shown = ", ".join(str(i) for i in items[:n])
    return shown + (f", ... ({len(items) - n} more)" if len(items) > n else "")



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

    @classmethod
    def of_label(cls, path: str | Path, taxonomy: Taxonomy) -> Sample:
        """A sample known only by its label file (for tools that were handed the file itself)."""
        path = Path(path)
        return cls(taxonomy.name, "", path.stem, None, path)


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


def no_class_value(taxonomy: Taxonomy, to_node: Mapping[int, int | None] | None = None) -> int:
    """The stored value that means 'no class' in a dataset, the one such notion in labeltree.

    encoding.unlabeled, else the first ignore id (Cityscapes 0, Vistas 65, Vistas v2.0 123, BDD100K /
    IDD 255), else the first class a tree's mapping (`to_node`, class id -> node or None) ignores.
    `convert --unknown ignore` maps unknown values to it, `predict` writes it for a tree node the
    dataset has no class for, and the paper protocol drops predictions of it.
    """
    if taxonomy.encoding.unlabeled is not None:
        return int(taxonomy.encoding.unlabeled)
    if taxonomy.ignore_ids:
        return int(taxonomy.stored_value(taxonomy.ignore_ids[0]))
    ignored = sorted(c for c, n in (to_node or {}).items() if n is None and c >= 0)
    if ignored:
        return int(taxonomy.stored_value(ignored[0]))
    raise LabeltreeError(f"taxonomy '{taxonomy.name}' defines no value for 'no class' (encoding.unlabeled or "
                         "ignore_ids): add one to the taxonomy file")


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


# per layout (`encoding.layout`): which files hold its labels, said when another kind of file is handed in
WHAT_TO_USE: dict[str, str] = {}


def _what_to_use(taxonomy: Taxonomy) -> str:
    if taxonomy.encoding.layout in WHAT_TO_USE:
        return WHAT_TO_USE[taxonomy.encoding.layout]
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
        out[bad] = no_class_value(taxonomy)
        return out
    listed = ", ".join(f"{v} ({c} px)" for v, c in zip(values[:12].tolist(), counts[:12].tolist(), strict=True))
    more = f", ... ({len(values) - 12} more values)" if len(values) > 12 else ""
    hint = ""
    if taxonomy.encoding.dtype == "uint8" and top > 255:
        hint = (" This is a 16-bit label map; if it is Cityscapes Extended (signs stored as 2000 + ClassID), "
                "open it with taxonomy 'cityscapes-extended'." if taxonomy.encoding.layout in (None, "cityscapes")
                else f" This is a 16-bit label map; {taxonomy.name} labels are {_label_kind(taxonomy)}.")
    raise LabeltreeError(
        f"label values not defined in taxonomy '{taxonomy.name}': {listed}{more}.{hint} Fix the file or the "
        f"taxonomy, or pass --unknown ignore (unknown='ignore') to map them to {no_class_value(taxonomy)} (ignore)",
        path)


def read_label(sample: Sample, taxonomy: Taxonomy, mask_mode: str = DEFAULT_MASK_MODE, unknown: Unknown = "error",
               known: np.ndarray | None = None) -> np.ndarray:
    """THE label path: a sample's stored label values (uint8/uint16 HxW), whatever its annotation type.

    A dense sample's label file is decoded once and checked against the taxonomy (`decode_label`);
    a box sample's mask is rendered from its boxes at the frame's size (`boxmask.render_mask`,
    `mask_mode` 'fine' or 'coarse'). `known` is a precomputed `known_values(taxonomy)`.
    """
    if sample.label is not None:
        return decode_label(sample.label, taxonomy, unknown, known)
    if taxonomy.annotation == "boxes":
        if sample.size is not None:
            h, w = sample.size
        elif sample.image is not None:
            h, w = image_size(sample.image)
        else:
            raise LabeltreeError(f"box sample '{sample.key}' has neither a frame size nor a frame file")
        return render_mask(sample.boxes, h, w, mask_mode, taxonomy=taxonomy)
    raise LabeltreeError(f"sample '{sample.key}' has no label file", sample.image)


# -- readers -------------------------------------------------------------------------------------

class DatasetReader:
    """Base reader: lists samples of a split and decodes labels to stored values."""

    layout = "generic"

    def __init__(self, taxonomy: Taxonomy, root: Path, unknown: Unknown = "error"):
        self.taxonomy = taxonomy
        self.root = Path(root)
        self.unknown = unknown
        self.mask_mode: str = DEFAULT_MASK_MODE  # box datasets: which masks `read_label` renders
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

    # how prediction files name their sample (cityscapesScripts' getPrediction for Cityscapes)
    prediction_naming = "each file's stem must equal its label file's stem"

    @staticmethod
    def prediction_key(path: Path) -> str | None:
        """The key of the sample a prediction file belongs to, by the layout's file-name convention."""
        return path.stem

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
        """The sample's label map as stored values (uint8/uint16 HxW), decoded once (see `read_label`)."""
        return read_label(s, self.taxonomy, self.mask_mode, self.unknown, self.known)

    def read_instances(self, s: Sample) -> np.ndarray:
        """The sample's 16-bit instance map (Cityscapes id*1000+k, Vistas class*256+k)."""
        if s.instances is None:
            raise LabeltreeError(f"sample '{s.key}' has no instance file", s.label or s.image or self.root)
        data, hdr = read_file_and_header(s.instances)
        if hdr is None or hdr.colour_type != PNG_GREY:
            what = hdr.description if hdr is not None else "non-PNG file"
            raise LabeltreeError(f"instance maps are 16-bit greyscale PNGs, this is a {what}", s.instances)
        return decode_array(s.instances, hdr, data=data)



SPLIT_ORDER = ("train", "val", "test")


def check_split_name(name: str, option: str = "--split") -> str:
    """A split is a name (a folder of the layout: train, val, test, ...), never a path: an absolute,
    `..` or slashed split would point reads and writes outside the dataset root or the output folder."""
    if not name or name in (".", "..") or any(c in name for c in "/\\") or any(ord(c) < 32 for c in name):
        raise LabeltreeError(f"{option} {name!r}: a split is a name like train, val or test (a folder of the "
                             "dataset layout), not a path; give the name only")
    return name


def split_order(name: str) -> tuple[int, str]:
    """Sort key of split names: train, val, test, then any other split by name."""
    return (SPLIT_ORDER.index(name) if name in SPLIT_ORDER else len(SPLIT_ORDER), name)


def split_folders(*bases: Path, skip_suffix: str | None = None) -> list[str]:
    """The split folders under `bases` (e.g. gtFine/ and leftImg8bit/), in split order; names ending in
    `skip_suffix` are no split (IDD's gtFine/train_panoptic/)."""
    found: set[str] = set()
    for base in bases:
        if base.is_dir():
            found.update(p.name for p in base.iterdir()
                         if p.is_dir() and not (skip_suffix and p.name.endswith(skip_suffix)))
    return sorted(found, key=split_order)


def report_unpaired(kind: str, paths: list[Path], what: str) -> None:
    if paths:
        warn(f"{len(paths)} {kind}: {examples([str(p) for p in paths])}; {what}")

