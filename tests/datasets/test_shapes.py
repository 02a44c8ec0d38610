"""Sign shapes inscribed in inclusive boxes: exact small masks, symmetry, touching sides, fill ratios."""

from __future__ import annotations

import math

import numpy as np
import pytest

from labeltree.core.taxonomy import load_taxonomy
from labeltree.datasets.shapes import SHAPES, shape_mask


def _m(rows: str) -> np.ndarray:
    return np.array([[c == "#" for c in r] for r in rows.split()], dtype=bool)


# Hand-computed: a pixel is in when its centre (j+.5, i+.5) is inside the ideal outline.
# 5x5 circle: centre 2.5, radius 2.5; corner pixel centre (0.5, 0.5) is at distance sqrt(8) > 2.5,
# pixel (0, 1) at exactly 2.5 (on the circle: in).
CIRCLE_5 = _m("""
.###.
#####
#####
#####
.###.
""")
# 7x7 upright triangle, apex (3.5, 0), base y = 7: row i keeps |x - 3.5| <= 3.5 * (i + .5) / 7,
# i.e. half-widths 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3.25 -> 1, 1, 3, 3, 5, 5, 7 pixels.
TRIANGLE_7 = _m("""
...#...
...#...
..###..
..###..
.#####.
.#####.
#######
""")
# 5x5 diamond: |x - 2.5| + |y - 2.5| <= 2.5
DIAMOND_5 = _m("""
..#..
.###.
#####
.###.
..#..
""")
# 9x9 octagon: corners cut by |dx| + |dy| <= 4.5 * sqrt(2) = 6.36 (dx, dy from the centre 4.5)
OCTAGON_9 = _m("""
..#####..
.#######.
#########
#########
#########
#########
#########
.#######.
..#####..
""")
# 6-wide triangle: the apex row has no pixel centre inside the ideal outline, so the two middle
# pixels that hold the apex are set (the sign touches the top of its box).
TRIANGLE_6x6 = _m("""
..##..
..##..
..##..
.####.
.####.
######
""")


@pytest.mark.parametrize(("shape", "expected"), [
    ("circle", CIRCLE_5), ("triangle", TRIANGLE_7), ("inverted-triangle", TRIANGLE_7[::-1]),
    ("diamond", DIAMOND_5), ("octagon", OCTAGON_9), ("triangle", TRIANGLE_6x6),
])
def test_exact_small_masks(shape: str, expected: np.ndarray) -> None:
    got = shape_mask(shape, *expected.shape)
    assert got.dtype == bool
    np.testing.assert_array_equal(got, expected)


def test_octagon_9_cut_is_hand_computed() -> None:
    # corner pixel (0, 1): |dx| + |dy| = 3 + 4 = 7 > 6.36 -> out; (1, 1): 3 + 3 = 6 <= 6.36 -> in
    m = shape_mask("octagon", 9, 9)
    assert not m[0, 1] and m[1, 1] and m[0, 2]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(("h", "w"), [(1, 1), (2, 3), (5, 4), (8, 8), (13, 20), (31, 17), (3, 40), (40, 3)])
def test_symmetric_and_touching(shape: str, h: int, w: int) -> None:
    m = shape_mask(shape, h, w)
    assert m.shape == (h, w)
    np.testing.assert_array_equal(m, m[:, ::-1])  # left-right symmetric
    if shape in ("circle", "diamond", "octagon"):
        np.testing.assert_array_equal(m, m[::-1])
        assert m[0].any() and m[-1].any() and m[:, 0].any() and m[:, -1].any()
    elif shape == "triangle":
        assert m[-1].all() or (m[-1, 0] and m[-1, -1])  # base on the bottom edge, corners at the sides
        top = np.flatnonzero(m[0])
        assert top.mean() == (w - 1) / 2 and len(top) <= max(2, w // h + 2)  # apex at top centre
        assert m.sum(axis=1).tolist() == sorted(m.sum(axis=1).tolist())  # widens downwards
    else:
        np.testing.assert_array_equal(m, shape_mask("triangle", h, w)[::-1])


@pytest.mark.parametrize(("shape", "ratio"), [
    ("circle", math.pi / 4), ("triangle", 0.5), ("inverted-triangle", 0.5), ("diamond", 0.5),
    ("octagon", 2 * (math.sqrt(2) - 1)),  # regular octagon / its bounding square = 0.828
])
@pytest.mark.parametrize(("h", "w"), [(400, 400), (300, 420)])
def test_fill_ratio_on_large_boxes(shape: str, ratio: float, h: int, w: int) -> None:
    assert shape_mask(shape, h, w).mean() == pytest.approx(ratio, abs=0.004)


def test_every_taxonomy_shape_is_drawable() -> None:
    shapes = {c.shape for c in load_taxonomy("gtsdb").classes}
    assert shapes and shapes <= set(SHAPES)
    for s in shapes:
        assert shape_mask(s, 20, 20).sum() > 0


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown sign shape 'hexagon'"):
        shape_mask("hexagon", 5, 5)
    with pytest.raises(ValueError, match="at least 1x1"):
        shape_mask("circle", 0, 5)
    assert not shape_mask("circle", 5, 5).flags.writeable
