"""Which classes are evaluated (docs/design.md §2.6): the class sets and the paper's >= 1000-pixel rule.

`resolve_classes` turns a class set (official | paper | all | ids) into a mask over a label space;
`paper_pixel_counts` gathers the per-class pixel counts the paper's rule needs for a box dataset
(GTSDB, both splits at the training scale) or an evaluation-only one (Cityscapes Extended, through GTSDB).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from labeltree.datasets.base import Sample, read_label
from labeltree.datasets.boxmask import DEFAULT_MASK_MODE, Box
from labeltree.datasets.gtsdb import GTSDB_SPLITS
from labeltree.datasets.registry import open_dataset
from labeltree.errors import LabeltreeError
from labeltree.evaluate.metrics import DEFAULT_MIN_PIXELS
from labeltree.evaluate.protocols import Rules
from labeltree.evaluate.space import LabelSpace

if TYPE_CHECKING:  # the tree is passed in, never built here
    from labeltree.core.hierarchy import Hierarchy

CLASS_SETS = ("official", "paper", "all")
PixelCounts = tuple[Mapping[int, int], Mapping[int, int]]


def classes_with_pixels_in_both(counts_a: Mapping[int, int], counts_b: Mapping[int, int],
                                min_pixels: int = DEFAULT_MIN_PIXELS) -> list[int]:
    """The GTSDB rule of docs/design.md §2.6: class ids with >= `min_pixels` gt pixels in BOTH splits.

    The paper evaluates GTSDB on 28 of 43 classes: those with at least 1000 pixels in the train and
    the test split at the training scale. Pass per-class pixel counts of the two splits (e.g. from
    `gtsdb_class_pixels(reader, split, scale)`); a class missing from a mapping has 0 pixels.
    """
    return sorted(int(c) for c in set(counts_a) | set(counts_b)
                  if counts_a.get(c, 0) >= min_pixels and counts_b.get(c, 0) >= min_pixels)


def _parse_ids(spec: str | Sequence[int]) -> str | Sequence[int]:
    if isinstance(spec, str) and spec not in CLASS_SETS:
        try:
            return [int(x) for x in spec.split(",") if x.strip()]
        except ValueError:
            raise LabeltreeError(f"--classes: expected official, paper, all or comma-separated class ids, "
                                 f"got {spec!r}") from None
    return spec


def resolve_classes(spec: str | Sequence[int], space: LabelSpace, hierarchy: Hierarchy | None = None,
                    dataset: str | None = None, pixel_counts: PixelCounts | None = None,
                    min_pixels: int = DEFAULT_MIN_PIXELS) -> np.ndarray:
    """Bool mask over the K classes: which are evaluated.

    official: classes not ignored in evaluation by the taxonomy (Cityscapes 19, Vistas 65, GTSDB 43);
    all: every class but the taxonomy's ignore_ids;
    paper (docs/design.md §2.6, needs the tree): the classes the tree maps to a node (Cityscapes 27, Vistas
    65); for a box dataset only those with >= min_pixels in both splits (`pixel_counts`, GTSDB 28);
    for an evaluation-only dataset (Cityscapes Extended) the classes it shares with the tree's box
    datasets (the sign classes; means run over those present in the gt, 18 in the paper);
    a sequence of class ids (or "7,8,26"): exactly those.
    """
    tax = space.taxonomy
    by_id = {c.id: c for c in tax.classes}
    spec = _parse_ids(spec)
    if not isinstance(spec, str):
        mask = np.zeros(space.K, dtype=bool)
        for cid in spec:
            mask[space.index_of(int(cid))] = True
        if not mask.any():
            raise LabeltreeError("--classes: no class ids given")
        return mask
    ignore = set(tax.ignore_ids)
    if spec == "all":
        return np.array([int(c) not in ignore for c in space.ids], dtype=bool)
    if spec == "official":
        return np.array([int(c) not in ignore and not by_id[int(c)].ignore_in_eval for c in space.ids], dtype=bool)
    return _paper_classes(space, hierarchy, dataset, pixel_counts, min_pixels)


def _paper_classes(space: LabelSpace, hierarchy: Hierarchy | None, dataset: str | None,
                   pixel_counts: PixelCounts | None, min_pixels: int) -> np.ndarray:
    """The paper's class set: mapped by the tree, and for box / evaluation-only datasets the pixel rule."""
    tax = space.taxonomy
    if hierarchy is None:
        raise LabeltreeError("--classes paper needs the tree (--tree): the paper evaluates the classes "
                             "the tree maps to a node")
    m = hierarchy.mapping(dataset or tax.name)
    mapped = {cid for cid, node in m.to_node.items() if node is not None}
    mask = np.array([int(c) in mapped for c in space.ids], dtype=bool)
    if m.is_boxes:
        if pixel_counts is None:
            raise LabeltreeError(f"--classes paper for '{tax.name}' needs per-class pixel counts of both "
                                 f"splits (the >= {min_pixels}-pixels rule); give the dataset root")
        keep = set(classes_with_pixels_in_both(pixel_counts[0], pixel_counts[1], min_pixels))
        mask &= np.array([int(c) in keep for c in space.ids], dtype=bool)
    elif m.evaluation_only:
        box_nodes = {n for d in hierarchy.mappings.values() if d.is_boxes for n in d.to_node.values()
                     if n is not None}
        mask &= np.array([m.to_node.get(int(c)) in box_nodes for c in space.ids], dtype=bool)
        if pixel_counts is not None:  # the paper's rule: >= min_pixels in the box dataset's train AND test split
            keep = set(classes_with_pixels_in_both(pixel_counts[0], pixel_counts[1], min_pixels))
            mask &= np.array([int(c) in keep for c in space.ids], dtype=bool)
    return mask


def box_counts_as(hierarchy: Hierarchy, dataset: str, counts: Mapping[int, int]) -> dict[int, int]:
    """A box dataset's per-class pixel counts re-keyed by the class ids of `dataset` mapped to the same node."""
    box = next((m for m in hierarchy.mappings.values() if m.is_boxes), None)
    if box is None:
        raise LabeltreeError(f"tree '{hierarchy.name}' has no box dataset whose pixel counts the paper's rule needs")
    by_node = {n: counts.get(c, 0) for c, n in box.to_node.items() if n is not None}
    target = hierarchy.mapping(dataset)
    return {c: by_node[n] for c, n in target.to_node.items() if n is not None and n in by_node}


def _scaled(boxes: Sequence[Box], h: int, w: int, sh: int, sw: int) -> list[Box]:
    """Boxes of an h x w frame on the same frame resized to sh x sw (inclusive pixel corners)."""
    sy, sx = sh / h, sw / w
    out = []
    for b in boxes:
        x0, y0 = min(round(b.x0 * sx), sw - 1), min(round(b.y0 * sy), sh - 1)
        x1 = min(max(x0, round((b.x1 + 1) * sx) - 1), sw - 1)
        y1 = min(max(y0, round((b.y1 + 1) * sy) - 1), sh - 1)
        out.append(Box(x0, y0, x1, y1, b.class_id, b.line))
    return out


def gtsdb_class_pixels(reader: Any, split: str, size: tuple[int, int] | None = None,
                       mask_mode: str = DEFAULT_MASK_MODE) -> dict[int, int]:
    """Per GTSDB class id: gt pixels of one split with every frame resized to `size` (H, W).

    The paper's rule counts pixels "at the training scale": the authors' input pipeline resizes
    GTSDB frames to 512 x 850 (nearest-neighbour labels), which gives their 28 classes. Boxes are
    scaled with the frame and rendered with the shared shape masks (`read_label`), frame by frame,
    for every frame gt.txt names in the split. `size=None` counts at the native size. Frames whose
    image is absent take the most common frame size of the ones present.
    """
    tax = reader.taxonomy
    gt = reader.ground_truth()
    frames = reader.frames()
    sizes = Counter(reader.frame_size(stem) for stem in frames)
    if not sizes:
        raise LabeltreeError("no GTSDB frames found: their size is needed to scale the boxes", reader.root)
    common = sizes.most_common(1)[0][0]
    counts: dict[int, int] = {}
    for name, boxes in gt.boxes.items():
        stem = Path(name).stem
        if not (stem.isdigit() and int(stem) in GTSDB_SPLITS[split]) or not boxes:
            continue
        h, w = reader.frame_size(stem) if stem in frames else common
        sh, sw = size if size is not None else (h, w)
        scaled = tuple(_scaled(boxes, h, w, sh, sw))
        mask = read_label(Sample(tax.name, split, stem, None, None, boxes=scaled, size=(sh, sw)), tax, mask_mode)
        values, n = np.unique(mask, return_counts=True)
        for v, c in zip(values.tolist(), n.tolist(), strict=True):
            if v != tax.encoding.unlabeled:
                cid = v - tax.encoding.offset
                counts[cid] = counts.get(cid, 0) + c
    return counts


def paper_pixel_counts(reader: Any, rules: Rules, hierarchy: Hierarchy | None, gtsdb_root: str | Path | None,
                       mask_mode: str = DEFAULT_MASK_MODE) -> PixelCounts | None:
    """The (train, test) per-class pixel counts the paper's class rule needs for `reader`'s dataset, else None.

    A box dataset (GTSDB) counts its own splits; an evaluation-only dataset (Cityscapes Extended)
    counts the tree's box dataset under `gtsdb_root`, re-keyed to its own class ids.
    """
    name = reader.taxonomy.name
    if rules.classes != "paper":
        return None
    if reader.taxonomy.annotation == "boxes":
        return (gtsdb_class_pixels(reader, "train", rules.pixel_size, mask_mode),
                gtsdb_class_pixels(reader, "test", rules.pixel_size, mask_mode))
    if hierarchy is None or not hierarchy.mapping(name).evaluation_only:
        return None
    if gtsdb_root is None:
        raise LabeltreeError(f"the paper's class rule for '{name}' needs the box dataset's pixel counts "
                             "(>= --min-pixels in GTSDB train and test): pass --gtsdb-root DIR, or choose "
                             "the classes yourself with --classes all|IDS")
    box = next(m for m in hierarchy.mappings.values() if m.is_boxes)
    greader = open_dataset(box.taxonomy, gtsdb_root, mask_mode=mask_mode)
    return tuple(box_counts_as(hierarchy, name, gtsdb_class_pixels(greader, sp, rules.pixel_size, mask_mode))
                 for sp in ("train", "test"))  # type: ignore[return-value]


def paper_nodes(hierarchy: Hierarchy, dataset: str) -> set[int]:
    """Tree nodes of the paper's class set of `dataset`, before any pixel rule: every mapped class; for an
    evaluation-only dataset (Cityscapes Extended) those shared with the tree's box datasets."""
    m = hierarchy.mapping(dataset)
    nodes = {n for n in m.to_node.values() if n is not None}
    if m.evaluation_only:
        nodes &= {n for d in hierarchy.mappings.values() if d.is_boxes for n in d.to_node.values() if n is not None}
    return nodes


def decision_skips(rules: Rules | None, hierarchy: Hierarchy, dataset: str) -> dict[int, int]:
    """The classifiers a hierarchical model's cascade skips under `rules` (`path: direct`, the paper's)."""
    if rules is None or rules.path != "direct":
        return {}
    return hierarchy.direct_skips(paper_nodes(hierarchy, dataset))
