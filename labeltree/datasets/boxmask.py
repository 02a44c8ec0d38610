"""Boxes -> per-pixel masks (docs/design.md §3 "GTSDB per-pixel", the authors' released encoding).

`fine` inscribes each sign's shape (the taxonomy's `shape`: circle, triangle, inverted-triangle,
octagon, diamond) in its inclusive box; `coarse` fills the box. Where boxes overlap, the smaller
sign is painted last (on top): a small sign in front of a big one is the usual case in street
scenes, and the big box's corners are background anyway. Encodings: '16bit' = the taxonomy's
encoding (0 = unlabeled, 2000 + ClassID), '8bit' = ClassID with 255 = unlabeled for tools that only
take 8-bit labels. Depends on no reader: the readers and `datasets.base.read_label` call it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from labeltree.core.taxonomy import DTYPE_MAX, Taxonomy, load_taxonomy
from labeltree.datasets.shapes import shape_mask
from labeltree.errors import LabeltreeError
from labeltree.vocab import DEFAULT_MASK_MODE, ENCODINGS, MODES, MaskEncoding, MaskMode  # noqa: F401 - re-exported


@dataclass(frozen=True)
class Box:
    """A GTSDB box: inclusive pixel coordinates, ClassID, and the gt.txt line it came from."""

    x0: int
    y0: int
    x1: int
    y1: int
    class_id: int
    line: int = 0
    # the box as written in gt.txt when it was clipped to the frame: a sign cut by the frame edge keeps
    # its full shape (cut off), it is not squeezed into the visible part
    unclipped: tuple[int, int, int, int] | None = None

    @property
    def full(self) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) of the whole sign, also the part outside the frame."""
        return self.unclipped if self.unclipped is not None else (self.x0, self.y0, self.x1, self.y1)

    @property
    def area(self) -> int:
        return (self.x1 - self.x0 + 1) * (self.y1 - self.y0 + 1)

    @property
    def width(self) -> int:
        return self.x1 - self.x0 + 1

    @property
    def height(self) -> int:
        return self.y1 - self.y0 + 1





# (x0, y0, x1, y1, value, shape or None for a filled box), painted in list order
PaintItem = tuple[int, int, int, int, int, str | None]


@dataclass(frozen=True)
class MaskFormat:
    dtype: type
    unlabeled: int
    offset: int


def mask_format(encoding: str, taxonomy: Taxonomy) -> MaskFormat:
    """Stored values of a mask encoding, from the gtsdb taxonomy (16bit) or the 8-bit convention."""
    if encoding == "16bit":
        unl = taxonomy.encoding.unlabeled if taxonomy.encoding.unlabeled is not None else 0
        return MaskFormat(np.uint16, unl, taxonomy.encoding.offset)
    if encoding == "8bit":
        fmt = MaskFormat(np.uint8, DTYPE_MAX["uint8"], 0)
        if max(taxonomy.ids) >= fmt.unlabeled:
            raise LabeltreeError(f"taxonomy '{taxonomy.name}' has class ids up to {max(taxonomy.ids)}; they do not "
                                 "fit an 8-bit mask with 255 = unlabeled: use --encoding 16bit")
        return fmt
    raise LabeltreeError(f"mask encoding must be one of {', '.join(ENCODINGS)}, not '{encoding}'")


def paint_items(boxes: Iterable[Box], mode: str, taxonomy: Taxonomy, offset: int) -> list[PaintItem]:
    """Boxes in painting order (largest first, so the smallest ends on top; ties by gt.txt line)."""
    if mode not in MODES:
        raise LabeltreeError(f"mask mode must be one of {', '.join(MODES)}, not '{mode}'")
    items = []
    full = [(b.full, b) for b in boxes]  # shapes span the whole sign; paint() cuts what lies off the frame
    for (x0, y0, x1, y1), b in sorted(full, key=lambda fb: (-(fb[0][2] - fb[0][0] + 1) * (fb[0][3] - fb[0][1] + 1),
                                                          fb[1].line, fb[0][1], fb[0][0])):
        if x1 < x0 or y1 < y0:
            raise LabeltreeError(f"inverted box {x0},{y0}-{x1},{y1} (ClassID {b.class_id})", None, b.line or None)
        shape = None
        if mode == "fine":
            c = taxonomy.find(b.class_id)
            if c is None:
                raise LabeltreeError(f"ClassID {b.class_id} is not a {taxonomy.name} class", None, b.line or None)
            if c.shape is None:
                raise LabeltreeError(f"class {c.id} '{c.name}' has no 'shape' in taxonomy {taxonomy.name}: add one "
                                     "or use --mode coarse")
            shape = c.shape
        elif taxonomy.find(b.class_id) is None:
            raise LabeltreeError(f"ClassID {b.class_id} is not a {taxonomy.name} class", None, b.line or None)
        items.append((x0, y0, x1, y1, b.class_id + offset, shape))
    return items


def paint(items: Iterable[PaintItem], height: int, width: int, unlabeled: int, dtype: type) -> np.ndarray:
    """Paint items in order onto an unlabeled canvas; parts outside the frame are cut off."""
    out = np.full((height, width), unlabeled, dtype=dtype)
    for x0, y0, x1, y1, value, shape in items:
        cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, width - 1), min(y1, height - 1)
        if cx1 < cx0 or cy1 < cy0:
            continue
        region = out[cy0:cy1 + 1, cx0:cx1 + 1]
        if shape is None:
            region[...] = value
        else:
            m = shape_mask(shape, y1 - y0 + 1, x1 - x0 + 1)[cy0 - y0:cy1 - y0 + 1, cx0 - x0:cx1 - x0 + 1]
            region[m] = value
    return out


def render_mask(boxes: Iterable[Box], height: int, width: int, mode: str = DEFAULT_MASK_MODE, encoding: str = "16bit",
                taxonomy: Taxonomy | None = None) -> np.ndarray:
    """The per-pixel mask of one frame: (height, width) uint16 (16bit) or uint8 (8bit)."""
    tax = taxonomy or load_taxonomy("gtsdb")
    fmt = mask_format(encoding, tax)
    return paint(paint_items(boxes, mode, tax, fmt.offset), height, width, fmt.unlabeled, fmt.dtype)
