"""One frame written in its dataset's native layout (docs/design.md §3): file names, keys and splits,
and one frame writer per layout (`WRITERS`); GTSDB frames are PPM photos whose labels are gt.txt lines."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from labeltree.core.taxonomy import Taxonomy
from labeltree.datasets import bdd100k, cityscapes, gtsdb, idd, vistas
from labeltree.datasets.gtsdb import GTSDB_SPLITS
from labeltree.errors import LabeltreeError
from labeltree.fsutil import atomic_path, write_png
from labeltree.synth.paint import Scene, gtsdb_sign_classes, render_scene
from labeltree.synth.world import World, get_world
from labeltree.vocab import GTSDB_SIGNS

CITIES = {"train": ("aachen", "bremen", "zurich"), "val": ("frankfurt", "lindau")}
CS_FRAME = 19  # Cityscapes annotates the 20th frame of each 30-frame snippet
GTSDB_TRAIN, GTSDB_TEST = len(GTSDB_SPLITS["train"]), len(GTSDB_SPLITS["test"])
GTSDB_TEST_START = GTSDB_SPLITS["test"].start
JPEG_QUALITY = 90
VAL_EVERY = 5  # every 5th frame is validation: 80 % / 20 %


def write_ppm(target: Path, rgb: np.ndarray) -> None:
    """Binary P6 PPM (GTSDB's frame format), written atomically."""
    h, w, _ = rgb.shape
    with atomic_path(target) as tmp:
        tmp.write_bytes(f"P6\n{w} {h}\n255\n".encode() + np.ascontiguousarray(rgb, dtype=np.uint8).tobytes())


def _link(src: Path, target: Path) -> None:
    """`target` becomes a hard link to `src` (a copy where links are impossible), atomically."""
    with atomic_path(target) as tmp:
        tmp.unlink()
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)


def _write_jpeg(target: Path, rgb: np.ndarray) -> None:
    with atomic_path(target) as tmp:
        Image.fromarray(rgb).save(tmp, format="JPEG", quality=JPEG_QUALITY, subsampling=2, optimize=False)


def vistas_key(seed: int, index: int) -> str:
    """A 22-character Mapillary-style image key, stable for (seed, index)."""
    d = hashlib.sha256(f"labeltree-synth/{seed}/{index}".encode()).digest()
    return base64.urlsafe_b64encode(d).decode()[:22]


def cityscapes_split(index: int) -> str:
    return "val" if index % VAL_EVERY == VAL_EVERY - 1 else "train"


def split_index(index: int) -> tuple[str, int]:
    """(split, position within the split) of frame `index`: every VAL_EVERY-th frame is validation."""
    split = cityscapes_split(index)
    return split, index // VAL_EVERY if split == "val" else index - index // VAL_EVERY


def cityscapes_key(index: int) -> tuple[str, str, str]:
    """(split, city, key) of Cityscapes frame `index`: cities round-robin within a split."""
    split, j = split_index(index)
    cities = CITIES[split]
    city = cities[j % len(cities)]
    return split, city, f"{city}_{j // len(cities):06d}_{CS_FRAME:06d}"


def gtsdb_layout(n: int) -> list[int]:
    """Frame numbers for n GTSDB frames: about 2/3 from 00000 (train), the rest from 00600 (test)."""
    if n > GTSDB_TRAIN + GTSDB_TEST:
        raise LabeltreeError(f"GTSDB numbering holds at most {GTSDB_TRAIN + GTSDB_TEST} frames "
                             f"(00000-00599 train, 00600-00899 test); asked for {n}")
    n_train = min(GTSDB_TRAIN, int(round(n * 2 / 3)))
    n_test = n - n_train
    if n_test > GTSDB_TEST:
        n_train, n_test = n - GTSDB_TEST, GTSDB_TEST
    return list(range(n_train)) + list(range(GTSDB_TEST_START, GTSDB_TEST_START + n_test))

@dataclass(frozen=True)
class FrameJob:
    dataset: str
    index: int
    seed: int
    width: int
    height: int
    out: str
    hierarchy: str
    gtsdb_signs: tuple[int, int] = GTSDB_SIGNS
    street_signs: tuple[int, int] | None = None


def make_frame(job: FrameJob) -> dict:
    """Render and write one frame in its dataset's layout; returns what the summary needs."""
    world = get_world(job.hierarchy)
    layout = world.layout[job.dataset]
    if layout == "gtsdb":
        classes = gtsdb_sign_classes(job.seed, job.index, len(world.signs), job.gtsdb_signs)
        sc = render_scene(job.dataset, job.seed, job.index, job.width, job.height, classes, world)
        name = gtsdb.frame_name(job.index)
        write_ppm(Path(job.out) / world.folder[job.dataset] / name, sc.rgb)
        return {"dataset": job.dataset, "name": name,
                "boxes": [(s.x0, s.y0, s.x1, s.y1, s.class_id) for s in sc.signs]}
    sc = render_scene(job.dataset, job.seed, job.index, job.width, job.height, None, world, job.street_signs)
    values = world.labels(job.dataset, sc.nodes)
    split = WRITERS[layout](world, job, sc, Path(job.out) / world.folder[job.dataset], values)
    return {"dataset": job.dataset, "split": split,
            "counts": np.bincount(values.ravel(), minlength=world.tax[job.dataset].lut_size),
            "signs": [s.class_id for s in sc.signs if s.front]}


def _write_cityscapes(world: World, job: FrameJob, sc: Scene, root: Path, ids: np.ndarray) -> str:
    """labelIds + instanceIds + photo; the evaluation datasets that share these frames (Cityscapes
    Extended) get their own labels and hard links to the photos."""
    split, city, key = cityscapes_key(job.index)
    ds = job.dataset
    write_png(cityscapes.image_path(root, split, city, key), sc.rgb)
    write_png(cityscapes.label_path(root, split, city, key), ids)
    if ds in world.has_instances:
        write_png(cityscapes.instance_path(root, split, city, key), world.instances(ds, ids, sc.inst))
    for other in (e for e, src in world.shares.items() if src == ds):
        dest = Path(job.out) / world.folder[other]
        _link(cityscapes.image_path(root, split, city, key), cityscapes.image_path(dest, split, city, key))
        write_png(cityscapes.label_path(dest, split, city, key), world.labels(other, sc.nodes))
    return split


def _write_vistas(world: World, job: FrameJob, sc: Scene, root: Path, lab: np.ndarray) -> str:
    """JPEG photo, palette label and instance PNG in the folders of the taxonomy's release."""
    split = cityscapes_split(job.index)
    key = vistas_key(job.seed, job.index)
    ds = job.dataset
    tax = world.tax[ds]
    _write_jpeg(vistas.image_path(root, split, key), sc.rgb)
    write_png(vistas.label_path(root, split, key, tax.version), lab, palette=tax.palette())
    if ds in world.has_instances:
        write_png(vistas.instance_path(root, split, key, tax.version), world.instances(ds, lab, sc.inst))
    return vistas.VISTAS_SPLITS[split]


def bdd100k_key(seed: int, index: int) -> str:
    """A BDD100K-style video name `xxxxxxxx-xxxxxxxx`, stable for (seed, index)."""
    d = hashlib.sha256(f"labeltree-synth/bdd100k/{seed}/{index}".encode()).hexdigest()
    return f"{d[:8]}-{d[8:16]}"


def _write_bdd100k(world: World, job: FrameJob, sc: Scene, root: Path, lab: np.ndarray) -> str:
    """JPEG photo, 8-bit mask of train ids (255 = unknown) and its colour map, as the 10K release."""
    split = cityscapes_split(job.index)
    key = bdd100k_key(job.seed, job.index)
    _write_jpeg(bdd100k.image_path(root, split, key), sc.rgb)
    write_png(bdd100k.label_path(root, split, key), lab)
    write_png(bdd100k.colormap_path(root, split, key), lab, palette=world.tax[job.dataset].palette())
    return split


IDD_SEQUENCES = 4  # synthetic IDD frames go round-robin into this many sequence folders per split


def idd_key(index: int) -> tuple[str, str, str]:
    """(split, sequence, frame) of IDD frame `index`: sequences '0'.., frames numbered within a split."""
    split, j = split_index(index)
    return split, str(j % IDD_SEQUENCES), f"{j:06d}"


def _write_idd(world: World, job: FrameJob, sc: Scene, root: Path, lab: np.ndarray) -> str:
    """PNG photo and the label PNG of the taxonomy's column (createLabels' `_gtFine_label{column}s.png`)."""
    split, seq, frame = idd_key(job.index)
    write_png(idd.image_path(root, split, seq, frame), sc.rgb)
    write_png(idd.label_path(root, split, seq, frame, idd.column_of(world.tax[job.dataset])), lab)
    return split


# layout -> frame writer(world, job, scene, the dataset's folder, the frame's label values) -> split name
# (GTSDB frames are written by make_frame: their labels are gt.txt lines)
WRITERS: dict[str, Callable[[World, FrameJob, Scene, Path, np.ndarray], str]] = {
    "cityscapes": _write_cityscapes,
    "vistas": _write_vistas,
    "bdd100k": _write_bdd100k,
    "idd": _write_idd,
}


def vistas_config(tax: Taxonomy) -> dict:
    """config.json in Mapillary's format, generated from the taxonomy (index = label value)."""
    labels = [{"color": list(c.color), "instances": c.has_instances, "readable": c.display, "name": c.name,
               "evaluate": not c.ignore_in_eval} for c in sorted(tax.classes, key=lambda c: c.id)]
    return {"labels": labels, "version": tax.version, "mapping": "public",
            "folder_structure": "{split}/{content}/{key:.{22}}.{ext}"}


def check_writable(world: World) -> None:
    """Refuse a tree with a dataset in a layout that no frame writer writes."""
    h = world.hierarchy
    for ds in world.datasets:
        if world.layout[ds] != "gtsdb" and world.layout[ds] not in WRITERS:
            raise LabeltreeError(f"dataset '{ds}' of tree '{h.name}' is in layout '{world.layout[ds]}', which "
                                 f"labeltree synth cannot write (it writes {', '.join([*WRITERS, 'gtsdb'])})",
                                 h.path)
