"""GTSDB per-pixel masks: exact shapes in frames, overlap order, encodings, the folder writer and CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from labeltree.cli import main
from labeltree.core.taxonomy import load_taxonomy
from labeltree.datasets.boxmask import Box, render_mask
from labeltree.datasets.gtsdb import write_gtsdb_masks
from labeltree.datasets.shapes import shape_mask
from labeltree.errors import LabeltreeError

GTSDB = load_taxonomy("gtsdb")
OFFSET = GTSDB.encoding.offset  # 2000
DANGER = GTSDB.find("danger").id  # triangle
STOP = GTSDB.find("stop").id  # octagon
SL30 = GTSDB.find("speed limit 30").id  # circle
PRIORITY = GTSDB.find("priority road").id  # diamond


def _read16(p: Path) -> np.ndarray:
    with Image.open(p) as im:
        assert im.mode == "I;16", im.mode
        return np.asarray(im).astype(np.uint16)


def test_fine_triangle_placed_exactly() -> None:
    # 7x7 inclusive box columns 3..9, rows 2..8: apex at (6, 2), base on row 8 (hand-computed)
    got = render_mask([Box(3, 2, 9, 8, DANGER)], 12, 14)
    v = OFFSET + DANGER
    expected = np.zeros((12, 14), np.uint16)
    rows = ["...#...", "...#...", "..###..", "..###..", ".#####.", ".#####.", "#######"]
    for i, r in enumerate(rows):
        for j, c in enumerate(r):
            if c == "#":
                expected[2 + i, 3 + j] = v
    assert got.dtype == np.uint16
    np.testing.assert_array_equal(got, expected)


def test_fine_5x5_circle_and_coarse_box() -> None:
    fine = render_mask([Box(1, 1, 5, 5, SL30)], 7, 7)
    assert np.count_nonzero(fine) == 21  # 25 minus the four corners
    assert fine[1, 1] == 0 and fine[1, 2] == OFFSET + SL30 and fine[3, 3] == OFFSET + SL30
    coarse = render_mask([Box(1, 1, 5, 5, SL30)], 7, 7, mode="coarse")
    assert np.count_nonzero(coarse) == 25 and set(np.unique(coarse).tolist()) == {0, OFFSET + SL30}
    assert coarse[0].sum() == 0 and coarse[:, 6].sum() == 0


@pytest.mark.parametrize("order", [1, -1])
def test_smaller_sign_on_top(order: int) -> None:
    big = Box(0, 0, 19, 19, SL30, line=1)  # 20x20 circle
    small = Box(6, 6, 13, 13, STOP, line=2)  # 8x8 octagon inside it
    m = render_mask([big, small][::order], 20, 20)
    inner = m[6:14, 6:14]
    np.testing.assert_array_equal(inner == OFFSET + STOP, shape_mask("octagon", 8, 8))
    # outside the octagon's own pixels the big circle shows through
    assert inner[0, 0] == OFFSET + SL30
    assert np.count_nonzero(m == OFFSET + SL30) == shape_mask("circle", 20, 20).sum() - shape_mask(
        "octagon", 8, 8).sum()


def test_eight_bit_encoding() -> None:
    m = render_mask([Box(0, 0, 4, 4, PRIORITY), Box(5, 0, 9, 4, 0)], 5, 10, encoding="8bit")
    assert m.dtype == np.uint8
    assert set(np.unique(m).tolist()) == {0, PRIORITY, 255}  # class 0 is "speed limit 20", 255 unlabeled
    np.testing.assert_array_equal(m[:, :5] == PRIORITY, shape_mask("diamond", 5, 5))
    assert np.count_nonzero(m[:, 5:] == 0) == shape_mask("circle", 5, 5).sum()


def test_box_partly_outside_frame_is_cut_not_squeezed() -> None:
    m = render_mask([Box(-2, -3, 4, 3, SL30)], 5, 6)  # 7x7 circle, top-left part off the frame
    np.testing.assert_array_equal(m == OFFSET + SL30, np.pad(shape_mask("circle", 7, 7)[3:, 2:], ((0, 1), (0, 1))))


def test_bad_arguments() -> None:
    with pytest.raises(LabeltreeError, match="mask mode must be one of fine, coarse"):
        render_mask([], 4, 4, mode="shape")
    with pytest.raises(LabeltreeError, match="ClassID 43 is not a gtsdb class"):
        render_mask([Box(0, 0, 1, 1, 43, line=7)], 4, 4)
    with pytest.raises(LabeltreeError, match="mask encoding must be one of"):
        render_mask([], 4, 4, encoding="32bit")


def _dataset(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 30)).save(root / "00000.ppm")
    Image.new("RGB", (50, 20)).save(root / "00001.ppm")
    Image.new("RGB", (40, 30)).save(root / "00700.ppm")  # no sign
    (root / "gt.txt").write_text("00000.ppm;2;3;10;11;14\n00000.ppm;2;3;10;11;14\n00001.ppm;45;5;60;12;1\n")
    return root


def test_write_folder(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "gtsdb")
    r = write_gtsdb_masks(root, tmp_path / "out", workers=2, progress=False)
    assert (r.frames, r.boxes, r.written) == (3, 2, 3)
    assert any("line 2 repeats line 1" in w for w in r.warnings)
    assert any("clipped: line 3 (00001.ppm 45,5-60,12 -> 45,5-49,12)" in w for w in r.warnings)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "00000_labelIds.png", "00001_labelIds.png", "00700_labelIds.png"]  # no temp files left
    m0 = _read16(tmp_path / "out" / "00000_labelIds.png")
    assert m0.shape == (30, 40)
    np.testing.assert_array_equal(m0[3:12, 2:11] == OFFSET + STOP, shape_mask("octagon", 9, 9))
    assert np.count_nonzero(m0) == shape_mask("octagon", 9, 9).sum()
    m1 = _read16(tmp_path / "out" / "00001_labelIds.png")
    # the 16x8 circle is cut by the frame edge, not squeezed into the 5 visible columns
    assert m1.shape == (20, 50) and np.count_nonzero(m1) == shape_mask("circle", 8, 16)[:, :5].sum()
    np.testing.assert_array_equal(m1[5:13, 45:] > 0, shape_mask("circle", 8, 16)[:, :5])
    m2 = _read16(tmp_path / "out" / "00700_labelIds.png")
    assert m2.shape == (30, 40) and not m2.any()
    assert r.labelled_pixels == np.count_nonzero(m0) + np.count_nonzero(m1)


def test_write_8bit_coarse_and_resume(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "gtsdb")
    write_gtsdb_masks(root, tmp_path / "o8", mode="coarse", encoding="8bit", workers=1, progress=False)
    with Image.open(tmp_path / "o8" / "00000_labelIds.png") as im:
        assert im.mode == "L"
        m = np.asarray(im)
    assert np.count_nonzero(m == STOP) == 81 and np.count_nonzero(m == 255) == 30 * 40 - 81
    with Image.open(tmp_path / "o8" / "00700_labelIds.png") as im:
        assert (np.asarray(im) == 255).all()
    r = write_gtsdb_masks(root, tmp_path / "o8", mode="coarse", encoding="8bit", workers=1, progress=False,
                          skip_existing=True)
    assert (r.written, r.skipped) == (0, 3)


def test_frame_size_from_header_only(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "gtsdb")
    ppm = root / "00700.ppm"
    ppm.write_bytes(ppm.read_bytes()[:30])  # header intact, pixels cut: a mask needs no pixels
    write_gtsdb_masks(root, tmp_path / "out", workers=1, progress=False)
    assert _read16(tmp_path / "out" / "00700_labelIds.png").shape == (30, 40)


def test_cli(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "gtsdb")
    res = CliRunner().invoke(main, ["gtsdb-masks", str(root), str(tmp_path / "out"), "--mode", "coarse",
                                    "--workers", "1", "--quiet"])
    assert res.exit_code == 0, res.output
    assert "3 masks written" in res.output and "(3 frames, 2 boxes" in res.output
    assert "warning:" in res.output and "duplicate" in res.output
    assert np.count_nonzero(_read16(tmp_path / "out" / "00000_labelIds.png")) == 81
    other = tmp_path / "other_gt.txt"
    other.write_text("00000.ppm;2;3;10;11;14\n00001.ppm;1;2;3\n")
    bad = CliRunner().invoke(main, ["gtsdb-masks", str(root), str(tmp_path / "o2"), "--gt", str(other), "--quiet"])
    assert bad.exit_code == 2 and f"{other}:2: malformed line" in bad.output and "Traceback" not in bad.output
    assert not (tmp_path / "o2").exists()
    helped = CliRunner().invoke(main, ["gtsdb-masks", "--help"])
    assert helped.exit_code == 0 and "Example:" in helped.output


def test_real_frames(real_fixtures: Path, tmp_path: Path) -> None:
    with pytest.warns(UserWarning):
        r = write_gtsdb_masks(real_fixtures / "gtsdb", tmp_path, workers=1, progress=False)
    assert r.frames == 5 and r.boxes == 11
    m = _read16(tmp_path / "00000_labelIds.png")  # 00000.ppm;774;411;815;446;11 (a triangle sign)
    assert m.shape == (800, 1360)
    assert set(np.unique(m).tolist()) == {0, 2011}
    np.testing.assert_array_equal(m[411:447, 774:816] == 2011, shape_mask("triangle", 36, 42))
    assert np.count_nonzero(m) == shape_mask("triangle", 36, 42).sum()
    assert not _read16(tmp_path / "00108_labelIds.png").any()
