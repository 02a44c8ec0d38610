"""Split the Cityscapes traffic-sign mask into sign instances (proposals) and store them.

Cityscapes labels all sign faces of a frame with one id and has no sign instances, so the mask is
cut into connected components, each one candidate sign. Two rules (`RULES`):

- `authors` (default; the authors' annotation tool, datasets/cityscapes_extended/v1/annotation_tool/
  annotate.py:38-63 in their repository): 4-connected components whose bounding box is smaller than
  `min_size` on either side are dropped first (they stay plain "traffic sign"), then what is left is
  8-connected, each 8-connected component one proposal. Two small squares touching at a corner are
  dropped; a diagonal one-pixel appendix is cut off a big sign.
- `connected`: 8-connected (or `connectivity`-connected) components first, then the same size filter
  on each component's box: two small squares touching at a corner make one proposal.

`split_touching` separates signs whose masks touch (distance transform + watershed): two round
signs joined by a thin neck become two proposals.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage as ndi

from labeltree.annotate import db
from labeltree.annotate.classes import sign_decisions
from labeltree.datasets.base import Sample
from labeltree.datasets.registry import open_dataset
from labeltree.errors import LabeltreeError
from labeltree.fsutil import check_input, write_png
from labeltree.parallel import pmap

DEFAULT_SPLITS = ("train", "val")
RULES = ("authors", "connected")


@dataclass
class Components:
    """Proposals of one label image: `labels` numbers proposal pixels 1..n (0 elsewhere)."""

    labels: np.ndarray  # uint16, same shape as the label image
    boxes: list[tuple[int, int, int, int]] = field(default_factory=list)  # inclusive x0, y0, x1, y1
    areas: list[int] = field(default_factory=list)
    n_small: int = 0  # components left as plain 'traffic sign' by the size filter
    n_split: int = 0  # components that the watershed separated into several signs

    def __len__(self) -> int:
        return len(self.boxes)


def _structure(connectivity: int) -> np.ndarray:
    if connectivity == 8:
        return np.ones((3, 3), dtype=bool)
    if connectivity == 4:
        return ndi.generate_binary_structure(2, 1)
    raise ValueError(f"connectivity must be 4 or 8, got {connectivity}")


def split_touching(mask: np.ndarray, h: float = 2.0) -> np.ndarray:
    """Watershed of one component's mask on its distance transform: int labels 1..k (0 outside).

    Markers are the h-maxima of the distance (regional maxima at least `h` px above their
    surroundings), so an elongated sign (a ridge) stays one piece and two discs joined by a neck
    become two.
    """
    from skimage.morphology import h_maxima
    from skimage.segmentation import watershed

    padded = np.pad(mask, 1)
    dist = ndi.distance_transform_edt(padded)[1:-1, 1:-1]
    peaks = h_maxima(dist, h).astype(bool) & mask
    markers, n = ndi.label(peaks, structure=np.ones((3, 3), dtype=bool))
    if n <= 1:
        return mask.astype(np.int32)
    return watershed(-dist, markers, mask=mask, connectivity=2).astype(np.int32)


def _small(sl: tuple[slice, slice], min_size: int) -> bool:
    return (sl[1].stop - sl[1].start) < min_size or (sl[0].stop - sl[0].start) < min_size


def _authors_mask(mask: np.ndarray, min_size: int) -> tuple[np.ndarray, int]:
    """The authors' first pass: drop 4-connected components whose box is under min_size on a side."""
    lab4, _ = ndi.label(mask, structure=_structure(4))
    small = [i for i, sl in enumerate(ndi.find_objects(lab4), start=1) if sl is not None and _small(sl, min_size)]
    if not small:
        return mask, 0
    return mask & ~np.isin(lab4, small), len(small)


def sign_components(label: np.ndarray, sign_id: int, min_size: int = 20, split: bool = False,
                    connectivity: int = 8, rule: str = "authors") -> Components:
    """Label the sign mask of one image by `rule` (module doc); every proposal's box is >= min_size on both sides.

    `connectivity` is the `connected` rule's; the `authors` rule is always 4 then 8.
    """
    if rule not in RULES:
        raise ValueError(f"rule must be one of {', '.join(RULES)}, got {rule!r}")
    mask = label == sign_id
    n_dropped = 0
    if rule == "authors":
        mask, n_dropped = _authors_mask(mask, min_size)
        connectivity = 8
    lab, _ = ndi.label(mask, structure=_structure(connectivity))
    out = np.zeros(label.shape, dtype=np.uint16)
    comps = Components(out, n_small=n_dropped)
    for i, sl in enumerate(ndi.find_objects(lab), start=1):
        if sl is None:
            continue
        sub = lab[sl] == i
        h, w = sub.shape
        pieces = [sub]
        if split and h >= min_size and w >= min_size:
            ws = split_touching(sub, h=max(2.0, 0.1 * min_size))
            k = int(ws.max())
            if k > 1:
                comps.n_split += 1
                pieces = [ws == j for j in range(1, k + 1)]
        for piece in pieces:
            ys, xs = np.nonzero(piece)
            if ys.size == 0:
                continue
            y0, y1 = ys.min() + sl[0].start, ys.max() + sl[0].start
            x0, x1 = xs.min() + sl[1].start, xs.max() + sl[1].start
            if (x1 - x0 + 1) < min_size or (y1 - y0 + 1) < min_size:
                comps.n_small += 1
                continue
            if len(comps) >= np.iinfo(np.uint16).max:
                raise ValueError("more than 65535 sign components in one image")
            out[sl][piece] = len(comps) + 1
            comps.boxes.append((int(x0), int(y0), int(x1), int(y1)))
            comps.areas.append(int(ys.size))
    return comps


def components_file(workdir: Path, split: str, key: str) -> Path:
    return workdir / "components" / split / f"{key}_components.png"


def read_components(path: Path) -> np.ndarray:
    if not path.exists():
        raise LabeltreeError("component map missing; re-run propose on this WORKDIR to rebuild it", path)
    with Image.open(check_input(path, "component map")) as im:
        return np.asarray(im).astype(np.uint16)


@dataclass(frozen=True)
class _ProposeTask:
    """One Cityscapes label image to find sign components in: a worker's input."""

    root: str
    sample: Sample
    out: str
    sign_id: int
    min_size: int
    split: bool
    rule: str


def _propose_one(job: _ProposeTask) -> dict:
    """Worker: decode one label image once, label its sign mask, write the component map."""
    reader = open_dataset("cityscapes", job.root)
    label = reader.read_label(job.sample)
    comps = sign_components(label, job.sign_id, job.min_size, job.split, rule=job.rule)
    write_png(job.out, comps.labels)
    return {"height": label.shape[0], "width": label.shape[1], "boxes": comps.boxes, "areas": comps.areas,
            "n_small": comps.n_small, "n_split": comps.n_split}


@dataclass
class ProposeReport:
    images_new: int = 0
    images_known: int = 0
    proposals_new: int = 0
    small: int = 0
    split: int = 0
    splits: dict[str, int] = field(default_factory=dict)  # new images per split


def _relative(path: Path | None, root: Path) -> str | None:
    if path is None:
        return None
    return str(Path(path).resolve().relative_to(root))


def _check_workdir(root: Path, workdir: Path) -> None:
    """WORKDIR is this command's own folder: new, empty or holding its database; never inside the dataset."""
    if workdir == root or workdir.is_relative_to(root):
        raise LabeltreeError("WORKDIR is inside the Cityscapes root (no command writes into its inputs); give a "
                             "folder outside it", workdir)
    if workdir.is_dir() and not db.db_path(workdir).exists() and any(workdir.iterdir()):
        raise LabeltreeError(f"WORKDIR holds other files and no {db.DB_NAME} (no earlier propose); give a new or "
                             "empty folder", workdir)


def _check_same_options(meta: dict[str, str], min_size: int, split: bool, rule: str, where: Path) -> None:
    """A rerun adds images with the options the earlier ones were proposed with; other options would leave
    one database of two rules (and its meta naming only the last): refused."""
    now = {"rule": rule, "min_size": str(min_size), "split_touching": str(int(split))}
    flags = {"rule": "--rule", "min_size": "--min-size", "split_touching": "--split-touching (1 = on)"}
    for key, value in now.items():
        if key in meta and meta[key] != value:
            raise LabeltreeError(f"this WORKDIR's proposals were made with {flags[key]} {meta[key]}, not {value}; "
                                 "rerun with the same options, or use a new WORKDIR", where)


def propose(root: str | Path, workdir: str | Path, splits: list[str] | None = None, min_size: int = 20,
            split: bool = False, workers: int | None = None, progress: bool = True,
            rule: str = "authors") -> ProposeReport:
    """Add the proposals of every not-yet-known image of `splits` to WORKDIR's database.

    Images already in the database are skipped, so decisions are never touched and an
    interrupted run continues where it stopped (each image is committed on its own).
    """
    if min_size < 1:
        raise LabeltreeError(f"--min-size must be at least 1 px, got {min_size}")
    if rule not in RULES:
        raise LabeltreeError(f"--rule must be one of {', '.join(RULES)}, got {rule!r}")
    root = Path(root).resolve()
    workdir = Path(workdir).resolve()
    reader = open_dataset("cityscapes", root)
    available = reader.splits()
    if splits is None:
        splits = [s for s in DEFAULT_SPLITS if s in available]
        if not splits:
            raise LabeltreeError(f"no train or val split under {root / 'gtFine'}; pass --splits "
                                 f"(found: {', '.join(available) or 'none'})", root)
    for s in splits:
        if s not in available:
            raise LabeltreeError(f"no Cityscapes split '{s}' (searched {root / 'gtFine' / s}); found: "
                                 f"{', '.join(available) or 'none'}", root)
    _check_workdir(root, workdir)
    space = sign_decisions()
    con = db.connect(workdir, create=True)
    try:
        with db.transaction(con):
            meta = db.get_meta(con)
            if "root" in meta and Path(meta["root"]) != root:
                raise LabeltreeError(f"this WORKDIR belongs to the Cityscapes root {meta['root']}, not {root}; "
                                     "use a new WORKDIR for another dataset copy", db.db_path(workdir))
            if "root" not in meta:
                db.set_meta(con, root=root, schema=db.SCHEMA_VERSION, sign_id=space.sign_id)
            _check_same_options(meta, min_size, split, rule, db.db_path(workdir))
            db.set_meta(con, min_size=min_size, split_touching=int(split), rule=rule)
        known = {r["key"] for r in con.execute("SELECT key FROM images")}
        report = ProposeReport()
        jobs: list[_ProposeTask] = []
        for s in splits:
            for sample in reader.samples(s):
                if sample.key in known:
                    report.images_known += 1
                    continue
                out = components_file(workdir, s, sample.key)
                jobs.append(_ProposeTask(str(root), sample, str(out), space.sign_id, min_size, split, rule))
        for job, res in zip(jobs, pmap(_propose_one, jobs, workers=workers, desc="propose", progress=progress),
                            strict=True):
            s = job.sample
            with db.transaction(con):
                cur = con.execute(
                    "INSERT INTO images(split, key, city, label, image, components, width, height, n_small, n_split) "
                    "VALUES(?,?,?,?,?,?,?,?,?,?)",
                    (s.split, s.key, s.city or "", _relative(s.label, root), _relative(s.image, root),
                     str(Path(job.out).relative_to(workdir)), res["width"], res["height"], res["n_small"],
                     res["n_split"]))
                con.executemany(
                    "INSERT INTO proposals(image_id, component, x0, y0, x1, y1, area) VALUES(?,?,?,?,?,?,?)",
                    [(cur.lastrowid, k, *box, area)
                     for k, (box, area) in enumerate(zip(res["boxes"], res["areas"], strict=True), start=1)])
            report.images_new += 1
            report.splits[s.split] = report.splits.get(s.split, 0) + 1
            report.proposals_new += len(res["boxes"])
            report.small += res["n_small"]
            report.split += res["n_split"]
        return report
    finally:
        con.close()
