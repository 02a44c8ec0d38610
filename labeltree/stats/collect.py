"""Class statistics and class weights per dataset, split and tree classifier (docs/design.md §4.5, paper Table I).

Pipeline: each label file is decoded once in a worker (`labeltree.parallel.pmap`) and reduced to a
small per-image record (sparse `np.bincount` of the stored label values, image size, instance /
sign / box counts). Records are cached on disk keyed on the file's path, size and mtime, so a re-run
or a new split only decodes what changed. Records are summed into `GroupStats` (one per dataset and
split) that hold RAW counts only; everything derived (shares, weights, roll-ups) is computed from
raw counts at report time, which is why shard outputs (`--shard K/N`) are raw-count files and
`stats-merge` is an exact sum.

Definitions (what the numbers mean):
- annotated pixels: pixels whose value carries a class, i.e. not the taxonomy's unlabeled value,
  not an `ignore_ids` class and, with a hierarchy, not a class the tree mapping ignores.
- share p(c) = pixels(c) / annotated pixels.
- inverse frequency: w(c) = N / (K * pixels(c)) with N annotated pixels and K classes present
  (sklearn's "balanced": a class with the mean frequency gets 1).
- median-frequency balancing (Eigen & Fergus 2015): freq(c) = pixels(c) / annotated pixels of the
  images where c is present; w(c) = median over present classes of freq / freq(c).
- ENet (Paszke et al. 2016): w(c) = 1 / ln(1.02 + p(c)).
- instances: from the instance file where the dataset has one (Cityscapes id*1000+k, Vistas
  class*256+k; the factor is read from the taxonomy's `encoding.instances`): number of distinct
  instance ids per class and their pixels. Pixels without an instance id (Cityscapes crowd regions)
  are not counted. No connected components are computed for these classes.
- signs (dense datasets, classes with a `shape`, e.g. Cityscapes Extended 2000 + ClassID): number
  of 8-connected components of each sign value per image.
- GTSDB: pixels are those of the rendered per-pixel masks (`--gtsdb-masks fine|coarse`, overlapping
  boxes resolved by `labeltree.gtsdb_masks`); boxes per class, box pixels (sum of box areas) and box
  side lengths come from gt.txt.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import re
import sqlite3
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from labeltree.core.hierarchy import IGNORE, Hierarchy
from labeltree.core.taxonomy import Taxonomy, load_taxonomy, resolve_taxonomy_path
from labeltree.core.tree_file import default_tree, load_hierarchy
from labeltree.datasets.base import Sample
from labeltree.datasets.boxmask import DEFAULT_MASK_MODE
from labeltree.datasets.registry import open_dataset
from labeltree.errors import LabeltreeError
from labeltree.evaluate.metrics import DEFAULT_MIN_PIXELS
from labeltree.fsutil import atomic_path, write_json
from labeltree.parallel import default_workers, pmap

STATS_VERSION = 2  # bump when a per-image record changes meaning: invalidates cache entries
RAW_FORMAT = "labeltree-stats-raw"
IMBALANCE_FLAG = 100.0  # classes of one classifier spanning more than two orders of magnitude


# -- counting ---------------------------------------------------------------------------------------

def count_values(arr: np.ndarray, minlength: int = 0) -> np.ndarray:
    """np.bincount of the label values (int64, length >= minlength), exact.

    Label maps are piecewise constant, so the values are counted over RUNS of equal consecutive
    pixels (a 2048x1024 street frame has ~1e4-1e5 runs for 2e6 pixels): one comparison pass plus a
    weighted bincount over the run starts, ~4x cheaper than a bincount of every pixel, which would
    otherwise cost a third to half of decoding the PNG. Noisy maps (many runs) fall back to a
    bincount; for uint8 maps neighbouring byte pairs are then counted as one uint16 and folded back.
    """
    flat = np.ascontiguousarray(arr).reshape(-1)
    if flat.size >= 1 << 16 and flat.dtype.kind == "u":
        change = np.empty(flat.size, dtype=bool)
        change[0] = True
        np.not_equal(flat[1:], flat[:-1], out=change[1:])
        starts = np.flatnonzero(change)
        if starts.size * 8 < flat.size:
            lengths = np.diff(starts, append=flat.size)
            counts = np.bincount(flat[starts], weights=lengths, minlength=minlength)  # float64: exact below 2**53
            return counts.astype(np.int64)
    if flat.dtype == np.uint8 and flat.size >= 1 << 16:
        even = flat.size & ~1
        pairs = np.bincount(flat[:even].view(np.uint16), minlength=1 << 16).reshape(256, 256)
        counts = pairs.sum(axis=0) + pairs.sum(axis=1)
        if even != flat.size:
            counts[flat[-1]] += 1
        if minlength > 256:
            counts = np.concatenate([counts, np.zeros(minlength - 256, dtype=counts.dtype)])
        return counts.astype(np.int64, copy=False)
    return np.bincount(flat, minlength=minlength).astype(np.int64, copy=False)


def instance_factor(taxonomy: Taxonomy) -> int | None:
    """Instance encoding factor from the taxonomy's `encoding.instances` (Cityscapes 1000, Vistas 256)."""
    inst = taxonomy.encoding.instances
    return inst.factor if inst is not None else None


@dataclass(frozen=True)
class _Plan:
    """Per-taxonomy lookup tables a worker needs (built once per process)."""

    lut_size: int
    inst_factor: int | None
    has_instances: np.ndarray  # bool [lut_size] by stored value
    sign_values: np.ndarray  # stored values of shape classes (dense datasets)


@lru_cache(maxsize=16)
def _plan(taxonomy_ref: str) -> _Plan:
    tax = load_taxonomy(taxonomy_ref)
    size = tax.lut_size
    has_inst = np.zeros(size, dtype=bool)
    signs = []
    for c in tax.classes:
        if c.id < 0:
            continue
        v = tax.stored_value(c.id)
        has_inst[v] = c.has_instances
        if c.shape is not None and tax.annotation == "dense":
            signs.append(v)
    return _Plan(size, instance_factor(tax), has_inst, np.array(sorted(signs), dtype=np.int64))


@lru_cache(maxsize=16)
def _reader(taxonomy_ref: str, root: str, unknown: str, mask_mode: str):
    kwargs: dict[str, Any] = {}
    if unknown != "error":
        kwargs["unknown"] = unknown
    tax = load_taxonomy(taxonomy_ref)
    if tax.annotation == "boxes" and mask_mode != DEFAULT_MASK_MODE:
        kwargs["mask_mode"] = mask_mode
    return open_dataset(tax, root, **kwargs)


@dataclass(frozen=True)
class _Ctx:
    """What a worker needs besides the sample (small and picklable)."""

    taxonomy_ref: str
    root: str
    unknown: str = "error"
    mask_mode: str = DEFAULT_MASK_MODE
    instances: bool = True


def _sparse(counts: np.ndarray) -> tuple[list[int], list[int]]:
    nz = np.flatnonzero(counts)
    return nz.tolist(), counts[nz].tolist()


def image_record(ctx: _Ctx, s: Sample) -> dict[str, Any]:
    """Decode one sample once and reduce it to the raw counts of its record (JSON-able)."""
    plan = _plan(ctx.taxonomy_ref)
    reader = _reader(ctx.taxonomy_ref, ctx.root, ctx.unknown, ctx.mask_mode)
    label = reader.read_label(s)
    counts = count_values(label, plan.lut_size)
    if counts.size > plan.lut_size and counts[plan.lut_size:].any():
        bad = (np.flatnonzero(counts[plan.lut_size:]) + plan.lut_size).tolist()[:8]
        raise LabeltreeError(f"label values {bad} lie beyond the taxonomy's largest value {plan.lut_size - 1}",
                             s.label or s.image)
    v, n = _sparse(counts[:plan.lut_size])
    rec: dict[str, Any] = {"height": int(label.shape[0]), "width": int(label.shape[1]), "values": v, "pixels": n}
    # sign components: 8-connected components of each sign value present
    if plan.sign_values.size:
        present = plan.sign_values[counts[plan.sign_values] > 0]
        if present.size:
            rec["sign_values"], rec["sign_components"] = _sign_components(label, present)
    if ctx.instances and s.instances is not None and plan.inst_factor:
        iv, ic, ip = _instance_counts(reader, s, plan, label.shape)
        rec["instance_values"], rec["instances"], rec["instance_pixels"] = iv, ic, ip
    if s.boxes:
        tax = load_taxonomy(ctx.taxonomy_ref)
        rec["boxes"] = [[tax.stored_value(b.class_id), b.x1 - b.x0 + 1, b.y1 - b.y0 + 1] for b in s.boxes]
    return rec


def _sign_components(label: np.ndarray, values: np.ndarray) -> tuple[list[int], list[int]]:
    from scipy import ndimage

    # crop to the rows/columns holding any sign pixel first: signs cover a tiny part of a frame
    mask = np.isin(label, values)
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    crop = label[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    eight = np.ones((3, 3), dtype=bool)
    out = []
    for v in values.tolist():
        _, n = ndimage.label(crop == v, structure=eight)
        out.append(int(n))
    return values.tolist(), out


def _instance_counts(reader, s: Sample, plan: _Plan, shape: tuple[int, ...]) -> tuple[list[int], ...]:
    inst = reader.read_instances(s)
    if inst.shape != shape:
        raise LabeltreeError(f"instance map is {inst.shape[1]}x{inst.shape[0]} but its label map is "
                             f"{shape[1]}x{shape[0]}", s.instances)
    ids_px = count_values(inst)
    ids = np.flatnonzero(ids_px)
    cls = ids // plan.inst_factor
    keep = cls < plan.lut_size
    keep[keep] = plan.has_instances[cls[keep]]
    cls, px = cls[keep], ids_px[ids[keep]]
    n_inst = np.bincount(cls, minlength=plan.lut_size)
    n_px = np.bincount(cls, weights=px, minlength=plan.lut_size).astype(np.int64)
    nz = np.flatnonzero(n_inst)
    return nz.tolist(), n_inst[nz].tolist(), n_px[nz].tolist()


def _work(task: tuple[_Ctx, Sample]) -> tuple[str, Any]:
    """Worker entry: ('ok', record) or ('bad', message) for a file that is bad input."""
    ctx, s = task
    try:
        return "ok", image_record(ctx, s)
    except LabeltreeError as e:
        return "bad", str(e)


# -- cache ------------------------------------------------------------------------------------------

def default_cache_dir() -> Path:
    """$LABELTREE_CACHE, else $XDG_CACHE_HOME/labeltree, else ~/.cache/labeltree (never under the dataset root)."""
    if os.environ.get("LABELTREE_CACHE"):
        return Path(os.environ["LABELTREE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path.home() / ".cache") / "labeltree"


class StatsCache:
    """Per-image records in one sqlite file, keyed on a digest of path + size + mtime (+ options).

    sqlite gives atomic, concurrent-safe updates (several runs or shards on one machine may share it);
    records are committed in batches during a run so an interrupted run resumes where it stopped.
    """

    def __init__(self, cache_dir: str | Path):
        self.dir = Path(cache_dir)
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            self.path = self.dir / "stats.sqlite"
            self.db = sqlite3.connect(self.path, timeout=60)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("CREATE TABLE IF NOT EXISTS records (key TEXT PRIMARY KEY, data TEXT NOT NULL)")
            self.db.commit()
        except (OSError, sqlite3.Error) as e:
            raise LabeltreeError(f"cannot open the stats cache ({e}); pass --cache-dir DIR or --no-cache",
                                 self.dir) from None

    def get(self, keys: Sequence[str]) -> dict[str, dict]:
        out: dict[str, dict] = {}
        for i in range(0, len(keys), 500):
            chunk = list(keys[i:i + 500])
            q = f"SELECT key, data FROM records WHERE key IN ({','.join('?' * len(chunk))})"
            for k, d in self.db.execute(q, chunk):
                out[k] = json.loads(d)
        return out

    def put(self, items: Iterable[tuple[str, dict]]) -> None:
        self.db.executemany("INSERT OR REPLACE INTO records (key, data) VALUES (?, ?)",
                            [(k, json.dumps(v, separators=(",", ":"))) for k, v in items])
        self.db.commit()

    def close(self) -> None:
        self.db.close()


def _file_sig(p: Path | None) -> str:
    if p is None:
        return "-"
    try:
        st = p.stat()
    except OSError:
        return f"{p}|missing"
    return f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}"


def _sample_key(ctx: _Ctx, s: Sample, tax_digest: str) -> str:
    parts = [STATS_VERSION, tax_digest, ctx.unknown, _file_sig(s.label)]
    if s.label is None:  # box datasets: the frame, its boxes and the mask mode define the record
        parts += [_file_sig(s.image), ctx.mask_mode, [(b.x0, b.y0, b.x1, b.y1, b.class_id) for b in s.boxes],
                  list(s.size) if getattr(s, "size", None) else None]
    if ctx.instances and s.instances is not None:
        parts.append(_file_sig(s.instances))
    return hashlib.sha1(json.dumps(parts, default=str).encode()).hexdigest()


# -- raw counts per dataset and split ----------------------------------------------------------------

_ARRAYS = ("pixels", "images", "present_pixels", "instances", "instance_pixels", "signs", "boxes",
           "box_pixels", "box_w", "box_h")


@dataclass
class GroupStats:
    """Raw, mergeable counts of one dataset split (or one shard of it). Arrays are indexed by stored value."""

    dataset: str
    taxonomy: str  # name or path the taxonomy was loaded from
    split: str
    lut_size: int
    ignored: list[int]  # stored values that are not annotated
    annotation: str = "dense"
    mask_mode: str | None = None
    hierarchy: str | None = None
    shard: tuple[int, int] | None = None
    samples: int = 0  # samples of the split (all shards)
    n_images: int = 0
    sizes: Counter = field(default_factory=Counter)  # "WxH" -> images
    bad: list[str] = field(default_factory=list)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    box_area_min: dict[int, int] = field(default_factory=dict)
    box_area_max: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for k in _ARRAYS:
            self.arrays.setdefault(k, np.zeros(self.lut_size, dtype=np.int64))
        self._annotated = np.ones(self.lut_size, dtype=bool)
        self._annotated[[v for v in self.ignored if 0 <= v < self.lut_size]] = False

    @property
    def annotated_mask(self) -> np.ndarray:
        return self._annotated

    # the count arrays, by stored value (named, so that a typo is an AttributeError, not a silent lookup)
    pixels = property(lambda self: self.arrays["pixels"])
    images = property(lambda self: self.arrays["images"])
    present_pixels = property(lambda self: self.arrays["present_pixels"])
    instances = property(lambda self: self.arrays["instances"])
    instance_pixels = property(lambda self: self.arrays["instance_pixels"])
    signs = property(lambda self: self.arrays["signs"])
    boxes = property(lambda self: self.arrays["boxes"])
    box_pixels = property(lambda self: self.arrays["box_pixels"])
    box_w = property(lambda self: self.arrays["box_w"])
    box_h = property(lambda self: self.arrays["box_h"])

    def add(self, rec: dict[str, Any]) -> None:
        """Add one image's record."""
        a = self.arrays
        self.n_images += 1
        self.sizes[f"{rec['width']}x{rec['height']}"] += 1
        v = np.asarray(rec["values"], dtype=np.int64)
        n = np.asarray(rec["pixels"], dtype=np.int64)
        a["pixels"][v] += n
        a["images"][v] += 1
        a["present_pixels"][v] += int(n[self._annotated[v]].sum())
        if "instance_values" in rec:
            iv = np.asarray(rec["instance_values"], dtype=np.int64)
            a["instances"][iv] += np.asarray(rec["instances"], dtype=np.int64)
            a["instance_pixels"][iv] += np.asarray(rec["instance_pixels"], dtype=np.int64)
        if "sign_values" in rec:
            a["signs"][np.asarray(rec["sign_values"], dtype=np.int64)] += np.asarray(rec["sign_components"],
                                                                                     dtype=np.int64)
        for value, w, h in rec.get("boxes", ()):
            a["boxes"][value] += 1
            a["box_pixels"][value] += w * h
            a["box_w"][value] += w
            a["box_h"][value] += h
            self.box_area_min[value] = min(self.box_area_min.get(value, w * h), w * h)
            self.box_area_max[value] = max(self.box_area_max.get(value, 0), w * h)

    @property
    def key(self) -> tuple[str, str]:
        return self.dataset, self.split

    # -- (de)serialisation: the raw file that shards and stats-merge exchange --------------------
    def to_json(self) -> dict[str, Any]:
        def sparse(arr: np.ndarray) -> dict[str, int]:
            return {str(i): int(arr[i]) for i in np.flatnonzero(arr)}

        return {"dataset": self.dataset, "taxonomy": self.taxonomy, "split": self.split,
                "annotation": self.annotation, "lut_size": self.lut_size, "ignored": self.ignored,
                "mask_mode": self.mask_mode, "hierarchy": self.hierarchy,
                "shard": list(self.shard) if self.shard else None, "samples": self.samples,
                "images": self.n_images, "sizes": dict(sorted(self.sizes.items())), "bad": self.bad,
                "counts": {k: sparse(self.arrays[k]) for k in _ARRAYS},
                "box_area_min": {str(k): v for k, v in sorted(self.box_area_min.items())},
                "box_area_max": {str(k): v for k, v in sorted(self.box_area_max.items())}}

    @classmethod
    def from_json(cls, d: dict[str, Any], path: str | Path | None = None) -> GroupStats:
        c = _count
        try:
            shard = tuple(c(v, "shard", 1) for v in d["shard"]) if d.get("shard") else None
            if shard is not None and (len(shard) != 2 or not shard[0] <= shard[1] <= MAX_SHARDS):
                raise ValueError(f"shard {d['shard']} is not [K, N] with 1 <= K <= N")
            g = cls(str(d["dataset"]), str(d["taxonomy"]), str(d["split"]), c(d["lut_size"], "lut_size", 1, MAX_LUT),
                    [int(v) for v in d["ignored"]], str(d.get("annotation", "dense")), d.get("mask_mode"),
                    d.get("hierarchy"), shard, c(d["samples"], "samples"),  # type: ignore[arg-type]
                    c(d["images"], "images"), Counter({str(k): c(v, f"sizes.{k}") for k, v in d["sizes"].items()}),
                    [str(b) for b in d.get("bad", [])])
            for k in _ARRAYS:
                for i, v in d["counts"].get(k, {}).items():
                    g.arrays[k][c(i, f"counts.{k} index", 0, g.lut_size - 1)] = c(v, f"counts.{k}.{i}")
            g.box_area_min = {int(k): c(v, "box_area_min") for k, v in d.get("box_area_min", {}).items()}
            g.box_area_max = {int(k): c(v, "box_area_max") for k, v in d.get("box_area_max", {}).items()}
        except (KeyError, TypeError, ValueError, IndexError, OverflowError, AttributeError) as e:
            raise LabeltreeError(f"not a labeltree stats raw-count group ({type(e).__name__}: {e}); write one "
                                 "with `labeltree stats ... --shard K/N -o FILE.json` or `--raw FILE.json`",
                                 path) from None
        return g

    def merge(self, other: GroupStats) -> None:
        """Add another part of the same dataset split (counts are sums; box extremes min/max)."""
        if (other.dataset, other.split, other.lut_size, sorted(other.ignored), other.mask_mode) != \
                (self.dataset, self.split, self.lut_size, sorted(self.ignored), self.mask_mode):
            raise LabeltreeError(f"cannot merge {other.dataset}/{other.split} into {self.dataset}/{self.split}: "
                                 "parts differ in dataset, split, ignored values or GTSDB mask mode; re-run them "
                                 "with the same options")
        for k in _ARRAYS:
            self.arrays[k] += other.arrays[k]
        self.n_images += other.n_images
        self.sizes.update(other.sizes)
        self.bad.extend(other.bad)
        for k, v in other.box_area_min.items():
            self.box_area_min[k] = min(self.box_area_min.get(k, v), v)
        for k, v in other.box_area_max.items():
            self.box_area_max[k] = max(self.box_area_max.get(k, v), v)


# -- running over a dataset --------------------------------------------------------------------------

@dataclass
class RunInfo:
    computed: int = 0  # samples decoded in this run
    cached: int = 0  # samples served from the cache
    bad: list[str] = field(default_factory=list)


MAX_COUNT = 1 << 62  # counts are summed in int64: a bigger one is a broken file, not a dataset
MAX_LUT = 1 << 24
MAX_SHARDS = 100_000  # more shards than any dataset has images is a typo


def _count(v: Any, what: str, lo: int = 0, hi: int = MAX_COUNT) -> int:
    """A whole number in [lo, hi] from a raw-count file (no fractions, no bools, no 10^30)."""
    if isinstance(v, str) and v.strip().lstrip("-").isdigit():
        v = int(v)
    if isinstance(v, bool) or not isinstance(v, int | float) or (isinstance(v, float) and not v.is_integer()):
        raise ValueError(f"{what}: {v!r} is not a whole number")
    if not lo <= v <= hi:
        raise ValueError(f"{what}: {v!r} is out of range {lo}..{hi}")
    return int(v)


def parse_shard(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m or not 1 <= int(m.group(1)) <= int(m.group(2)) <= MAX_SHARDS:
        raise LabeltreeError(f"--shard must be K/N with 1 <= K <= N <= {MAX_SHARDS} (e.g. 2/8), got '{text}'")
    return int(m.group(1)), int(m.group(2))


def shard_of(samples: Sequence[Sample], shard: tuple[int, int] | None) -> list[Sample]:
    """Deterministic partition: sorted by (split, key), sample i goes to shard i mod N + 1."""
    if shard is None:
        return list(samples)
    k, n = shard
    ordered = sorted(samples, key=lambda s: (s.split, s.key))
    return [s for i, s in enumerate(ordered) if i % n == k - 1]


def resolve_hierarchy(ref: str | Path | None, taxonomy: Taxonomy) -> Hierarchy | None:
    """`None` -> the smallest bundled tree that maps the dataset, if any; 'none' -> no tree; else that
    tree file/name."""
    if ref is not None and str(ref).lower() == "none":
        return None
    if ref is None:
        h = load_hierarchy(default_tree([taxonomy.name]))
        return h if any(m.taxonomy.name == taxonomy.name for m in h.mappings.values()) else None
    h = load_hierarchy(ref)
    h.mapping(taxonomy.name)  # raises with the mapped datasets listed
    return h


def ignored_values(taxonomy: Taxonomy, hierarchy: Hierarchy | None) -> list[int]:
    """Stored values that carry no class: unlabeled, ignore_ids and (with a tree) what its mapping ignores."""
    out = set()
    if taxonomy.encoding.unlabeled is not None:
        out.add(taxonomy.encoding.unlabeled)
    out.update(taxonomy.stored_value(i) for i in taxonomy.ignore_ids if i >= 0)
    if hierarchy is not None:
        v2n = hierarchy.tables(hierarchy.mapping(taxonomy.name).dataset).value_to_node
        out.update(np.flatnonzero(v2n == IGNORE).tolist())
    return sorted(int(v) for v in out)


def collect_stats(dataset: str | Path, root: str | Path, splits: Sequence[str] | None = None, *,
                  hierarchy: Hierarchy | None | str = "default", workers: int | None = None,
                  shard: tuple[int, int] | None = None, cache_dir: str | Path | None = None, cache: bool = True,
                  skip_bad: bool = False, instances: bool = True, mask_mode: str = DEFAULT_MASK_MODE,
                  unknown: str = "error", progress: bool = True,
                  info: RunInfo | None = None) -> list[GroupStats]:
    """Raw counts of `dataset` at `root`, one GroupStats per split (of this shard when `shard`).

    Bad files stop the run with a LabeltreeError naming the file, or with `skip_bad` are listed in
    `GroupStats.bad` / `info.bad` and left out.
    """
    info = info if info is not None else RunInfo()
    tax_path = resolve_taxonomy_path(dataset)
    tax_ref = str(dataset) if str(dataset) == tax_path.stem or not tax_path.exists() else str(tax_path.resolve())
    tax = load_taxonomy(tax_ref)
    h = resolve_hierarchy(None, tax) if hierarchy == "default" else hierarchy
    if isinstance(h, str):
        h = resolve_hierarchy(h, tax)
    reader = _reader(tax_ref, str(Path(root)), unknown, mask_mode)
    all_splits = reader.splits()
    if splits:
        for sp in splits:
            if sp not in all_splits:
                raise LabeltreeError(f"dataset has no split '{sp}' (splits here: {', '.join(all_splits)})", root)
        chosen = list(dict.fromkeys(splits))
    else:
        chosen = all_splits
    per_split = {sp: reader.samples(sp) for sp in chosen}
    mine = shard_of([s for sp in chosen for s in per_split[sp]], shard)
    ign = ignored_values(tax, h)
    hname = None if h is None else (str(h.path) if h.path and h.path.stem != h.name else h.name)
    groups = {sp: GroupStats(tax.name, tax_ref, sp, tax.lut_size, ign, tax.annotation,
                             mask_mode if tax.annotation == "boxes" else None, hname, shard, len(per_split[sp]))
              for sp in chosen}
    ctx = _Ctx(tax_ref, str(Path(root)), unknown, mask_mode, instances)
    tax_digest = hashlib.sha1(tax.model_dump_json().encode()).hexdigest()[:16]
    keys = [_sample_key(ctx, s, tax_digest) for s in mine]
    store = StatsCache(cache_dir or default_cache_dir()) if cache else None
    try:
        hits = store.get(keys) if store else {}
        todo = [i for i, k in enumerate(keys) if k not in hits]
        records: dict[int, dict] = {i: hits[keys[i]] for i in range(len(mine)) if keys[i] in hits}
        info.cached += len(records)
        pending: list[tuple[str, dict]] = []
        tasks = [(ctx, mine[i]) for i in todo]
        nw = default_workers() if workers is None else max(1, workers)
        first = []
        if nw > 1 and len(tasks) > 1:
            # The first file is counted here, before the pool forks: that loads the PNG decoders (pyspng,
            # PIL) once, and the forked workers inherit them instead of each importing them.
            first, tasks = [_work(tasks[0])], tasks[1:]
        results = itertools.chain(first, pmap(_work, tasks, nw, desc=f"stats {tax.name} {'+'.join(chosen)}",
                                              progress=progress, chunksize=max(1, min(16, len(tasks) // (8 * nw)))))
        for i, (status, payload) in zip(todo, results, strict=True):
            s = mine[i]
            if status == "bad":
                if not skip_bad:
                    raise LabeltreeError(f"{payload} (pass --skip-bad to report and skip bad files)")
                info.bad.append(payload)
                groups[s.split].bad.append(payload)
                continue
            info.computed += 1
            records[i] = payload
            if store:
                pending.append((keys[i], payload))
                if len(pending) >= 256:
                    store.put(pending)
                    pending = []
        if store and pending:
            store.put(pending)
    finally:
        if store:
            store.close()
    for i in sorted(records):
        groups[mine[i].split].add(records[i])
    return [groups[sp] for sp in chosen]


# -- raw files ------------------------------------------------------------------------------------

def write_raw(path: str | Path, groups: Sequence[GroupStats]) -> None:
    write_json(path, {"format": RAW_FORMAT, "version": STATS_VERSION, "groups": [g.to_json() for g in groups]})


def read_raw(path: str | Path) -> list[GroupStats]:
    p = Path(path)
    try:
        d = json.loads(p.read_text())
    except FileNotFoundError:
        raise LabeltreeError("stats part not found", p) from None
    except (OSError, ValueError) as e:
        raise LabeltreeError(f"cannot read stats part ({e})", p) from None
    if not isinstance(d, dict) or d.get("format") != RAW_FORMAT:
        raise LabeltreeError(f"not a raw-count stats file (expected format '{RAW_FORMAT}'): stats-merge needs the "
                             "files written by `labeltree stats --shard K/N -o FILE.json` or `--raw FILE.json`, "
                             "not the row tables", p)
    if d.get("version") != STATS_VERSION:
        raise LabeltreeError(f"raw-count file version {d.get('version')} != {STATS_VERSION}; re-run stats", p)
    return [GroupStats.from_json(g, p) for g in d.get("groups", [])]


def merge_groups(parts: Sequence[tuple[str, GroupStats]], allow_partial: bool = False) -> list[GroupStats]:
    """Sum parts of the same dataset split; check that shards K/N are each present exactly once."""
    by_key: dict[tuple[str, str], list[tuple[str, GroupStats]]] = {}
    for src, g in parts:
        by_key.setdefault(g.key, []).append((src, g))
    out = []
    for (ds, sp), items in by_key.items():
        shards = [g.shard for _, g in items]
        if not allow_partial:
            if any(s is None for s in shards):
                if len(items) > 1:
                    raise LabeltreeError(f"{ds}/{sp} appears in {len(items)} parts "
                                         f"({', '.join(src for src, _ in items)}) without shard numbers: merging "
                                         "would count its images twice")
            else:
                ns = {s[1] for s in shards}
                if len(ns) != 1:
                    raise LabeltreeError(f"{ds}/{sp}: parts come from different shardings "
                                         f"({', '.join(f'{k}/{n}' for k, n in shards)})")
                n = ns.pop()
                seen = Counter(k for k, _ in shards)
                dup = sorted(k for k, c in seen.items() if c > 1)
                missing = sorted(set(range(1, n + 1)) - set(seen))
                if dup:
                    raise LabeltreeError(f"{ds}/{sp}: shard(s) {', '.join(f'{k}/{n}' for k in dup)} given twice")
                if missing:
                    raise LabeltreeError(f"{ds}/{sp}: shard(s) {', '.join(f'{k}/{n}' for k in missing)} missing "
                                         "(pass --allow-partial to merge what is there)")
        first = items[0][1]
        g = GroupStats(first.dataset, first.taxonomy, first.split, first.lut_size, first.ignored, first.annotation,
                       first.mask_mode, first.hierarchy, None, first.samples)
        for _, part in items:
            g.merge(part)
        out.append(g)
    return out


# -- report ---------------------------------------------------------------------------------------

def class_weights(pixels: np.ndarray, present_pixels: np.ndarray, counted: np.ndarray) -> dict[str, np.ndarray]:
    """Share and the three weightings over the classes in `counted` with pixels > 0 (NaN elsewhere)."""
    pixels = pixels.astype(np.float64)
    use = counted & (pixels > 0)
    total = pixels[use].sum()
    k = int(use.sum())
    nan = np.full(pixels.shape, np.nan)
    share, inv, freq, mfb, enet = nan.copy(), nan.copy(), nan.copy(), nan.copy(), nan.copy()
    if k:
        share[use] = pixels[use] / total
        inv[use] = total / (k * pixels[use])
        freq[use] = pixels[use] / present_pixels[use]
        mfb[use] = np.median(freq[use]) / freq[use]
        enet[use] = 1.0 / np.log(1.02 + share[use])
    return {"share": share, "frequency": freq, "w_inverse": inv, "w_median_freq": mfb, "w_enet": enet}


def _num(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def _node_of(h: Hierarchy | None, g: GroupStats) -> np.ndarray | None:
    if h is None:
        return None
    try:
        m = h.mapping(g.dataset)
    except LabeltreeError:
        return None
    return h.tables(m.dataset).value_to_node


def class_rows(g: GroupStats, h: Hierarchy | None = None, min_pixels: int = DEFAULT_MIN_PIXELS) -> list[dict]:
    """One row per class of the dataset: raw counts, share, weights, instances/signs/boxes, tree node."""
    tax = load_taxonomy(g.taxonomy)
    w = class_weights(g.pixels, g.present_pixels, g.annotated_mask)
    v2n = _node_of(h, g)
    rows = []
    for c in tax.classes:
        if c.id < 0:
            continue
        v = tax.stored_value(c.id)
        ann = bool(g.annotated_mask[v])
        px = int(g.pixels[v])
        row: dict[str, Any] = {"dataset": g.dataset, "split": g.split, "class_id": c.id, "value": v,
                               "name": c.display, "pixels": px, "images": int(g.images[v]), "ignored": not ann,
                               "evaluated": ann and px >= min_pixels}
        for k in ("share", "frequency", "w_inverse", "w_median_freq", "w_enet"):
            row[k] = _num(w[k][v])
        row["present_pixels"] = int(g.present_pixels[v])
        if c.has_instances and g.instances.any():
            n = int(g.instances[v])
            row["instances"] = n
            row["instance_pixels"] = int(g.instance_pixels[v])
            row["mean_instance_size"] = g.instance_pixels[v] / n if n else None
        if c.shape is not None and g.annotation == "dense":
            row["signs"] = int(g.signs[v])
            row["mean_sign_size"] = px / int(g.signs[v]) if g.signs[v] else None
        if g.annotation == "boxes":
            nb = int(g.boxes[v])
            row["boxes"] = nb
            row["box_pixels"] = int(g.box_pixels[v])
            row["mean_box_w"] = g.box_w[v] / nb if nb else None
            row["mean_box_h"] = g.box_h[v] / nb if nb else None
            row["min_box_area"] = g.box_area_min.get(v)
            row["max_box_area"] = g.box_area_max.get(v)
            row["mean_box_area"] = g.box_pixels[v] / nb if nb else None
        if v2n is not None:
            node = int(v2n[v]) if v < len(v2n) else -2
            row["node"] = h.nodes[node].name if node >= 0 else None  # type: ignore[union-attr]
            row["level"] = h.nodes[node].level if node >= 0 else None  # type: ignore[union-attr]
        rows.append(row)
    return rows


def _megapixels(sizes: Counter) -> tuple[float | None, float | None, float | None]:
    if not sizes:
        return None, None, None
    mp, n = [], []
    for k, c in sizes.items():
        wd, ht = (int(x) for x in k.split("x"))
        mp.append(wd * ht / 1e6)
        n.append(c)
    arr = np.repeat(np.array(mp), np.array(n))
    return float(arr.min()), float(np.median(arr)), float(arr.max())


def summary_row(g: GroupStats, min_pixels: int = DEFAULT_MIN_PIXELS) -> dict[str, Any]:
    """Paper Table I for one dataset split."""
    tax = load_taxonomy(g.taxonomy)
    values = [tax.stored_value(c.id) for c in tax.classes if c.id >= 0]
    classes = [v for v in values if g.annotated_mask[v]]
    ann_px = int(g.pixels[g.annotated_mask].sum())
    total_px = sum(int(k.split("x")[0]) * int(k.split("x")[1]) * c for k, c in g.sizes.items())
    lo, med, hi = _megapixels(g.sizes)
    return {"dataset": g.dataset, "split": g.split, "images": g.n_images, "samples": g.samples,
            "bad_files": len(g.bad), "mp_min": lo, "mp_median": med, "mp_max": hi, "annotation": g.annotation,
            "mask_mode": g.mask_mode, "pixels": total_px, "annotated_pixels": ann_px,
            "annotated_share": ann_px / total_px if total_px else None, "classes": len(classes),
            "classes_present": sum(1 for v in classes if g.pixels[v] > 0),
            "classes_evaluated": sum(1 for v in classes if g.pixels[v] >= min_pixels),
            "boxes": int(g.boxes.sum()) if g.annotation == "boxes" else None}


def rollup(groups: Sequence[GroupStats], h: Hierarchy) -> tuple[list[dict], list[dict]]:
    """Pixels rolled up to each classifier's classes, per dataset and split, and per-classifier imbalance.

    A class's pixels go, for every classifier on its node's path, to that classifier's child on the
    path. `trains` says whether the dataset supervises the classifier (docs/design.md §2.3-2.4); imbalance is
    max/min pixels over the classifier's classes with pixels, counting the datasets that train it
    (all contributing datasets when none does, e.g. evaluation-only data).
    """
    contrib: list[dict] = []
    acc: dict[tuple[str, int], dict[int, dict[str, list[int]]]] = {}
    for g in groups:
        v2n = _node_of(h, g)
        if v2n is None:
            continue
        t = h.tables(h.mapping(g.dataset).dataset)
        per: dict[tuple[int, int], int] = {}
        for v in np.flatnonzero(g.pixels[:len(v2n)]):
            node = int(v2n[v])
            if node < 0:
                continue
            for anc in h.path_to(node):
                j = h.classifier_of.get(h.nodes[anc].parent)
                if j is not None:
                    per[(j, anc)] = per.get((j, anc), 0) + int(g.pixels[v])
        for (j, node), px in sorted(per.items()):
            c = h.classifiers[j]
            trains = bool(t.supervised[j])
            contrib.append({"split": g.split, "classifier": c.name, "level": c.level, "class": h.nodes[node].name,
                            "dataset": g.dataset, "pixels": px, "trains": trains})
            slot = acc.setdefault((g.split, j), {}).setdefault(node, {"all": [0], "train": [0]})
            slot["all"][0] += px
            if trains:
                slot["train"][0] += px
    summary = []
    for (split, j), nodes in sorted(acc.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        c = h.classifiers[j]
        trained = {n: d["train"][0] for n, d in nodes.items()}
        basis = "trained" if any(trained.values()) else "all"
        px = {n: (d["train"][0] if basis == "trained" else d["all"][0]) for n, d in nodes.items()}
        nonzero = {n: p for n, p in px.items() if p > 0}
        lo = min(nonzero.values()) if nonzero else 0
        hi = max(nonzero.values()) if nonzero else 0
        imb = hi / lo if lo else None
        datasets = sorted({r["dataset"] for r in contrib if r["split"] == split and r["classifier"] == c.name})
        summary.append({"split": split, "classifier": c.name, "level": c.level, "classes": len(c.children),
                        "classes_with_pixels": len(nonzero), "pixels": sum(px.values()), "basis": basis,
                        "min_class": h.nodes[min(nonzero, key=nonzero.get)].name if nonzero else None,
                        "min_pixels": lo,
                        "max_class": h.nodes[max(nonzero, key=nonzero.get)].name if nonzero else None,
                        "max_pixels": hi, "imbalance": imb, "flag": bool(imb is not None and imb > IMBALANCE_FLAG),
                        "datasets": ",".join(datasets)})
    return contrib, summary


@dataclass
class Report:
    classes: list[dict]
    summary: list[dict]
    contributions: list[dict]
    classifiers: list[dict]
    hierarchy: Hierarchy | None = None


def build_report(groups: Sequence[GroupStats], h: Hierarchy | None = None,
                 min_pixels: int = DEFAULT_MIN_PIXELS) -> Report:
    classes = [r for g in groups for r in class_rows(g, h, min_pixels)]
    summary = [summary_row(g, min_pixels) for g in groups]
    contrib, cls = rollup(groups, h) if h is not None else ([], [])
    return Report(classes, summary, contrib, cls, h)


# -- output ---------------------------------------------------------------------------------------

def write_rows(path: str | Path, rows: list[dict]) -> None:
    """Rows as JSON (a list of objects, docs/design.md §5), CSV or Parquet by the file suffix, atomically."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".json":
        write_json(p, rows)
        return
    import pandas as pd

    df = pd.DataFrame(rows)
    with atomic_path(p) as tmp:
        if suffix == ".csv":
            df.to_csv(tmp, index=False)
        elif suffix in (".parquet", ".pq"):
            df.to_parquet(tmp, index=False)
        else:
            raise LabeltreeError("output must end in .json, .csv or .parquet", p)


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else ""
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        if v == 0:
            return "0"
        if abs(v) >= 1e5 or abs(v) < 1e-3:
            return f"{v:.3g}"
        return f"{v:.4g}"
    if isinstance(v, int) and abs(v) >= 10**7:
        return f"{v:.3e}"
    return str(v)


def format_table(rows: Sequence[dict], columns: Sequence[tuple[str, str]]) -> str:
    """Fixed-width text table: columns = [(key, header)]."""
    cells = [[h for _, h in columns]] + [[_fmt(r.get(k)) for k, _ in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = []
    for n, row in enumerate(cells):
        lines.append("  ".join(c.rjust(w) if i else c.ljust(w)
                               for i, (c, w) in enumerate(zip(row, widths, strict=True))).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def render_report(rep: Report, all_classes: bool = False) -> str:
    """The terminal view: Table I, the classes of each split, and the classifiers of the tree."""
    out = ["Datasets (Table I)",
           format_table(rep.summary, [("dataset", "dataset"), ("split", "split"), ("images", "images"),
                                      ("mp_min", "MP min"), ("mp_median", "MP med"), ("mp_max", "MP max"),
                                      ("annotation", "annotation"), ("annotated_pixels", "annotated px"),
                                      ("annotated_share", "share"), ("classes_present", "present"),
                                      ("classes_evaluated", "evaluated"), ("classes", "classes"),
                                      ("bad_files", "bad")])]
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rep.classes:
        groups.setdefault((r["dataset"], r["split"]), []).append(r)
    for (ds, sp), rows in groups.items():
        shown = [r for r in rows if all_classes or r["pixels"] > 0]
        cols = [("name", "class"), ("class_id", "id"), ("pixels", "pixels"), ("share", "share"),
                ("images", "images"), ("w_inverse", "w inv"), ("w_median_freq", "w medfreq"), ("w_enet", "w enet")]
        if any("instances" in r for r in rows):
            cols += [("instances", "inst"), ("mean_instance_size", "mean inst px")]
        if any("signs" in r for r in rows):
            cols += [("signs", "signs"), ("mean_sign_size", "mean sign px")]
        if any("boxes" in r for r in rows):
            cols += [("boxes", "boxes"), ("mean_box_w", "box w"), ("mean_box_h", "box h"),
                     ("min_box_area", "min area"), ("max_box_area", "max area")]
        if any("node" in r for r in rows):
            cols += [("node", "tree node")]
        hidden = len(rows) - len(shown)
        out += ["", f"{ds} / {sp}: classes" + (f" ({hidden} without pixels not shown)" if hidden else ""),
                format_table(shown, cols)]
    if rep.classifiers:
        out += ["", f"Classifiers of tree '{rep.hierarchy.name}' (imbalance = max/min pixels over classes with "
                    f"pixels; ! = more than {IMBALANCE_FLAG:g}x)" if rep.hierarchy else "",
                format_table([dict(r, flag="!" if r["flag"] else "") for r in rep.classifiers],
                             [("split", "split"), ("classifier", "classifier"), ("level", "L"),
                              ("classes", "classes"), ("classes_with_pixels", "with px"), ("pixels", "pixels"),
                              ("min_class", "smallest"), ("min_pixels", "px"), ("max_class", "largest"),
                              ("max_pixels", "px"), ("imbalance", "imbalance"), ("flag", "!"),
                              ("basis", "basis"), ("datasets", "datasets")])]
    return "\n".join(out)


def plot_report(rep: Report, path: str | Path) -> None:
    """Log-scale pixel share per class: with a tree, grouped by classifier and coloured by tree level."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # panel (split) -> bars (group, label, share, colour index); legend: colour index -> text
    bars: dict[str, list[tuple[str, str, float, int]]] = {}
    legend: dict[int, str] = {}
    if rep.contributions:
        for s in rep.classifiers:
            per: dict[str, int] = {}
            for r in rep.contributions:
                if r["split"] == s["split"] and r["classifier"] == s["classifier"] and \
                        (r["trains"] or s["basis"] == "all"):
                    per[r["class"]] = per.get(r["class"], 0) + r["pixels"]
            tot = sum(per.values())
            for name, px in per.items():
                if px > 0:
                    bars.setdefault(s["split"], []).append((s["classifier"], name, px / tot, s["level"]))
            legend[s["level"]] = f"level {s['level']}"
        title, ylabel = "classifier level", "pixel share within classifier"
    else:
        datasets = list(dict.fromkeys(r["dataset"] for r in rep.classes))
        for r in rep.classes:
            if r["share"]:
                k = datasets.index(r["dataset"])
                bars.setdefault(r["split"], []).append((r["dataset"], r["name"], r["share"], k))
                legend[k] = r["dataset"]
        title, ylabel = "dataset", "pixel share"
    if not bars:
        raise LabeltreeError("nothing to plot: no annotated pixels", path)
    n = max(len(b) + 2 * len({g for g, *_ in b}) for b in bars.values())
    fig, axes = plt.subplots(len(bars), 1, figsize=(max(8.0, 0.14 * n + 2), 4.5 * len(bars)), squeeze=False)
    cmap = plt.get_cmap("tab10")
    for ax, (split, items) in zip(axes[:, 0], bars.items(), strict=True):
        xs, labels, pos = [], [], 0
        for g in dict.fromkeys(g for g, *_ in items):
            start = pos
            for gg, label, share, k in items:
                if gg == g:
                    ax.bar(pos, share, color=cmap(k % 10), width=0.8)
                    xs.append(pos)
                    labels.append(label)
                    pos += 1
            ax.text((start + pos - 1) / 2, 1.3, g, ha="center", va="bottom", fontsize=7, rotation=0)
            ax.axvline(pos, color="0.85", lw=0.6)
            pos += 2
        ax.set_yscale("log")
        ax.set_ylim(top=4)
        ax.set_xlim(-1, pos - 1)
        ax.set_xticks(xs)
        ax.set_xticklabels(labels, rotation=90, fontsize=6)
        ax.set_ylabel(ylabel)
        ax.set_title(f"split {split}")
        keys = sorted({k for *_, k in items})
        ax.legend([plt.Rectangle((0, 0), 1, 1, color=cmap(k % 10)) for k in keys], [legend[k] for k in keys],
                  title=title, fontsize=7, loc="lower right")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
