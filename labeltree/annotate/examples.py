"""Reference pictures of each GTSDB class, cropped from the user's own GTSDB frames.

A coloured outline does not tell 'bend left' from 'bend right' or 'speed limit 30' from '80'; the
pictogram does. The largest unclipped boxes of a class in gt.txt are its clearest examples. They are
cut once with the same context rule as the proposal crop (`context_window`), so that the page can show
both at the same scale, and cached in WORKDIR/gtsdb-examples/ beside an index.json that records what
they were cut from; a later `serve` reuses them while gt.txt, the frame list and the used frames are
unchanged, and re-crops otherwise.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labeltree.core.taxonomy import load_taxonomy
from labeltree.datasets.boxmask import Box
from labeltree.datasets.decode import read_rgb
from labeltree.datasets.gtsdb import GTSDBReader
from labeltree.errors import LabeltreeError
from labeltree.fsutil import write_json, write_png

CACHE_DIR = "gtsdb-examples"
INDEX = "index.json"
FORMAT = 1  # bump when the selection or the crop rule changes: old caches are then re-cropped
DEFAULT_PER_CLASS = 4
MAX_PER_CLASS = 12
_FILE = re.compile(r"^\d{2}-\d{5}-L\d+\.png$")


def context_window(box: tuple[int, int, int, int], width: int, height: int) -> tuple[int, int, int, int]:
    """The crop around an inclusive box: half its size of context on each side (at least 8 px), clipped to
    the image. Returns (x0, y0, x1, y1) with exclusive x1, y1. Proposal crops and examples both use it."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0 + 1, y1 - y0 + 1
    mx, my = max(8, w // 2), max(8, h // 2)
    return max(0, x0 - mx), max(0, y0 - my), min(width, x1 + 1 + mx), min(height, y1 + 1 + my)


@dataclass(frozen=True)
class Example:
    """One cached crop: where it came from and where the sign lies inside it."""

    class_id: int
    file: str  # file name inside the cache folder
    frame: str  # frame file name as in gt.txt ('00012.ppm')
    line: int  # gt.txt line of the box
    box: tuple[int, int, int, int]  # the box in the frame, inclusive
    crop: tuple[int, int, int, int]  # the crop window in the frame, exclusive x1, y1

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the cached picture."""
        return self.crop[2] - self.crop[0], self.crop[3] - self.crop[1]

    @property
    def box_in_crop(self) -> tuple[int, int, int, int]:
        """The sign's edges inside the picture (left, top, right, bottom; right/bottom exclusive)."""
        cx, cy = self.crop[0], self.crop[1]
        x0, y0, x1, y1 = self.box
        return x0 - cx, y0 - cy, x1 + 1 - cx, y1 + 1 - cy


@dataclass
class ExampleSet:
    """The examples of every class (an empty list where gt.txt has no box of it)."""

    source: Path  # the GTSDB folder
    folder: Path  # the cache folder
    per_class: int
    by_class: dict[int, list[Example]]
    reused: bool  # True when the cache was valid and nothing was cropped
    version: str  # changes whenever the cached pictures change (for URLs that browsers may cache)

    @property
    def n_examples(self) -> int:
        return sum(len(v) for v in self.by_class.values())

    def missing(self) -> list[int]:
        """ClassIDs without any example."""
        return [k for k, v in self.by_class.items() if not v]


def choose(boxes: dict[str, list[Box]], class_ids: Sequence[int], per_class: int,
           frames: set[str] | None = None) -> dict[int, list[tuple[str, Box]]]:
    """The `per_class` clearest boxes of each class: unclipped before clipped (a sign cut by the frame edge
    is incomplete), then largest area first; ties by frame name and gt.txt line, so the choice is stable.
    Boxes of frames not in `frames` (stems) are skipped: there is nothing to crop them from."""
    pool: dict[int, list[tuple[str, Box]]] = {k: [] for k in class_ids}
    for name, frame_boxes in boxes.items():
        if frames is not None and Path(name).stem not in frames:
            continue
        for b in frame_boxes:
            if b.class_id in pool:
                pool[b.class_id].append((name, b))
    return {k: sorted(v, key=lambda nb: (nb[1].unclipped is not None, -nb[1].area, nb[0], nb[1].line))[:per_class]
            for k, v in pool.items()}


def _file_sig(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def _signature(reader: GTSDBReader, per_class: int, class_ids: Sequence[int]) -> dict[str, Any]:
    """What the cached crops depend on, apart from the used frames themselves (checked one by one)."""
    gt = reader.gt_path
    names = "\n".join(p.name for p in reader.frames().values())
    return {"format": FORMAT, "source": str(reader.root.resolve()),
            "gt_sha256": hashlib.sha256(gt.read_bytes()).hexdigest(),
            "frames_sha256": hashlib.sha256(names.encode()).hexdigest(), "per_class": per_class,
            "classes": list(class_ids)}


def _from_index(data: Any, signature: dict[str, Any], folder: Path,
                reader: GTSDBReader) -> dict[int, list[Example]] | None:
    """The cached examples when the index matches `signature` and every file and frame is as recorded."""
    if not isinstance(data, dict) or data.get("signature") != signature or not isinstance(data.get("classes"), dict):
        return None
    frames = reader.frames()
    out: dict[int, list[Example]] = {}
    try:
        for key, entries in data["classes"].items():
            k = int(key)
            out[k] = []
            for e in entries:
                ex = Example(k, str(e["file"]), str(e["frame"]), int(e["line"]), tuple(int(v) for v in e["box"]),
                             tuple(int(v) for v in e["crop"]))
                stem = Path(ex.frame).stem
                if (not _FILE.match(ex.file) or len(ex.box) != 4 or len(ex.crop) != 4 or stem not in frames
                        or _file_sig(frames[stem]) != list(e["frame_stat"]) or not (folder / ex.file).is_file()):
                    return None
                out[k].append(ex)
    except (KeyError, TypeError, ValueError, OSError):
        return None
    return out if sorted(out) == sorted(signature["classes"]) else None


def load_examples(gtsdb_root: str | Path, workdir: str | Path, per_class: int = DEFAULT_PER_CLASS) -> ExampleSet:
    """The examples for WORKDIR from GTSDB_ROOT: reused from the cache when still valid, else cropped anew.

    Raises LabeltreeError for a folder that is missing, has no gt.txt or no frames, or a bad gt.txt line."""
    if not 1 <= per_class <= MAX_PER_CLASS:
        raise LabeltreeError(f"--examples must be 1..{MAX_PER_CLASS} pictures per class, got {per_class}")
    root = Path(gtsdb_root)
    if not root.is_dir():
        raise LabeltreeError(f"--gtsdb: no such folder (searched {root.resolve()}); give the GTSDB folder that holds "
                             "gt.txt and the frames 00000.ppm ...", root)
    gt_path = root / "gt.txt"
    if not gt_path.is_file():
        raise LabeltreeError(f"--gtsdb: this folder has no gt.txt (searched {gt_path.resolve()}); give the GTSDB "
                             "folder that holds gt.txt next to the frames 00000.ppm ... (FullIJCNN2013/ in the "
                             "release)", root)
    tax = load_taxonomy("gtsdb")
    class_ids = list(tax.ids)
    reader = GTSDBReader(tax, root)
    frames = reader.frames()
    if not frames:
        raise LabeltreeError(f"--gtsdb: no frames NNNNN.ppm (or .png / .jpg) in {root.resolve()} or its sub-folders; "
                             "give the GTSDB folder that holds them", root)
    folder = Path(workdir) / CACHE_DIR
    signature = _signature(reader, per_class, class_ids)
    index = folder / INDEX
    try:
        text = index.read_text()
        cached = _from_index(json.loads(text), signature, folder, reader)
    except (OSError, ValueError):
        cached = None
    if cached is not None:
        return ExampleSet(root, folder, per_class, cached, True, hashlib.sha256(text.encode()).hexdigest()[:12])

    chosen = choose(reader.ground_truth().boxes, class_ids, per_class, set(frames))
    by_frame: dict[str, list[tuple[int, Box]]] = {}
    for k, picks in chosen.items():
        for name, b in picks:
            by_frame.setdefault(name, []).append((k, b))
    made: dict[int, list[Example]] = {k: [] for k in class_ids}
    stats: dict[str, list[int]] = {}
    for name in sorted(by_frame):
        path = frames[Path(name).stem]
        stats[name] = _file_sig(path)
        rgb = read_rgb(path)
        h, w = rgb.shape[:2]
        for k, b in by_frame[name]:
            box = (b.x0, b.y0, b.x1, b.y1)
            crop = context_window(box, w, h)
            ex = Example(k, f"{k:02d}-{Path(name).stem}-L{b.line}.png", name, b.line, box, crop)
            write_png(folder / ex.file, rgb[crop[1]:crop[3], crop[0]:crop[2]])
            made[k].append(ex)
    for k in made:  # keep the clearest-first order of `choose`
        order = {(n, b.line): i for i, (n, b) in enumerate(chosen[k])}
        made[k].sort(key=lambda e: order[(e.frame, e.line)])
    data = {"signature": signature, "classes": {
        str(k): [{"file": e.file, "frame": e.frame, "line": e.line, "box": list(e.box), "crop": list(e.crop),
                  "frame_stat": stats[e.frame]} for e in v] for k, v in made.items()}}
    write_json(index, data)  # last, so that an interrupted run leaves no index that names missing files
    keep = {e.file for v in made.values() for e in v}
    for p in folder.iterdir():  # crops of an earlier selection (only our own file names)
        if _FILE.match(p.name) and p.name not in keep:
            os.unlink(p)
    text = index.read_text()
    return ExampleSet(root, folder, per_class, made, False, hashlib.sha256(text.encode()).hexdigest()[:12])
