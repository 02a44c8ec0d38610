"""Tiny Cityscapes label sets in the native layout and a one-process `collect_stats`, shared by the stats tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from builders import cityscapes_frame, cityscapes_key

from labeltree.core.taxonomy import load_taxonomy
from labeltree.datasets import cityscapes
from labeltree.stats.collect import collect_stats

CS = load_taxonomy("cityscapes")
ROAD, SIDEWALK, BUILDING = (CS.find(n).id for n in ("road", "sidewalk", "building"))
UNLABELED = CS.find("unlabeled").id

# -- helpers: tiny datasets in native layouts ------------------------------------------------------

def cs_label_path(root: Path, split: str, city: str, i: int) -> Path:
    return cityscapes.label_path(root, split, city, cityscapes_key(city, i))


def write_cs(root: Path, split: str, city: str, i: int, arr: np.ndarray, inst: np.ndarray | None = None) -> Path:
    cityscapes_frame(root, split, city, i, arr, instances=inst)
    return cs_label_path(root, split, city, i)


def random_cs(root: Path, n: int, seed: int = 0, split: str = "train") -> list[np.ndarray]:
    """Blocky random Cityscapes labels of varying sizes (ids 0..33), some classes absent from some images."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        h, w = int(rng.integers(20, 60)), int(rng.integers(30, 90))
        ids = rng.choice(np.arange(34), size=int(rng.integers(3, 12)), replace=False)
        small = rng.choice(ids, size=((h + 3) // 4, (w + 3) // 4))
        arr = np.kron(small, np.ones((4, 4), dtype=np.int64))[:h, :w].astype(np.uint8)
        write_cs(root, split, "aachen" if i % 2 else "bremen", i, arr)
        out.append(arr)
    return out


def rows_by_value(rows: list[dict], split: str | None = None) -> dict[int, dict]:
    return {r["value"]: r for r in rows if split is None or r["split"] == split}


def run(root, dataset="cityscapes", tmp_cache=None, **kw):
    kw.setdefault("workers", 1)
    kw.setdefault("progress", False)
    if tmp_cache is None:
        kw.setdefault("cache", False)
    else:
        kw["cache_dir"] = tmp_cache
    return collect_stats(dataset, root, **kw)
