"""Readers for the datasets' native layouts (DESIGN §3).

Every downstream tool (stats, evaluate, annotate-extended, the trainer) reads through
`open_dataset(...)`: a deterministic list of `Sample`s per split, and `read_label` that decodes a
label file ONCE into the stored values (uint8/uint16 numpy array), never via RGB.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from .errors import LabeltreeError
from .taxonomy import Taxonomy, load_taxonomy


@dataclass(frozen=True)
class Box:
    """A GTSDB box: inclusive pixel coordinates, ClassID, and the gt.txt line it came from."""

    x0: int
    y0: int
    x1: int
    y1: int
    class_id: int
    line: int = 0

    @property
    def area(self) -> int:
        return (self.x1 - self.x0 + 1) * (self.y1 - self.y0 + 1)


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


class DatasetReader:
    """Base reader: lists samples of a split and decodes labels to stored values."""

    layout = "generic"

    def __init__(self, taxonomy: Taxonomy, root: Path):
        self.taxonomy = taxonomy
        self.root = Path(root)
        if not self.root.exists():
            raise LabeltreeError(f"dataset root not found (searched {self.root.resolve()})", self.root)

    def splits(self) -> list[str]:
        raise NotImplementedError

    def samples(self, split: str) -> list[Sample]:
        raise NotImplementedError

    def read_image(self, s: Sample) -> np.ndarray:
        if s.image is None or not s.image.exists():
            raise LabeltreeError(f"image of sample '{s.key}' not found", s.image or self.root)
        try:
            with Image.open(s.image) as im:
                return np.asarray(im.convert("RGB"))
        except OSError as e:
            raise LabeltreeError(f"cannot decode image ({e}); the file is truncated or corrupt", s.image) from None

    def read_label(self, s: Sample) -> np.ndarray:
        if s.label is None:
            raise LabeltreeError(f"sample '{s.key}' has no label file", s.image or self.root)
        return decode_label(s.label, self.taxonomy)


def decode_label(path: Path, taxonomy: Taxonomy) -> np.ndarray:
    """Decode a label PNG to the stored values, refusing images that are not label maps."""
    if not path.exists():
        raise LabeltreeError("label file not found", path)
    try:
        with Image.open(path) as im:
            mode = im.mode
            if mode in ("RGB", "RGBA") or (mode == "P" and taxonomy.encoding.format == "png-ids"
                                           and taxonomy.encoding.dtype != "uint8"):
                raise LabeltreeError(
                    f"this is a {im.size[0]}x{im.size[1]} {mode} colour image, not a label map: "
                    f"{taxonomy.name} labels store class ids "
                    f"({'palette indices' if taxonomy.encoding.format == 'png-palette-index' else 'grey values'}). "
                    "Use the dataset's *_labelIds.png / labels/*.png files, not colour visualisations", path)
            arr = np.asarray(im)
    except LabeltreeError:
        raise
    except OSError as e:
        raise LabeltreeError(f"cannot decode label image ({e}); the file is truncated or corrupt", path) from None
    if arr.ndim != 2:
        raise LabeltreeError(f"label image has {arr.ndim} dimensions, expected a single channel", path)
    if taxonomy.encoding.dtype == "uint8" and arr.dtype != np.uint8:
        arr = arr.astype(np.uint16)
    return arr


# -- Cityscapes -------------------------------------------------------------------------------------

_CS_KEY = re.compile(r"^(?P<city>[^_]+)_(?P<seq>\d{6})_(?P<frame>\d{6})")


class CityscapesReader(DatasetReader):
    """`leftImg8bit/{split}/{city}/*_leftImg8bit.png` + `gtFine/{split}/{city}/*_gtFine_labelIds.png`."""

    layout = "cityscapes"

    def splits(self) -> list[str]:
        base = self.root / "gtFine"
        if not base.is_dir():
            base = self.root / "leftImg8bit"
        return sorted(p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else []

    def samples(self, split: str) -> list[Sample]:
        gt = self.root / "gtFine" / split
        img = self.root / "leftImg8bit" / split
        if not gt.is_dir() and not img.is_dir():
            raise LabeltreeError(f"no Cityscapes split '{split}' (searched {gt} and {img})", self.root)
        out = []
        labels = sorted(gt.glob("*/*_gtFine_labelIds.png")) if gt.is_dir() else []
        for lab in labels:
            m = _CS_KEY.match(lab.name)
            if not m:
                continue
            key = m.group(0)
            city = m.group("city")
            image = img / city / f"{key}_leftImg8bit.png"
            inst = lab.with_name(f"{key}_gtFine_instanceIds.png")
            out.append(Sample(self.taxonomy.name, split, key, image if image.exists() else None, lab,
                              inst if inst.exists() else None, city))
        return out


# -- Mapillary Vistas -------------------------------------------------------------------------------

VISTAS_SPLITS = {"train": "training", "val": "validation", "test": "testing"}


class VistasReader(DatasetReader):
    """`{training,validation}/images/*.jpg` + `labels/*.png` (or `v1.2/labels`, `v2.0/labels`)."""

    layout = "vistas"

    def _split_dir(self, split: str) -> Path:
        return self.root / VISTAS_SPLITS.get(split, split)

    def _label_dir(self, split: str) -> Path:
        d = self._split_dir(split)
        version = self.taxonomy.version
        for cand in (d / f"v{version}" / "labels", d / "labels"):
            if cand.is_dir():
                return cand
        raise LabeltreeError(f"no Vistas labels for split '{split}' (searched {d}/v{version}/labels and "
                             f"{d}/labels)", self.root)

    def splits(self) -> list[str]:
        return [s for s, d in VISTAS_SPLITS.items() if (self.root / d).is_dir()]

    def samples(self, split: str) -> list[Sample]:
        labels = self._label_dir(split)
        images = self._split_dir(split) / "images"
        out = []
        for lab in sorted(labels.glob("*.png")):
            img = images / f"{lab.stem}.jpg"
            inst = labels.parent / "instances" / lab.name
            out.append(Sample(self.taxonomy.name, split, lab.stem, img if img.exists() else None, lab,
                              inst if inst.exists() else None))
        return out


# -- GTSDB ------------------------------------------------------------------------------------------

GTSDB_SPLITS = {"train": range(0, 600), "test": range(600, 900)}


def parse_gt_txt(path: Path) -> dict[str, list[Box]]:
    """gt.txt -> {frame file name: boxes}. Minimal parser; bad lines raise with file and line."""
    out: dict[str, list[Box]] = {}
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.strip().split(";")
        if len(parts) != 6:
            raise LabeltreeError(f"expected 'NNNNN.ppm;left;top;right;bottom;ClassID', got {line!r}", path, n)
        try:
            x0, y0, x1, y1, k = (int(p) for p in parts[1:])
        except ValueError:
            raise LabeltreeError(f"coordinates and ClassID must be integers, got {line!r}", path, n) from None
        out.setdefault(parts[0], []).append(Box(x0, y0, x1, y1, k, n))
    return out


class GTSDBReader(DatasetReader):
    """`00000.ppm`..`00899.ppm` + `gt.txt`; train = 00000-00599, test = 00600-00899."""

    layout = "gtsdb"

    def splits(self) -> list[str]:
        return list(GTSDB_SPLITS)

    def samples(self, split: str) -> list[Sample]:
        if split not in GTSDB_SPLITS:
            raise LabeltreeError(f"GTSDB splits are {', '.join(GTSDB_SPLITS)}, not '{split}'", self.root)
        gt = self.root / "gt.txt"
        if not gt.exists():
            raise LabeltreeError(f"GTSDB gt.txt not found (searched {gt})", self.root)
        boxes = parse_gt_txt(gt)
        rng = GTSDB_SPLITS[split]
        out = []
        for img in sorted(self.root.glob("*.ppm")):
            if img.stem.isdigit() and int(img.stem) in rng:
                out.append(Sample(self.taxonomy.name, split, img.stem, img, None,
                                  boxes=tuple(boxes.get(img.name, ()))))
        return out


READERS: dict[str, type[DatasetReader]] = {
    "png-ids": CityscapesReader,
    "png-palette-index": VistasReader,
    "gtsdb-gt-txt": GTSDBReader,
}


def open_dataset(dataset: str | Path | Taxonomy, root: str | Path) -> DatasetReader:
    """A reader for `root` in the layout of the dataset's taxonomy (by encoding format)."""
    tax = dataset if isinstance(dataset, Taxonomy) else load_taxonomy(dataset)
    return READERS[tax.encoding.format](tax, Path(root))
