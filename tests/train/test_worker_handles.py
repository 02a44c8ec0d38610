"""A loader with worker processes leaves no shared-memory handles for the interpreter's shutdown.

torch keeps a handle per tensor a worker sent; ones still there at shutdown each printed "Exception ignored in
StorageWeakRef.__del__" after the test suite's summary (36 of them, from the synth CLI flow's 12 steps).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from test_scaling import _vistas

SCRIPT = """
import atexit, sys
from torch.multiprocessing import reductions
# registered first, so it runs last: after build_loader's clean-up, before the modules are torn down
atexit.register(lambda: print("handles left", len(reductions.shared_cache)))
from labeltree.core.tree_file import load_hierarchy
from labeltree.train.config import config_from_dict
from labeltree.train.data import build_loader, build_sources
root = sys.argv[1]
cfg = config_from_dict({
    "datasets": [{"name": "vistas", "root": root, "split": "train", "val_split": "val", "resize": [48, 64],
                  "share": 2}],
    "train": {"crop": [40, 56], "workers": 1, "steps": 3}, "data_root": root})
sources = build_sources(cfg, load_hierarchy("cityscapes+vistas+gtsdb"))
print("batches", sum(1 for _ in build_loader(cfg, sources, 0)))
"""


def test_worker_batches_leave_no_handles_at_exit(tmp_path: Path) -> None:
    root = _vistas(tmp_path / "vistas")
    res = subprocess.run([sys.executable, "-c", SCRIPT, str(root)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split("\n")[:2] == ["batches 3", "handles left 0"]
    assert "Exception ignored" not in res.stderr
