"""IDD (India Driving Dataset, segmentation) layout: the paths, keys and splits, for reading and writing.

The release and its tools (github.com/AutoNUE/public-code, commit 5d9a93b, 2021-02-15; README
"Dataset Structure"): `IDD_Segmentation/leftImg8bit/{split}/{seq}/{frame}_leftImg8bit.png` photos
and `gtFine/{split}/{seq}/{frame}_gtFine_polygons.json` polygons. The label PNGs are written from
the polygons by the tools' `preperation/createLabels.py --id-type COLUMN`, named after the label
table column they store: `{frame}_gtFine_label{COLUMN}s.png` (`_labellevel3Ids.png` for the
26-class benchmark, `_labellevel1Ids.png` for IDD Lite's 7 classes, ...). A taxonomy names its
column in `encoding.column` (default level3Id). Frame numbers repeat across sequences, so a
sample's key is `{seq}_{frame}` (as the tools' panoptic files name them).
"""

from __future__ import annotations

import re
from pathlib import Path

from labeltree.core.taxonomy import Taxonomy, bundled_taxonomies, load_taxonomy
from labeltree.datasets.base import (
    WHAT_TO_USE,
    DatasetReader,
    Sample,
    examples,
    report_unpaired,
    split_folders,
    warn,
)
from labeltree.errors import LabeltreeError

IMAGE_SUFFIX = "_leftImg8bit.png"  # the documented photo name (what writers write)
IMAGE_SUFFIXES = (IMAGE_SUFFIX, "_leftImg8bit.jpg")  # JPEG copies of the photos are read too
POLYGONS_SUFFIX = "_gtFine_polygons.json"
TRAIN_LABEL_SUFFIX = "_gtFine_labelTrainIds.png"  # `convert --to idd:trainids` (contiguous train ids)
DEFAULT_COLUMN = "level3Id"  # createLabels.py's default --id-type and the benchmark's level
CREATE_LABELS = "python preperation/createLabels.py --datadir {root} --id-type {column}"
WHAT_TO_USE["idd"] = ("use the 8-bit *_gtFine_label{level}Ids.png files the IDD tools' createLabels.py writes "
                      "(level3Ids for taxonomy idd), not a colour rendering or the photos")

# Names: the release numbers its sequences (0, 1, ...) and frames (005506), but copies and extensions
# use any name a file system allows. A sequence name holds no '_' (it ends the key's first part); a
# frame name may hold anything printable. What no key can hold is left out with one warning and a count.
_FRAME = r"[A-Za-z0-9-]+"  # frame names in prediction files (matched by pattern)
_SEQ_NAME = re.compile(r"[^_\x00-\x1f\x7f/\\]+")
_FRAME_NAME = re.compile(r"[^\x00-\x1f\x7f/\\]+")
_LABEL_FILE = re.compile(r"^(?P<frame>.+?)_gtFine_label(?P<column>[A-Za-z0-9]+?)s\.png$")
_CS_NAME = re.compile(r"^[^_]+_\d{6}_\d{6}_")
_FLAT_KEY = re.compile(rf"^(?P<seq>{_FRAME})_(?P<frame>\d+)(?=[_.])")
_NESTED_KEY = re.compile(rf"^(?P<frame>{_FRAME})(?=[_.])")


def label_suffix(column: str = DEFAULT_COLUMN) -> str:
    """createLabels.py's output name for a label table column: `_gtFine_label{column}s.png`."""
    return f"_gtFine_label{column}s.png"


def column_of(taxonomy: Taxonomy) -> str:
    """The label table column a taxonomy's files store (its `encoding.column`, else level3Id)."""
    return taxonomy.encoding.column or DEFAULT_COLUMN


def sample_key(seq: str, frame: str) -> str:
    return f"{seq}_{frame}"


def image_path(root: Path, split: str, seq: str, frame: str) -> Path:
    return Path(root) / "leftImg8bit" / split / seq / f"{frame}{IMAGE_SUFFIX}"


def label_path(root: Path, split: str, seq: str, frame: str, column: str = DEFAULT_COLUMN) -> Path:
    return Path(root) / "gtFine" / split / seq / f"{frame}{label_suffix(column)}"


def train_label_path(root: Path, split: str, seq: str, frame: str) -> Path:
    return Path(root) / "gtFine" / split / seq / f"{frame}{TRAIN_LABEL_SUFFIX}"


def polygons_path(root: Path, split: str, seq: str, frame: str) -> Path:
    return Path(root) / "gtFine" / split / seq / f"{frame}{POLYGONS_SUFFIX}"


def split_key(key: str) -> tuple[str, str]:
    """`{seq}_{frame}` -> (seq, frame)."""
    seq, sep, frame = key.partition("_")
    if not sep or not _SEQ_NAME.fullmatch(seq) or not _FRAME_NAME.fullmatch(frame):
        raise LabeltreeError(f"'{key}' is no IDD sample key (expected {{seq}}_{{frame}}, e.g. 0_005506)")
    return seq, frame


def _bundled_reading(columns: set[str]) -> list[str]:
    """Bundled IDD-layout taxonomies whose files store one of `columns` (for the refusal's advice)."""
    out = []
    for name, path in sorted(bundled_taxonomies().items()):
        if name != path.stem:
            continue  # each file once
        tax = load_taxonomy(path)
        if tax.encoding.layout == "idd" and column_of(tax) in columns:
            out.append(tax.name)
    return out


class IDDReader(DatasetReader):
    """`leftImg8bit/{split}/{seq}/{frame}_leftImg8bit.png` + `gtFine/{split}/{seq}/{frame}_gtFine_label{COL}s.png`.

    COL is the taxonomy's `encoding.column` (level3Id for taxonomy 'idd'). A folder without those
    files is refused with what it holds instead (polygons only, another level's PNGs, a Cityscapes
    folder). A label without its photo is kept (image=None) and reported; a photo without its
    label is left out and reported.
    """

    layout = "idd"
    prediction_naming = ("files must mirror the ground truth ({seq}/{frame}_*.png, as the IDD tools' "
                         "evaluate_mIoU.py) or be named {seq}_{frame}_*.png")

    def __init__(self, taxonomy: Taxonomy, root: Path, unknown: str = "error"):
        super().__init__(taxonomy, root, unknown)  # type: ignore[arg-type]
        self.column = column_of(taxonomy)
        self.label_suffix = label_suffix(self.column)

    @staticmethod
    def prediction_key(path: Path) -> str | None:
        """`{seq}_{frame}_...` anywhere, else `{frame}_...` inside its sequence folder `{seq}/`."""
        m = _FLAT_KEY.match(path.name)
        if m:
            return sample_key(m.group("seq"), m.group("frame"))
        m = _NESTED_KEY.match(path.name)
        if m and re.fullmatch(_FRAME, path.parent.name):
            return sample_key(path.parent.name, m.group("frame"))
        return None

    def splits(self) -> list[str]:
        found = split_folders(self.root / "gtFine", self.root / "leftImg8bit", skip_suffix="_panoptic")
        if not found:
            hint = ""
            if (self.root / "IDD_Segmentation").is_dir():
                hint = f"; this folder holds IDD_Segmentation/: pass {self.root / 'IDD_Segmentation'}"
            raise LabeltreeError("no IDD splits: expected gtFine/{train,val}/{seq}/ and leftImg8bit/{train,val,test}/"
                                 f"{{seq}}/ under {self.root.resolve()}{hint}", self.root)
        return found

    def sequences(self, split: str) -> list[str]:
        return sorted({s.city for s in self.samples(split) if s.city})

    @staticmethod
    def _by_key(base: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
        """`{seq}_{frame}` -> file; files whose names no key can hold are named in one warning."""
        out: dict[str, Path] = {}
        skipped: list[str] = []
        if base.is_dir():
            for suffix in suffixes:
                for p in sorted(base.glob(f"*/*{suffix}")):
                    frame = p.name[: -len(suffix)]
                    if _FRAME_NAME.fullmatch(frame) and _SEQ_NAME.fullmatch(p.parent.name):
                        out.setdefault(sample_key(p.parent.name, frame), p)
                    else:
                        skipped.append(repr(str(p.relative_to(base)))[1:-1])
        if skipped:
            warn(f"{base}: {len(skipped)} file(s) left out: a sequence folder name holds '_' or a name holds a "
                 f"control character, which no {{seq}}_{{frame}} key can hold: {examples(skipped)}; rename them")
        return out

    def _refuse_empty(self, gt: Path) -> None:
        """gt holds none of the expected label files: say what it holds and what to do."""
        want = f"{gt}/{{seq}}/{{frame}}{self.label_suffix}"
        files = sorted(p for p in gt.glob("*/*") if p.is_file())
        other: dict[str, list[Path]] = {}
        for p in files:
            m = _LABEL_FILE.match(p.name)
            if m:
                other.setdefault(m.group("column"), []).append(p)
        polygons = [p for p in files if p.name.endswith(POLYGONS_SUFFIX)]
        tools = CREATE_LABELS.format(root=self.root, column=self.column)
        if any(c in ("Id", "TrainId") and all(_CS_NAME.match(p.name) for p in ps) for c, ps in other.items()):
            c = next(c for c in other if c in ("Id", "TrainId"))
            raise LabeltreeError(
                f"this is a Cityscapes folder ({len(other[c])} *_gtFine_label{c}s.png named "
                f"{{city}}_{{seq}}_{{frame}}, e.g. {other[c][0].name}), not IDD: expected {want}; open it with "
                "taxonomy 'cityscapes'", gt)
        if other:
            found = "; ".join(f"{len(ps)} *{label_suffix(c)} (column {c})" for c, ps in sorted(other.items()))
            readers = _bundled_reading(set(other))
            which = (f"taxonomy {' or '.join(repr(n) for n in readers)}" if readers
                     else "a taxonomy of that column (encoding.column)")
            raise LabeltreeError(
                f"no IDD labels at column {self.column} (taxonomy '{self.taxonomy.name}' reads {want}); this folder "
                f"has {found}, e.g. {examples([p.name for ps in other.values() for p in ps], 2)}. Write the "
                f"{self.column} PNGs with the IDD tools (github.com/AutoNUE/public-code): {tools}, or open it with "
                f"{which}", gt)
        if polygons:
            raise LabeltreeError(
                f"only polygon files here ({len(polygons)} *{POLYGONS_SUFFIX}), no label PNGs: expected {want}. "
                f"Write them with the IDD tools (github.com/AutoNUE/public-code): {tools}", gt)
        raise LabeltreeError(f"no IDD labels: expected {want} ({len(files)} other files there)", gt)

    def samples(self, split: str) -> list[Sample]:
        gt = self.root / "gtFine" / split
        img = self.root / "leftImg8bit" / split
        if not gt.is_dir() and not img.is_dir():
            raise LabeltreeError(f"no IDD split '{split}' (searched {gt} and {img}); splits here: "
                                 f"{', '.join(self.splits())}", self.root)
        labels = self._by_key(gt, (self.label_suffix,))
        if gt.is_dir() and not labels:
            self._refuse_empty(gt)
        images = self._by_key(img, IMAGE_SUFFIXES)
        out = []
        for key in sorted(labels):
            out.append(Sample(self.taxonomy.name, split, key, images.get(key), labels[key], None,
                              labels[key].parent.name))
        report_unpaired("labels without their photo", [labels[k] for k in sorted(labels) if k not in images],
                        f"expected the photo at {img}/{{seq}}/{{frame}}{IMAGE_SUFFIX}; kept with image=None")
        report_unpaired("photos without a label", [images[k] for k in sorted(images) if k not in labels],
                        f"expected {gt}/{{seq}}/{{frame}}{self.label_suffix}; left out")
        return out
