"""Cityscapes layout (also Cityscapes Extended): the paths, keys and splits, for reading and writing."""

from __future__ import annotations

import re
from pathlib import Path

from labeltree.datasets.base import DatasetReader, Sample, examples, report_unpaired, split_folders, warn
from labeltree.errors import LabeltreeError

LABEL_SUFFIX = "_gtFine_labelIds.png"
IMAGE_SUFFIX = "_leftImg8bit.png"
INSTANCE_SUFFIX = "_gtFine_instanceIds.png"
TRAIN_LABEL_SUFFIX = "_gtFine_labelTrainIds.png"  # csCreateTrainIdLabelImgs' output


def image_path(root: Path, split: str, city: str, key: str) -> Path:
    return Path(root) / "leftImg8bit" / split / city / f"{key}{IMAGE_SUFFIX}"


def label_path(root: Path, split: str, city: str, key: str) -> Path:
    return Path(root) / "gtFine" / split / city / f"{key}{LABEL_SUFFIX}"


def train_label_path(root: Path, split: str, city: str, key: str) -> Path:
    return Path(root) / "gtFine" / split / city / f"{key}{TRAIN_LABEL_SUFFIX}"


def instance_path(root: Path, split: str, city: str, key: str) -> Path:
    return Path(root) / "gtFine" / split / city / f"{key}{INSTANCE_SUFFIX}"


_CS_KEY = re.compile(r"^(?P<city>[^_]+)_(?P<seq>\d{6})_(?P<frame>\d{6})")


class CityscapesReader(DatasetReader):
    """`leftImg8bit/{split}/{city}/*_leftImg8bit.png` + `gtFine/{split}/{city}/*_gtFine_labelIds.png`.

    Also Cityscapes Extended (taxonomy 'cityscapes-extended': the same layout, 16-bit labelIds).
    A label without its photo is kept (image=None; stats need only labels) and reported; a photo
    without its label is left out and reported.
    """

    layout = "cityscapes"
    label_suffix = LABEL_SUFFIX
    image_suffix = IMAGE_SUFFIX
    instance_suffix = INSTANCE_SUFFIX

    def splits(self) -> list[str]:
        found = split_folders(self.root / "gtFine", self.root / "leftImg8bit")
        if not found:
            raise LabeltreeError("no Cityscapes splits: expected gtFine/{train,val,test}/ or leftImg8bit/{...}/ "
                                 f"under {self.root.resolve()}", self.root)
        return found

    prediction_naming = "names must start with {city}_{seq}_{frame}"

    @staticmethod
    def prediction_key(path: Path) -> str | None:
        """The name starts with `{city}_{seq:06}_{frame:06}` (as cityscapesScripts' getPrediction)."""
        m = _CS_KEY.match(path.name)
        return m.group(0) if m else None

    def cities(self, split: str) -> list[str]:
        return sorted({s.city for s in self.samples(split) if s.city})

    def _by_key(self, base: Path, suffix: str) -> dict[str, Path]:
        """Key -> file; files with the suffix but no `{city}_{seq:06}_{frame:06}` name are named in one warning."""
        out: dict[str, Path] = {}
        skipped: list[str] = []
        if base.is_dir():
            for p in sorted(base.glob(f"*/*{suffix}")):
                m = _CS_KEY.match(p.name)
                if m and p.name == m.group(0) + suffix:
                    out[m.group(0)] = p
                else:
                    skipped.append(repr(str(p.relative_to(base)))[1:-1])
        if skipped:
            warn(f"{base}: {len(skipped)} *{suffix} file(s) left out: Cityscapes names are "
                 f"{{city}}_{{seq:06}}_{{frame:06}}{suffix} (as cityscapesScripts expects): {examples(skipped)}; "
                 "rename them")
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
        report_unpaired("labels without their photo", [labels[k] for k in sorted(labels) if k not in images],
                         f"expected the photo at {img}/{{city}}/{{key}}{self.image_suffix}; kept with image=None")
        report_unpaired("photos without a label", [images[k] for k in sorted(images) if k not in labels],
                         f"expected {gt}/{{city}}/{{key}}{self.label_suffix}; left out")
        return out


