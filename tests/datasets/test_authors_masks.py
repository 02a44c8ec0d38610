"""`gtsdb-masks --style authors`: the authors' released GTSDB masks, rule by rule, on hand-checked boxes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from click.testing import CliRunner
from PIL import Image

from labeltree.cli import main
from labeltree.core.taxonomy import load_taxonomy
from labeltree.datasets.authors_masks import authors_box, fill_polygon, outline_polygon, shape_vertices
from labeltree.datasets.gtsdb import write_gtsdb_masks

GTSDB = load_taxonomy("gtsdb")
OFFSET = GTSDB.encoding.offset
STOP = GTSDB.find("stop").id  # octagon
SL30 = GTSDB.find("speed limit 30").id  # circle
DANGER = GTSDB.find("danger").id  # triangle


def _draw(shape: str, box: tuple[int, int, int, int], h: int, w: int) -> list[str]:
    out = np.zeros((h, w), np.uint8)
    pts = shape_vertices(shape, *box, 1360, 800)
    fill_polygon(out, pts, 1)
    outline_polygon(out, pts, 1)
    return ["".join("#" if v else "." for v in row) for row in out]


def test_corner_truncation() -> None:
    # 49 / 1360 * 1360 = 48.99999999999999 and 29 / 800 * 800 = 28.999999999999996 in float64: both lose a pixel;
    # 50 and 40 survive; the centre comes from the unrounded floats: 48.99.. + (60 - 48.99..) / 2 = 54.49.. -> 54
    X0, Y0, X1, Y1, cxf, cyf, wf, hf = authors_box(49, 29, 60, 40, 1360, 800)
    assert (X0, Y0, X1, Y1) == (48, 28, 60, 40)
    assert int(cxf) == 54 and int(cyf) == 34
    assert authors_box(50, 40, 57, 58, 1360, 800)[:4] == (50, 40, 56, 57)  # 57 -> 56 (x), 58 -> 57 (y)


def test_triangle_scanline_and_bresenham() -> None:
    # apex (2, 0), base (0, 4)-(4, 4): fill spans floor(a + .5)..ceil(b - .5) = 2 | 2 | 1..3 | 1..3 | 0..4;
    # outline (2,0)->(0,4) adds (1,1), (0,3); (4,4)->(2,0) adds nothing new: the left side is fuller
    assert _draw("triangle", (0, 0, 4, 4), 5, 5) == ["..#..", ".##..", ".###.", "####.", "#####"]


def test_ellipse_nub_at_even_width() -> None:
    # 4x4 box: w = h = 3, centre (1, 1); x = 3 only at 0 / 360 degrees, y = 3 only at 90: one-pixel nubs
    # to the right and at the bottom, while x = 0 holds for cos < -1/3 (110..250 degrees)
    assert _draw("circle", (0, 0, 3, 3), 4, 4) == ["###.", "####", "###.", ".#.."]
    assert len(shape_vertices("circle", 0, 0, 3, 3, 1360, 800)) == 361


def test_octagon_cut_at_quarters() -> None:
    # 8x8 box: xl = int(3.5 - 1.75) = 1, xr = int(3.5 + 1.75) = 5, likewise yt = 1, yb = 5
    assert shape_vertices("octagon", 0, 0, 7, 7, 1360, 800) == [(0, 1), (0, 5), (1, 7), (5, 7), (7, 5), (7, 1),
                                                                 (5, 0), (1, 0)]
    assert _draw("octagon", (0, 0, 7, 7), 8, 8) == [".######.", "########", "########", "########", "########",
                                                    "########", ".######.", ".#####.."]


def _read16(p: Path) -> np.ndarray:
    with Image.open(p) as im:
        return np.asarray(im).astype(np.uint16)


def test_paint_order_train_test_and_duplicates(tmp_path: Path) -> None:
    root = tmp_path / "gtsdb"
    root.mkdir()
    for stem in ("00000", "00001", "00600"):
        Image.new("RGB", (40, 30)).save(root / f"{stem}.ppm")
    (root / "gt.txt").write_text(
        # train 00000: the small stop sign first, the big circle after: the big one is painted last and wins
        "00000.ppm;9;9;12;12;14\n00000.ppm;2;2;20;20;1\n"
        # train 00001: A, then B over it, then A's line again: A is painted twice and ends on top
        "00001.ppm;2;2;9;9;14\n00001.ppm;6;2;13;9;1\n00001.ppm;2;2;9;9;14\n"
        # test 00600: line order B then A, string order '00600.ppm;10;...' < '00600.ppm;6;...': A after B
        "00600.ppm;6;2;13;9;1\n00600.ppm;10;2;17;9;14\n")
    r = write_gtsdb_masks(root, tmp_path / "out", style="authors", workers=1, progress=False)
    assert r.written == 3
    gt = root / "gt.txt"
    assert r.warnings == [f"{gt}: 1 duplicate line(s), each painted again where it stands, as in the authors' masks: "
                          "line 5 repeats line 3"]  # never 'one box kept': this style paints both copies
    m0 = _read16(tmp_path / "out" / "00000_labelIds.png")
    assert not (m0 == OFFSET + STOP).any()  # wholly covered by the circle painted after it
    m1 = _read16(tmp_path / "out" / "00001_labelIds.png")
    assert m1[5, 8] == OFFSET + STOP  # overlap of A (x 2..9) and B (x 6..13): A's second painting wins
    m6 = _read16(tmp_path / "out" / "00600_labelIds.png")
    # '00600.ppm;10;2;17;9;14' < '00600.ppm;6;2;13;9;1' as strings: the stop sign is painted first and the
    # circle over it, so the circle wins the overlap (in line order the stop sign would)
    assert m6[5, 11] == OFFSET + SL30 and m6[5, 15] == OFFSET + STOP
    clean = write_gtsdb_masks(root, tmp_path / "clean", workers=1, progress=False)
    assert clean.written == 3
    assert clean.warnings == [f"{gt}: 1 duplicate line(s), one box kept each: line 5 repeats line 3"]
    assert (_read16(tmp_path / "clean" / "00000_labelIds.png") == OFFSET + STOP).any()  # default: small on top


def test_cli_style_option(tmp_path: Path) -> None:
    root = tmp_path / "gtsdb"
    root.mkdir()
    Image.new("RGB", (12, 10)).save(root / "00000.ppm")
    (root / "gt.txt").write_text(f"00000.ppm;0;0;4;4;{DANGER}\n")
    res = CliRunner().invoke(main, ["gtsdb-masks", str(root), str(tmp_path / "o"), "--style", "authors",
                                    "--encoding", "8bit", "--quiet"])
    assert res.exit_code == 0, res.output
    assert "style authors" in res.output
    with Image.open(tmp_path / "o" / "00000_labelIds.png") as im:
        got = np.asarray(im)
    assert ["".join("#" if v == DANGER else "." for v in row[:6]) for row in got[:6]] == [
        "..#...", ".##...", ".###..", "####..", "#####.", "......"]  # as in test_triangle_scanline_and_bresenham
    assert (got[:, 6:] == 255).all() and (got[5] == 255).all()
    bad = CliRunner().invoke(main, ["gtsdb-masks", str(root), str(tmp_path / "o2"), "--style", "nope"])
    assert bad.exit_code == 2
    (root / "gt.txt").write_text(f"00000.ppm;0;0;4;4;{DANGER}\n00000.ppm;0;0;4;4;{DANGER}\n")
    dup = CliRunner().invoke(main, ["gtsdb-masks", str(root), str(tmp_path / "o3"), "--style", "authors", "--quiet"])
    assert dup.exit_code == 0, dup.output
    assert "painted again" in dup.output and "one box kept" not in dup.output
