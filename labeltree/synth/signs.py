"""Pictures of the 43 GTSDB sign classes for the synthetic datasets.

Each sign is drawn from what its taxonomy entry says (shape, category, name): the outline is
`shapes.shape_mask` (the same mask `gtsdb-masks --mode fine` traces from a box), the colours follow
the German sign families (red-rim circle for prohibitory, red-rim triangle for danger, blue disc for
mandatory, white disc with grey bars for "restriction ends", red octagon for stop, yellow diamond
for priority road, ...), and a class-specific 3x3 glyph makes every class distinguishable even in
12-pixel crops. Nothing here lists classes: a new sign class in the taxonomy gets a picture too.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from labeltree.core.taxonomy import ClassDef
from labeltree.datasets.shapes import shape_mask

WHITE = (235, 235, 230)
BLACK = (25, 25, 30)
RED = (190, 25, 30)
BLUE = (25, 70, 170)
YELLOW = (240, 190, 20)
GREY = (110, 110, 115)

# 9-bit codes with 4 or 5 cells set: every glyph is clearly visible and none is a shifted copy of
# "all on" or "all off". Class k gets code _CODES[(k * 97) % len(_CODES)] (97 is coprime to 252, so
# classes 0..251 all get different codes).
_CODES = [c for c in range(512) if bin(c).count("1") in (4, 5)]


def glyph_code(class_id: int) -> int:
    """The 9-bit 3x3 pattern of a class (bit r*3+c = cell (r, c) is inked)."""
    return _CODES[(class_id * 97) % len(_CODES)]


def _style(cls: ClassDef) -> tuple[tuple[int, int, int], tuple[int, int, int], tuple[int, int, int], bool]:
    """(rim colour, face colour, glyph colour, diagonal bars) of a sign family."""
    shape, cat, name = cls.shape, (cls.category or ""), cls.name.lower()
    if "restriction ends" in name or "end of" in name:
        return GREY, WHITE, GREY, True
    if shape == "octagon":
        return WHITE, RED, WHITE, False
    if shape == "diamond":
        return WHITE, YELLOW, BLACK, False
    if cat == "mandatory":
        return BLUE, BLUE, WHITE, False
    if cat in ("prohibitory", "danger") or shape in ("triangle", "inverted-triangle"):
        return RED, WHITE, BLACK, False
    return RED, RED, WHITE, False  # other round signs: no entry style


def _inner_box(shape: str, h: int, w: int, t: int) -> tuple[int, int, int, int]:
    """(top, left, height, width) of the face inside a rim of thickness t."""
    if shape == "triangle":
        return 2 * t, (7 * t) // 4, max(1, h - 3 * t), max(1, w - (7 * t) // 2)
    if shape == "inverted-triangle":
        return t, (7 * t) // 4, max(1, h - 3 * t), max(1, w - (7 * t) // 2)
    return t, t, max(1, h - 2 * t), max(1, w - 2 * t)


def _glyph_box(shape: str, top: int, left: int, h: int, w: int) -> tuple[int, int, int, int]:
    """(top, left, height, width) of the glyph square inside the face box."""
    if shape in ("triangle", "inverted-triangle"):
        g = max(3, int(round(0.5 * min(h, w))))
        cy = top + (0.64 if shape == "triangle" else 0.36) * h
    elif shape == "diamond":
        g = max(3, int(round(0.45 * min(h, w))))
        cy = top + h / 2
    else:
        g = max(3, int(round(0.66 * min(h, w))))
        cy = top + h / 2
    cx = left + w / 2
    return int(round(cy - g / 2)), int(round(cx - g / 2)), g, g


@lru_cache(maxsize=8192)
def _draw(cls_key: tuple, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    class_id, shape, category, name = cls_key
    cls = ClassDef(id=class_id, name=name, color=(0, 0, 0), category=category, shape=shape)
    rim, face, ink, bars = _style(cls)
    mask = shape_mask(shape, height, width)
    img = np.zeros((height, width, 3), dtype=np.uint8)
    img[mask] = rim
    t = max(1, int(round(0.12 * min(height, width))))
    if rim != face or bars:
        top, left, ih, iw = _inner_box(shape, height, width, t)
        inner = np.zeros_like(mask)
        inner[top:top + ih, left:left + iw] = shape_mask(shape, ih, iw)[: height - top, : width - left]
        inner &= mask
        img[inner] = face
    else:
        top, left, ih, iw = 0, 0, height, width
        inner = mask
    if bars:
        yy, xx = np.mgrid[0:height, 0:width]
        d = (xx - (width - 1 - yy)).astype(np.float64)  # lower-left to upper-right diagonals
        band = np.abs(d) <= max(0.5, 0.06 * min(height, width))
        img[inner & band] = BLACK
    gt, gl, gh, gw = _glyph_box(shape, top, left, ih, iw)
    code = glyph_code(class_id)
    ys = np.linspace(gt, gt + gh, 4).round().astype(int)
    xs = np.linspace(gl, gl + gw, 4).round().astype(int)
    for r in range(3):
        for c in range(3):
            if code >> (r * 3 + c) & 1:
                cell = np.zeros_like(mask)
                cell[max(0, ys[r]):max(0, ys[r + 1]), max(0, xs[c]):max(0, xs[c + 1])] = True
                img[cell & inner] = ink
    img.setflags(write=False)
    return img, mask


def draw_sign(cls: ClassDef, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(RGB uint8 [h, w, 3], bool mask [h, w]) of sign class `cls` filling an inclusive h x w box.

    The mask is exactly `shape_mask(cls.shape, h, w)`; pixels outside it are 0 and belong to the
    scene behind the sign. Cached and read-only.
    """
    if cls.shape is None:
        raise ValueError(f"sign class '{cls.name}' (id {cls.id}) has no shape in its taxonomy")
    return _draw((cls.id, cls.shape, cls.category, cls.name), int(height), int(width))
