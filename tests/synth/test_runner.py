"""synth.runner: determinism across workers, the output folder rules, the CLI and the sign density options."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image
from synth_helpers import N_IMAGES, SIZE, tree_hash

from labeltree.cli import main
from labeltree.datasets.registry import open_dataset
from labeltree.errors import LabeltreeError
from labeltree.synth.paint import gtsdb_sign_classes
from labeltree.synth.runner import parse_size, synthesize


def test_same_seed_same_bytes_different_seed_differs(synth: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    synthesize(again, images=N_IMAGES, seed=3, size=SIZE, workers=2, progress=False)
    assert tree_hash(again) == tree_hash(synth)
    other = tmp_path / "other"
    synthesize(other, images=N_IMAGES, seed=4, size=SIZE, workers=1, progress=False)
    a, b = tree_hash(synth), tree_hash(other)
    same = [k for k in a if k in b and a[k] == b[k] and k.endswith((".png", ".jpg", ".ppm"))]
    assert not same


# -- output folder rules and CLI ----------------------------------------------------------------------------

def test_refuses_foreign_folder_and_replaces_own(tmp_path: Path) -> None:
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(LabeltreeError, match="--force"):
        synthesize(foreign, images=2, workers=1, progress=False)
    synthesize(foreign, images=2, workers=1, progress=False, force=True)
    assert (foreign / "notes.txt").read_text() == "keep me"
    out = tmp_path / "out"
    synthesize(out, images=6, workers=1, progress=False)
    synthesize(out, images=2, workers=1, progress=False)  # an earlier synth output: replaced, no stale frames
    assert len(list((out / "vistas").rglob("*.jpg"))) == 2
    assert len(list((out / "gtsdb").glob("*.ppm"))) == 2


def test_cli(tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(main, ["synth", str(tmp_path / "c"), "-n", "3", "--seed", "2", "--size", "128x64",
                               "--workers", "1", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "cityscapes-extended" in res.output and "gt.txt" in res.output
    with Image.open(next((tmp_path / "c" / "cityscapes" / "leftImg8bit").rglob("*.png"))) as im:
        assert im.size == (128, 64)
    bad = runner.invoke(main, ["synth", str(tmp_path / "d"), "--size", "12by4"])
    assert bad.exit_code == 2 and "256x128" in bad.output
    foreign = runner.invoke(main, ["synth", str(tmp_path / "c" / "vistas"), "-n", "1"])
    assert foreign.exit_code == 2 and "--force" in foreign.output and "Traceback" not in foreign.output
    assert parse_size("320X160") == (320, 160)


def test_sign_density_options(tmp_path: Path) -> None:
    """--gtsdb-signs LO-HI: every GTSDB frame with signs holds LO..HI of them (all placed, none
    overlapping); --street-signs raises the Cityscapes sign posts; bad ranges exit 2."""
    res = CliRunner().invoke(main, ["synth", str(tmp_path / "s"), "-n", "12", "--gtsdb-images", "30",
                                    "--gtsdb-signs", "4-6", "--street-signs", "3-3", "--workers", "1",
                                    "--no-progress", "--json"])
    assert res.exit_code == 0, res.output
    boxes = open_dataset("gtsdb", tmp_path / "s" / "gtsdb").ground_truth().boxes
    per_frame = [len(bs) for bs in boxes.values() if bs]
    assert per_frame and min(per_frame) >= 4 and max(per_frame) <= 6
    for bs in boxes.values():  # side by side: no two boxes share a column
        spans = sorted((b.x0, b.x1) for b in bs)
        assert all(a[1] < b[0] for a, b in zip(spans, spans[1:], strict=False))
    meta = json.loads((tmp_path / "s" / "synth.json").read_text())
    assert meta["gtsdb_signs"] == [4, 6] and meta["street_signs"] == [3, 3]
    fronts, frames = sum(meta["signs"]["cityscapes-extended"].values()), sum(meta["frames"]["cityscapes"].values())
    assert fronts > 1.5 * frames  # 3 posts per frame, 1 in 5 a sign back (default: ~1.3 fronts per frame)
    assert gtsdb_sign_classes(0, 7, 43) == gtsdb_sign_classes(0, 7, 43, (1, 3))  # the default is unchanged
    for bad in ("5-2", "0-9", "x"):
        r = CliRunner().invoke(main, ["synth", str(tmp_path / "b"), "--gtsdb-signs", bad])
        assert r.exit_code == 2 and "--gtsdb-signs" in r.output and "Traceback" not in r.output
