"""Mapillary Vistas layout (v1.x flat `labels/`, v2.0 `v1.2/` + `v2.0/` folders): paths, splits, config."""

from __future__ import annotations

import json
from pathlib import Path

from labeltree.core.taxonomy import Taxonomy, normalise_name
from labeltree.datasets.base import DatasetReader, Sample, Unknown, report_unpaired
from labeltree.errors import LabeltreeError
from labeltree.fsutil import read_input_text

VISTAS_SPLITS = {"train": "training", "val": "validation", "test": "testing"}
IMAGE_SUFFIX = ".jpg"
LABEL_SUFFIX = ".png"


def image_path(root: Path, split: str, key: str) -> Path:
    """A v1.x release's photo (`split` = train / val / test)."""
    return Path(root) / VISTAS_SPLITS[split] / "images" / f"{key}{IMAGE_SUFFIX}"


def _release_dir(version: str | None) -> str:
    """Where a release keeps labels / instances inside a split: v1.x flat, v2.0 under `v2.0/`."""
    return "" if not version or version.startswith("1") else f"v{version}"


def label_path(root: Path, split: str, key: str, version: str | None = None) -> Path:
    """A label (palette indices) of release `version` (v1.x flat `labels/`, v2.0 `v2.0/labels/`); a split
    other than train/val/test keeps its name."""
    return Path(root) / VISTAS_SPLITS.get(split, split) / _release_dir(version) / "labels" / f"{key}{LABEL_SUFFIX}"


def instance_path(root: Path, split: str, key: str, version: str | None = None) -> Path:
    return Path(root) / VISTAS_SPLITS[split] / _release_dir(version) / "instances" / f"{key}{LABEL_SUFFIX}"


def config_name(version: str) -> str:
    """The release's label config beside the splits: `config.json` up to v1.2, `config_v2.0.json` for v2.0."""
    return "config.json" if not _release_dir(version) else f"config_{_release_dir(version)}.json"


def train_label_path(root: Path, split: str, key: str) -> Path:
    """Train ids (8-bit grey, 255 = ignore) beside `labels/`; a split other than train/val/test keeps its name."""
    return Path(root) / VISTAS_SPLITS.get(split, split) / "labelTrainIds" / f"{key}{LABEL_SUFFIX}"


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
                if (base / n).exists():  # a FIFO or device named like the config is refused when read
                    return base / n
        return None

    def _check_config(self) -> None:
        """A release's config lists the labels in index order: it must agree with the taxonomy."""
        path = self._config_path()
        if path is None:
            return
        try:
            labels = json.loads(read_input_text(path, "Vistas config"))["labels"]
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
        label_files = {p.stem: p for p in sorted(labels.glob(f"*{LABEL_SUFFIX}"))}
        image_files = {p.stem: p for p in sorted(images.glob(f"*{IMAGE_SUFFIX}"))} if images.is_dir() else {}
        out = []
        for stem in sorted(label_files):
            lab = label_files[stem]
            inst = labels.parent / "instances" / lab.name
            out.append(Sample(self.taxonomy.name, split, stem, image_files.get(stem), lab,
                              inst if inst.exists() else None))
        report_unpaired("labels without their photo", [label_files[k] for k in label_files if k not in image_files],
                         f"expected {images}/{{key}}.jpg; kept with image=None")
        report_unpaired("photos without a label", [image_files[k] for k in image_files if k not in label_files],
                         f"expected {labels}/{{key}}.png; left out")
        return out


