"""Raw, mergeable counts per dataset split (`GroupStats`) and the raw-count files that shards and
`stats-merge` exchange: everything derived (shares, weights, roll-ups) is computed from these at report
time, which is why a shard output is a raw-count file and `stats-merge` is an exact sum."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from labeltree.errors import LabeltreeError
from labeltree.fsutil import read_input_text, write_json
from labeltree.stats.records import STATS_VERSION

RAW_FORMAT = "labeltree-stats-raw"
MAX_COUNT = 1 << 62  # counts are summed in int64: a bigger one is a broken file, not a dataset
MAX_LUT = 1 << 24
MAX_SHARDS = 100_000  # more shards than any dataset has images is a typo

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

def _count(v: Any, what: str, lo: int = 0, hi: int = MAX_COUNT) -> int:
    """A whole number in [lo, hi] from a raw-count file (no fractions, no bools, no 10^30)."""
    if isinstance(v, str) and v.strip().lstrip("-").isdigit():
        v = int(v)
    if isinstance(v, bool) or not isinstance(v, int | float) or (isinstance(v, float) and not v.is_integer()):
        raise ValueError(f"{what}: {v!r} is not a whole number")
    if not lo <= v <= hi:
        raise ValueError(f"{what}: {v!r} is out of range {lo}..{hi}")
    return int(v)

# -- raw files ------------------------------------------------------------------------------------

def write_raw(path: str | Path, groups: Sequence[GroupStats]) -> None:
    write_json(path, {"format": RAW_FORMAT, "version": STATS_VERSION, "groups": [g.to_json() for g in groups]})


def read_raw(path: str | Path) -> list[GroupStats]:
    p = Path(path)
    try:
        d = json.loads(read_input_text(p, "stats part"))
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
