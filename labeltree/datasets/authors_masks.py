"""The authors' released GTSDB masks, reproduced rule by rule (issue 16; `gtsdb-masks --style authors`).

Why: comparisons against the authors' numbers need their exact supervision, quirks included. What
their pipeline did, as worked out from the released files:

* corners through `int(v / W * W)` (x, W = frame width) and `int(v / H * H)` (y, H = frame height)
  in float64, which turns some integers into v - 1 (49 -> 48 at W = 1360); centres and sizes come
  from the unrounded floats (`c = int(v0f + (v1f - v0f) / 2)`);
* boxes inclusive, vertices on the extreme pixels, polygons filled and then outlined with the class
  value, no antialiasing, as Pillow's ImageDraw did before 5.2: scanline fill over float32 edge
  intersections at integer rows, spans `floor(a + 0.5) .. ceil(b - 0.5)` (swapped when they cross),
  horizontal edges drawn whole; then a Bresenham outline that leaves out each edge's end pixel;
* circle = Pillow's 361-vertex ellipse polygon; triangles, diamond, and an octagon cut at quarters;
* overlaps: the sign painted last wins whatever its size; train frames in gt.txt line order (a
  duplicated line is painted twice), test frames in the string-sorted order of their gt.txt lines.

Today's clean geometry (`boxmask` + `shapes`) stays the default; this module depends on no reader.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import replace

import numpy as np

from labeltree.core.taxonomy import Taxonomy
from labeltree.datasets.boxmask import Box, PaintItem, paint_items
from labeltree.vocab import DEFAULT_STYLE, STYLES  # noqa: F401 - re-exported

_F32 = np.float32
_HALF = np.float32(0.5)


# -- box geometry ------------------------------------------------------------------------------------

def authors_box(x0: int, y0: int, x1: int, y1: int, width: int, height: int) -> tuple[int, int, int, int, float,
                                                                                      float, float, float]:
    """(X0, Y0, X1, Y1, cxf, cyf, wf, hf): truncated corners plus the unrounded centre and size."""
    x0f, x1f = x0 / width * width, x1 / width * width
    y0f, y1f = y0 / height * height, y1 / height * height
    return (int(x0f), int(y0f), int(x1f), int(y1f), x0f + (x1f - x0f) / 2, y0f + (y1f - y0f) / 2,
            x1f - x0f, y1f - y0f)


def ellipse_vertices(x0: int, y0: int, x1: int, y1: int) -> list[tuple[int, int]]:
    """Pillow's ellipse polygon in the box: 361 vertices, i = 0..360 degrees."""
    w, h = x1 - x0, y1 - y0
    cx, cy = (x0 + x1) // 2, (y0 + y1) // 2  # C integer division (non-negative boxes)
    return [(math.floor(math.cos(i * math.pi / 180) * w / 2 + cx + 0.5),
             math.floor(math.sin(i * math.pi / 180) * h / 2 + cy + 0.5)) for i in range(361)]


def shape_vertices(shape: str, x0: int, y0: int, x1: int, y1: int, width: int, height: int) -> list[tuple[int, int]]:
    """Vertices of one sign's polygon (frame pixel indices), from its gt.txt box and the frame size."""
    X0, Y0, X1, Y1, cxf, cyf, wf, hf = authors_box(x0, y0, x1, y1, width, height)
    cx, cy = int(cxf), int(cyf)
    if shape == "circle":
        return ellipse_vertices(X0, Y0, X1, Y1)
    if shape == "triangle":
        return [(cx, Y0), (X0, Y1), (X1, Y1)]
    if shape == "inverted-triangle":
        return [(X0, Y0), (cx, Y1), (X1, Y0)]
    if shape == "diamond":
        return [(cx, Y0), (X0, cy), (cx, Y1), (X1, cy)]
    if shape == "octagon":
        xl, xr = int(cxf - wf / 4), int(cxf + wf / 4)
        yt, yb = int(cyf - hf / 4), int(cyf + hf / 4)
        return [(X0, yt), (X0, yb), (xl, Y1), (xr, Y1), (X1, yb), (X1, yt), (xr, Y0), (xl, Y0)]
    raise ValueError(f"unknown sign shape {shape!r}")


# -- Pillow < 5.2 rasterisation ----------------------------------------------------------------------

def _hline(out: np.ndarray, xa: int, y: int, xb: int, value: int) -> None:
    if not 0 <= y < out.shape[0]:
        return
    if xa > xb:
        xa, xb = xb, xa
    xa, xb = max(xa, 0), min(xb, out.shape[1] - 1)
    if xa <= xb:
        out[y, xa:xb + 1] = value


def _round_up(v: np.ndarray) -> np.ndarray:
    """ROUND_UP: floor(f + 0.5F) in float32 for f >= 0, mirrored below 0."""
    pos = np.floor(v + _HALF)
    neg = -np.floor(np.abs(v.astype(np.float64)) + 0.5)
    return np.where(v >= 0, pos, neg).astype(np.int64)


def _round_down(v: np.ndarray) -> np.ndarray:
    """ROUND_DOWN: ceil(f - 0.5F) in float32 for f >= 0, mirrored below 0."""
    pos = np.ceil(v - _HALF)
    neg = -np.ceil(np.abs(v.astype(np.float64)) - 0.5)
    return np.where(v >= 0, pos, neg).astype(np.int64)


def fill_polygon(out: np.ndarray, pts: Sequence[tuple[int, int]], value: int) -> None:
    """ImageDraw.polygon's fill before Pillow 5.2 (scanline over float32 intersections), in place."""
    n = len(pts)
    if n == 0:
        return
    p = np.asarray(pts, dtype=np.int64)
    if tuple(p[-1]) == tuple(p[0]):  # the closing edge is only added when the ends differ
        a, b = p[:-1], p[1:]
    else:
        a, b = p, np.roll(p, -1, axis=0)
    if len(a) == 0:
        return
    ya, yb = a[:, 1], b[:, 1]
    horiz = ya == yb
    for (xa, y), (xb, _) in zip(a[horiz].tolist(), b[horiz].tolist(), strict=True):
        _hline(out, min(xa, xb), y, max(xa, xb), value)
    a, b = a[~horiz], b[~horiz]
    if len(a) == 0:
        return
    e_x0, e_y0 = a[:, 0], a[:, 1]
    e_ymin, e_ymax = np.minimum(a[:, 1], b[:, 1]), np.maximum(a[:, 1], b[:, 1])
    e_dx = (b[:, 0] - a[:, 0]).astype(_F32) / (b[:, 1] - a[:, 1]).astype(_F32)
    ymin, ymax = max(int(e_ymin.min()), 0), min(int(e_ymax.max()), out.shape[0] - 1)
    if ymin > ymax:
        return
    ys = np.arange(ymin, ymax + 1, dtype=np.int64)[:, None]
    xs = (ys - e_y0[None, :]).astype(_F32) * e_dx[None, :] + e_x0[None, :].astype(_F32)
    active = (ys >= e_ymin[None, :]) & (ys <= e_ymax[None, :])
    dup = (ys == e_ymax[None, :]) & (ys < ymax)  # "needed to draw consistent polygons"
    vals = np.concatenate([np.where(active, xs, np.inf), np.where(dup, xs, np.inf)], axis=1).astype(_F32)
    vals.sort(axis=1)
    count = active.sum(axis=1) + dup.sum(axis=1)
    for k in range(0, vals.shape[1] - 1, 2):
        ok = count >= k + 2
        if not ok.any():
            break
        rows = np.nonzero(ok)[0]
        starts = _round_up(vals[rows, k])
        ends = _round_down(vals[rows, k + 1])
        for r, s, t in zip(rows.tolist(), starts.tolist(), ends.tolist(), strict=True):
            _hline(out, s, ymin + r, t, value)


def _steps(start: int, step: int, n: int, size: int) -> tuple[int, int]:
    """The steps i in [0, n) where start + i * step lies in [0, size) (an empty range as lo >= hi)."""
    if step > 0:
        lo, hi = -start, size - start
    else:
        lo, hi = start - size + 1, start + 1
    return max(lo, 0), min(hi, n)


def draw_line(out: np.ndarray, x0: int, y0: int, x1: int, y1: int, value: int) -> None:
    """Pillow's line8: Bresenham from (x0, y0) towards (x1, y1), the end pixel left out; only the steps
    whose major coordinate lies on the frame are walked (time bounded by the frame, not the line)."""
    h, w = out.shape
    dx, xs = (x1 - x0, 1) if x1 >= x0 else (x0 - x1, -1)
    dy, ys = (y1 - y0, 1) if y1 >= y0 else (y0 - y1, -1)
    x_major = dx > dy
    major, minor = (dx, dy) if x_major else (dy, dx)
    if major == 0:
        return
    lo, hi = _steps(x0, xs, major, w) if x_major else _steps(y0, ys, major, h)
    if lo >= hi:
        return
    i = np.arange(lo, hi, dtype=np.int64)
    # minor steps taken before step i, in closed form: Bresenham steps the minor axis at step j when its
    # error term 2*minor - major + 2*minor*j - 2*major*k_j is >= 0 (checked against the loop on 30000 lines)
    k = np.zeros_like(i) if minor == 0 else np.where(
        i == 0, 0, np.maximum(np.floor_divide(2 * minor - major + 2 * minor * (i - 1), 2 * major) + 1, 0))
    if x_major:
        xx, yy = x0 + i * xs, y0 + k * ys
    else:
        xx, yy = x0 + k * xs, y0 + i * ys
    ok = (xx >= 0) & (xx < w) & (yy >= 0) & (yy < h)
    out[yy[ok], xx[ok]] = value


def outline_polygon(out: np.ndarray, pts: Sequence[tuple[int, int]], value: int) -> None:
    """ImageDraw.polygon's outline: one line per edge, the closing one included."""
    for i in range(len(pts)):
        (xa, ya), (xb, yb) = pts[i], pts[(i + 1) % len(pts)]
        if (xa, ya) != (xb, yb):
            draw_line(out, xa, ya, xb, yb, value)


# -- frames -----------------------------------------------------------------------------------------

def paint_authors(items: Iterable[PaintItem], height: int, width: int, unlabeled: int, dtype: type) -> np.ndarray:
    """Paint items in the given order, each over what came before (last painted wins)."""
    out = np.full((height, width), unlabeled, dtype=dtype)
    for x0, y0, x1, y1, value, shape in items:
        if shape is None:  # coarse: the truncated box, filled
            X0, Y0, X1, Y1 = authors_box(x0, y0, x1, y1, width, height)[:4]
            for y in range(max(Y0, 0), min(Y1, height - 1) + 1):
                _hline(out, X0, y, X1, value)
            continue
        pts = shape_vertices(shape, x0, y0, x1, y1, width, height)
        fill_polygon(out, pts, value)
        outline_polygon(out, pts, value)
    return out


def authors_order(boxes: Iterable[Box], split: str, duplicates: Iterable[tuple[int, int]] = (),
                  line_text: dict[int, str] | None = None) -> list[Box]:
    """The boxes of one frame in the authors' painting order.

    `duplicates` are gt.txt's (line, line it repeats) pairs: a repeated line is painted again in its
    own place. Train (and any other split): gt.txt line order; test: string order of the lines
    (`line_text`: line number -> the stripped line; without it the lines are sorted by number).
    """
    boxes = list(boxes)
    by_line = {b.line: b for b in boxes}
    for n, orig in duplicates:
        if orig in by_line:
            boxes.append(replace(by_line[orig], line=n))
    if split == "test":
        text = line_text or {}
        return sorted(boxes, key=lambda b: (text.get(b.line, ""), b.line))
    return sorted(boxes, key=lambda b: b.line)


def authors_items(boxes: Iterable[Box], mode: str, taxonomy: Taxonomy, offset: int) -> list[PaintItem]:
    """Paint items of already-ordered boxes (whole boxes: the painter cuts what lies off the frame)."""
    # paint_items validates each box but sorts by size; one box per call keeps the given order
    return [paint_items([b], mode, taxonomy, offset)[0] for b in boxes]
