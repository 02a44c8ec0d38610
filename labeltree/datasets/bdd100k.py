"""BDD100K semantic segmentation layout (the 10K images): paths for reading and writing, and its reader.

Release followed: the BDD100K download as documented in github.com/bdd100k/bdd100k `doc/source/download.rst`
and `format.rst` (commit 9ac17c6c7c51d2fc83065fccd707cd5b1882a293, 2024-03-09; doc.bdd100k.com): the
archives `bdd100k_images_10k.zip` and `bdd100k_sem_seg_labels_trainval.zip` unpack to

    bdd100k/images/10k/{train,val,test}/{name}.jpg
    bdd100k/labels/sem_seg/masks/{train,val}/{name}.png       8-bit grey, value = train id 0..18, 255 = unknown
    bdd100k/labels/sem_seg/colormaps/{train,val}/{name}.png   the same values as a palette PNG (colours)
    bdd100k/labels/sem_seg/polygons/sem_seg_{train,val}.json  (and rles/sem_seg_{train,val}.json)

The 2018 segmentation archive (`bdd100k_seg.zip`: `seg/images/{split}/*.jpg`, `seg/labels/{split}/*_train_id.png`,
`seg/color_labels/`) is another release: the reader names it and says how to lay it out instead of guessing.
"""

from __future__ import annotations

from pathlib import Path

from labeltree.core.taxonomy import Taxonomy
from labeltree.datasets.base import WHAT_TO_USE, DatasetReader, Sample, Unknown, report_unpaired, split_order
from labeltree.errors import LabeltreeError

LAYOUT = "bdd100k"
IMAGE_SUFFIX = ".jpg"
LABEL_SUFFIX = ".png"
RELEASE = ("the BDD100K 10K semantic segmentation release (bdd100k_images_10k.zip + "
           "bdd100k_sem_seg_labels_trainval.zip)")
EXPECTED = "bdd100k/images/10k/{train,val,test}/*.jpg + bdd100k/labels/sem_seg/masks/{train,val}/*.png"
WHAT_TO_USE[LAYOUT] = ("use the 8-bit masks in labels/sem_seg/masks/{split}/ (train ids, 255 = unknown), not a "
                       "colour rendering or the photos")


def image_path(root: str | Path, split: str, key: str) -> Path:
    """A photo: `{root}/images/10k/{split}/{key}.jpg` (`root` is the `bdd100k/` folder)."""
    return Path(root) / "images" / "10k" / split / f"{key}{IMAGE_SUFFIX}"


def label_path(root: str | Path, split: str, key: str) -> Path:
    """A mask: `{root}/labels/sem_seg/masks/{split}/{key}.png` (8-bit grey, train ids, 255 = unknown)."""
    return Path(root) / "labels" / "sem_seg" / "masks" / split / f"{key}{LABEL_SUFFIX}"


def colormap_path(root: str | Path, split: str, key: str) -> Path:
    """A colour map: `{root}/labels/sem_seg/colormaps/{split}/{key}.png` (the mask's values, with a palette)."""
    return Path(root) / "labels" / "sem_seg" / "colormaps" / split / f"{key}{LABEL_SUFFIX}"


def polygons_path(root: str | Path, split: str) -> Path:
    """The split's polygon annotations: `{root}/labels/sem_seg/polygons/sem_seg_{split}.json`."""
    return Path(root) / "labels" / "sem_seg" / "polygons" / f"sem_seg_{split}.json"


def dataset_dir(root: str | Path) -> Path:
    """The `bdd100k/` folder of a root: the root itself, or its `bdd100k/` child (the archives unpack to it)."""
    root = Path(root)
    if not any((root / d).is_dir() for d in ("images", "labels", "seg")) and (root / "bdd100k").is_dir():
        return root / "bdd100k"
    return root


def _listing(d: Path, n: int = 8) -> str:
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in d.iterdir() if not p.name.startswith("."))
    if not names:
        return "nothing (an empty folder)"
    return ", ".join(names[:n]) + (f", ... ({len(names) - n} more)" if len(names) > n else "")


def foreign_layout(base: Path) -> str | None:
    """What another release or dataset a folder holds, or None when it may be this layout."""
    seg = base / "seg"
    if (seg / "labels").is_dir() or (seg / "images").is_dir():
        return ("this is the 2018 BDD100K segmentation release (bdd100k_seg.zip: seg/images/{split}/*.jpg, "
                "seg/labels/{split}/*_train_id.png); its masks hold the same train ids: move each "
                "seg/images/{split}/NAME.jpg to images/10k/{split}/NAME.jpg and seg/labels/{split}/NAME_train_id.png "
                "to labels/sem_seg/masks/{split}/NAME.png, or download the current release")
    if (base / "gtFine").is_dir() or (base / "leftImg8bit").is_dir():
        return "this is a Cityscapes-style folder (gtFine/, leftImg8bit/): open it with dataset 'cityscapes' (or 'idd')"
    if any((base / d / sub).is_dir() for d in ("training", "validation") for sub in ("images", "labels", "v1.2",
                                                                                       "v2.0")):
        return "this is a Mapillary Vistas folder (training/, validation/): open it with dataset 'vistas'"
    if (base / "FullIJCNN2013").is_dir() or (base / "gt.txt").is_file():
        return "this is a GTSDB folder (gt.txt): open it with dataset 'gtsdb'"
    return None


class BDD100KReader(DatasetReader):
    """`images/10k/{split}/*.jpg` + `labels/sem_seg/masks/{split}/*.png`, under ROOT or ROOT/bdd100k/.

    A split is a folder of masks (the test split has photos only and is not listed). A mask without its
    photo is kept (image=None; stats need only labels) and reported; a photo without a mask is left out
    and reported. A folder of another release or dataset is refused with what was expected and found.
    """

    layout = LAYOUT

    def __init__(self, taxonomy: Taxonomy, root: Path, unknown: Unknown = "error"):
        super().__init__(taxonomy, root, unknown)
        self.base = dataset_dir(self.root)
        other = foreign_layout(self.base)
        if other is not None:
            raise LabeltreeError(f"not {RELEASE}: {other}. Expected {EXPECTED}", self.root)

    def _masks(self) -> Path:
        return label_path(self.base, "x", "x").parent.parent

    def splits(self) -> list[str]:
        masks = self._masks()
        found = sorted((p.name for p in masks.iterdir() if p.is_dir()), key=split_order) if masks.is_dir() else []
        if not found:
            hint = ""
            if (self.base / "images" / "100k").is_dir() and not (self.base / "images" / "10k").is_dir():
                hint = " (images/100k/ holds the detection photos; segmentation uses the 10K images)"
            elif (self.base / "labels").is_dir():
                hint = f" (labels/ holds: {_listing(self.base / 'labels')})"
            raise LabeltreeError(f"no {RELEASE} here: expected {EXPECTED}; found in {self.base.resolve()}: "
                                 f"{_listing(self.base)}{hint}", self.root)
        return found

    prediction_naming = "each prediction must be named as its image, with .png or .npy ({name}.png, as BDD100K's eval)"

    def samples(self, split: str) -> list[Sample]:
        masks = label_path(self.base, split, "x").parent
        photos = image_path(self.base, split, "x").parent
        if not masks.is_dir():
            raise LabeltreeError(f"no BDD100K masks for split '{split}' (searched {masks}); splits here: "
                                 f"{', '.join(self.splits())}", self.root)
        labels = {p.stem: p for p in sorted(masks.glob(f"*{LABEL_SUFFIX}"))}
        images = {p.stem: p for p in sorted(photos.glob(f"*{IMAGE_SUFFIX}"))} if photos.is_dir() else {}
        out = [Sample(self.taxonomy.name, split, key, images.get(key), labels[key]) for key in sorted(labels)]
        report_unpaired("labels without their photo", [labels[k] for k in sorted(labels) if k not in images],
                        f"expected the photo at {photos}/{{key}}{IMAGE_SUFFIX}; kept with image=None")
        report_unpaired("photos without a label", [images[k] for k in sorted(images) if k not in labels],
                        f"expected {masks}/{{key}}{LABEL_SUFFIX}; left out")
        return out
