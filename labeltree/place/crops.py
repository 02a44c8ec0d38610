"""Example crops for the place report: per class of the new dataset, crops around its largest pixels in
the frames where it covers most, beside crops of the base classes on the node it was placed on, so that
a reviewer sees both sides of each mapping in one image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from labeltree.datasets.registry import open_dataset
from labeltree.fsutil import write_png
from labeltree.place.evidence import ClassEvidence
from labeltree.place.propose import PlaceResult

CELL = 72  # pixels per crop
PER_SIDE = 3
LABEL_W = 260


def _crop(ev: ClassEvidence, slot: int, key: str) -> np.ndarray | None:
    """The frame around the class's pixels (a margin of a quarter of their box), CELL x CELL."""
    s = ev.samples.get(key)
    if s is None or ev.root is None:
        return None
    reader = open_dataset(ev.taxonomy, ev.root)
    lab = reader.read_label(s)
    c = ev.taxonomy.classes[slot]
    ys, xs = np.nonzero(lab == ev.taxonomy.stored_value(c.id))
    if not len(ys):
        return None
    img = reader.read_image(s)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    my, mx = max(2, (y1 - y0) // 4), max(2, (x1 - x0) // 4)
    y0, y1 = max(0, y0 - my), min(img.shape[0], y1 + my)
    x0, x1 = max(0, x0 - mx), min(img.shape[1], x1 + mx)
    return np.asarray(Image.fromarray(img[y0:y1, x0:x1]).resize((CELL, CELL), Image.NEAREST))


def _node_crops(r: PlaceResult, node: str) -> list[np.ndarray]:
    """Crops of base classes mapped at or below the node (up to PER_SIDE)."""
    i = r.h.index.get(node)
    if i is None:
        return []
    below = set(r.h.descendants(i))
    out: list[np.ndarray] = []
    for ev in r.base_scans:
        m = r.h.mapping(ev.dataset)
        for slot, c in enumerate(ev.taxonomy.classes):
            if m.to_node.get(c.id) in below:
                for key in ev.examples.get(slot, [])[:1]:
                    crop = _crop(ev, slot, key)
                    if crop is not None and len(out) < PER_SIDE:
                        out.append(crop)
    return out


def write_crops(r: PlaceResult, target: str | Path) -> None:
    """One PNG: a row per class (name and placement, its crops | the node's crops)."""
    ev = r.evidence
    assert ev is not None
    rows = []
    for slot, p in enumerate(r.placements):
        own = [c for c in (_crop(ev, slot, k) for k in p.examples[:PER_SIDE]) if c is not None]
        node = p.chosen.node if p.chosen.kind in ("node", "inner") else None
        theirs = _node_crops(r, node) if node else []
        row = Image.new("RGB", (LABEL_W + CELL * PER_SIDE * 2 + 12, CELL + 4), (255, 255, 255))
        ImageDraw.Draw(row).text((4, 4), f"{p.cls.display}\n-> {p.chosen.label()}", fill=(0, 0, 0))
        for k, c in enumerate(own):
            row.paste(Image.fromarray(c), (LABEL_W + k * CELL, 2))
        for k, c in enumerate(theirs):
            row.paste(Image.fromarray(c), (LABEL_W + (PER_SIDE + k) * CELL + 12, 2))
        rows.append(np.asarray(row))
    write_png(target, np.concatenate(rows, axis=0))
