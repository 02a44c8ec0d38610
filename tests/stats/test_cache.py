"""stats.cache: a re-run reads the cache and gives identical numbers."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image
from stats_helpers import SIDEWALK, cs_label_path, random_cs, rows_by_value, run

from labeltree.stats import records
from labeltree.stats.collect import RunInfo
from labeltree.stats.report import build_report, class_rows

# -- cache ---------------------------------------------------------------------------------------

def test_cache_rerun_is_identical_and_does_not_decode(tmp_path, monkeypatch):
    random_cs(tmp_path / "cs", 5, seed=7)
    cache = tmp_path / "cache"
    info1 = RunInfo()
    first = run(tmp_path / "cs", tmp_cache=cache, info=info1)
    assert (info1.computed, info1.cached) == (5, 0)

    def no_decode(*_a, **_k):
        raise AssertionError("decoded a file that is in the cache")

    monkeypatch.setattr(records, "image_record", no_decode)
    info2 = RunInfo()
    second = run(tmp_path / "cs", tmp_cache=cache, info=info2)
    assert (info2.computed, info2.cached) == (0, 5)
    assert build_report(second).classes == build_report(first).classes
    monkeypatch.undo()
    # a changed file (new mtime) is decoded again; the others still come from the cache
    p = cs_label_path(tmp_path / "cs", "train", "aachen", 1)
    arr = np.array(Image.open(p))
    arr[:] = SIDEWALK
    Image.fromarray(arr).save(p)
    os.utime(p, ns=(p.stat().st_atime_ns, p.stat().st_mtime_ns + 10**9))
    info3 = RunInfo()
    third = run(tmp_path / "cs", tmp_cache=cache, info=info3)
    assert (info3.computed, info3.cached) == (1, 4)
    assert rows_by_value(class_rows(third[0]))[SIDEWALK]["pixels"] >= arr.size
    # a new split is incremental: only its files are read
    random_cs(tmp_path / "cs", 2, seed=8, split="val")
    info4 = RunInfo()
    run(tmp_path / "cs", tmp_cache=cache, info=info4)
    assert (info4.computed, info4.cached) == (2, 5)
