"""Traffic-sign shapes inscribed in an inclusive pixel box (docs/design.md §3, GTSDB "fine" masks).

A GTSDB box is tight around the sign, so the sign's outline touches the box where the real sign
does: a circle, diamond or octagon on all four sides, an upright triangle with its apex at the top
centre and its base on the bottom edge (base corners at the left/right edges), an inverted triangle
(give way) mirrored vertically. A pixel belongs to the sign when its CENTRE lies inside the ideal
outline (no anti-aliasing); all tests are done in exact integer arithmetic on doubled coordinates so
that masks are exactly left-right (and, where the shape is, top-bottom) symmetric with no float
round-off at the boundary. For tiny or very elongated boxes the pixels holding the touch points are
forced on, so a mask never floats free of a side the real sign touches.
"""

from __future__ import annotations

from functools import lru_cache
from typing import get_args

import numpy as np

from labeltree.core.taxonomy import Shape

SHAPES: tuple[str, ...] = get_args(Shape)


def _centre_coords(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """|2x - W| per column and |2y - H| per row for pixel centres (x = j + 0.5): integers in 0..W-1 / 0..H-1."""
    u = np.abs(2 * np.arange(width, dtype=np.int64) + 1 - width)[None, :]
    v = np.abs(2 * np.arange(height, dtype=np.int64) + 1 - height)[:, None]
    return u, v


def _middle(n: int) -> slice:
    """The one (odd n) or two (even n) central indices of a run of n pixels."""
    return slice((n - 1) // 2, n // 2 + 1)


@lru_cache(maxsize=4096)
def _shape_mask(shape: str, height: int, width: int) -> np.ndarray:
    h, w = height, width
    u, v = _centre_coords(h, w)
    mid_r, mid_c = _middle(h), _middle(w)
    if shape == "circle":
        # ellipse (u/W)^2 + (v/H)^2 <= 1
        m = u * u * (h * h) + v * v * (w * w) <= (w * w) * (h * h)
        touch = [(slice(0, 1), mid_c), (slice(h - 1, h), mid_c), (mid_r, slice(0, 1)), (mid_r, slice(w - 1, w))]
    elif shape in ("triangle", "inverted-triangle"):
        # apex (W/2, 0), base y = H: |2x - W| / W <= y / H with y = i + 0.5 -> 2*u*H <= W*(2i + 1)
        yy = 2 * np.arange(h, dtype=np.int64)[:, None] + 1
        m = 2 * u * h <= w * yy
        touch = [(slice(0, 1), mid_c), (slice(h - 1, h), slice(0, 1)), (slice(h - 1, h), slice(w - 1, w))]
        if shape == "inverted-triangle":
            m = m[::-1]
            touch = [(slice(h - 1, h), mid_c), (slice(0, 1), slice(0, 1)), (slice(0, 1), slice(w - 1, w))]
    elif shape == "diamond":
        # |2x-W|/W + |2y-H|/H <= 1
        m = u * h + v * w <= w * h
        touch = [(slice(0, 1), mid_c), (slice(h - 1, h), mid_c), (mid_r, slice(0, 1)), (mid_r, slice(w - 1, w))]
    elif shape == "octagon":
        # regular octagon in the box: flat sides on all four box edges, corners cut by u/W + v/H <= sqrt(2)
        s = u * h + v * w
        m = s * s <= 2 * (w * w) * (h * h)
        touch = [(slice(0, 1), mid_c), (slice(h - 1, h), mid_c), (mid_r, slice(0, 1)), (mid_r, slice(w - 1, w))]
    else:
        raise ValueError(f"unknown sign shape {shape!r}; expected one of {', '.join(SHAPES)}")
    m = np.ascontiguousarray(m)
    for r, c in touch:
        m[r, c] = True
    m.setflags(write=False)
    return m


def shape_mask(shape: str, height: int, width: int) -> np.ndarray:
    """Boolean (height, width) mask of `shape` inscribed in an inclusive box of that size.

    `shape` is a taxonomy `shape` value: circle, triangle (apex up), inverted-triangle (apex down),
    octagon, diamond. The returned array is read-only and shared (cached); copy it to modify.
    """
    if height < 1 or width < 1:
        raise ValueError(f"box must be at least 1x1 pixels, got {height}x{width} (height x width)")
    return _shape_mask(shape, int(height), int(width))
