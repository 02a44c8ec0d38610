"""Per-image records: one label file decoded once and reduced to its raw counts (JSON-able).

What a record holds (docs/design.md §4.5):
- values / pixels: a sparse `np.bincount` of the stored label values, and the image size.
- instances: from the instance file where the dataset has one (Cityscapes id*1000+k, Vistas
  class*256+k; the factor is read from the taxonomy's `encoding.instances`): number of distinct
  instance ids per class and their pixels. Pixels without an instance id (Cityscapes crowd regions)
  are not counted. No connected components are computed for these classes.
- signs (dense datasets, classes with a `shape`, e.g. Cityscapes Extended 2000 + ClassID): number
  of 8-connected components of each sign value per image.
- GTSDB: pixels are those of the rendered per-pixel masks (`--gtsdb-masks fine|coarse`, overlapping
  boxes resolved by `labeltree.gtsdb_masks`); boxes per class and their side lengths come from gt.txt.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from labeltree.core.taxonomy import Taxonomy, load_taxonomy
from labeltree.datasets.base import Sample
from labeltree.datasets.boxmask import DEFAULT_MASK_MODE
from labeltree.datasets.registry import open_dataset
from labeltree.errors import LabeltreeError

STATS_VERSION = 2  # bump when a per-image record changes meaning: invalidates cache entries


def count_values(arr: np.ndarray, minlength: int = 0) -> np.ndarray:
    """np.bincount of the label values (int64, length >= minlength), exact.

    Label maps are piecewise constant, so the values are counted over RUNS of equal consecutive
    pixels (a 2048x1024 street frame has ~1e4-1e5 runs for 2e6 pixels): one comparison pass plus a
    weighted bincount over the run starts, ~4x cheaper than a bincount of every pixel, which would
    otherwise cost a third to half of decoding the PNG. Noisy maps (many runs) fall back to a
    bincount; for uint8 maps neighbouring byte pairs are then counted as one uint16 and folded back.
    """
    flat = np.ascontiguousarray(arr).reshape(-1)
    if flat.size >= 1 << 16 and flat.dtype.kind == "u":
        change = np.empty(flat.size, dtype=bool)
        change[0] = True
        np.not_equal(flat[1:], flat[:-1], out=change[1:])
        starts = np.flatnonzero(change)
        if starts.size * 8 < flat.size:
            lengths = np.diff(starts, append=flat.size)
            counts = np.bincount(flat[starts], weights=lengths, minlength=minlength)  # float64: exact below 2**53
            return counts.astype(np.int64)
    if flat.dtype == np.uint8 and flat.size >= 1 << 16:
        even = flat.size & ~1
        pairs = np.bincount(flat[:even].view(np.uint16), minlength=1 << 16).reshape(256, 256)
        counts = pairs.sum(axis=0) + pairs.sum(axis=1)
        if even != flat.size:
            counts[flat[-1]] += 1
        if minlength > 256:
            counts = np.concatenate([counts, np.zeros(minlength - 256, dtype=counts.dtype)])
        return counts.astype(np.int64, copy=False)
    return np.bincount(flat, minlength=minlength).astype(np.int64, copy=False)


def instance_factor(taxonomy: Taxonomy) -> int | None:
    """Instance encoding factor from the taxonomy's `encoding.instances` (Cityscapes 1000, Vistas 256)."""
    inst = taxonomy.encoding.instances
    return inst.factor if inst is not None else None


@dataclass(frozen=True)
class _Plan:
    """Per-taxonomy lookup tables a worker needs (built once per process)."""

    lut_size: int
    inst_factor: int | None
    has_instances: np.ndarray  # bool [lut_size] by stored value
    sign_values: np.ndarray  # stored values of shape classes (dense datasets)


@lru_cache(maxsize=16)
def _plan(taxonomy_ref: str) -> _Plan:
    tax = load_taxonomy(taxonomy_ref)
    size = tax.lut_size
    has_inst = np.zeros(size, dtype=bool)
    signs = []
    for c in tax.classes:
        if c.id < 0:
            continue
        v = tax.stored_value(c.id)
        has_inst[v] = c.has_instances
        if c.shape is not None and tax.annotation == "dense":
            signs.append(v)
    return _Plan(size, instance_factor(tax), has_inst, np.array(sorted(signs), dtype=np.int64))


@lru_cache(maxsize=16)
def cached_reader(taxonomy_ref: str, root: str, unknown: str, mask_mode: str):
    kwargs: dict[str, Any] = {}
    if unknown != "error":
        kwargs["unknown"] = unknown
    tax = load_taxonomy(taxonomy_ref)
    if tax.annotation == "boxes" and mask_mode != DEFAULT_MASK_MODE:
        kwargs["mask_mode"] = mask_mode
    return open_dataset(tax, root, **kwargs)


@dataclass(frozen=True)
class WorkerContext:
    """What a worker needs besides the sample (small and picklable)."""

    taxonomy_ref: str
    root: str
    unknown: str = "error"
    mask_mode: str = DEFAULT_MASK_MODE
    instances: bool = True


def _sparse(counts: np.ndarray) -> tuple[list[int], list[int]]:
    nz = np.flatnonzero(counts)
    return nz.tolist(), counts[nz].tolist()


def image_record(ctx: WorkerContext, s: Sample) -> dict[str, Any]:
    """Decode one sample once and reduce it to the raw counts of its record (JSON-able)."""
    plan = _plan(ctx.taxonomy_ref)
    reader = cached_reader(ctx.taxonomy_ref, ctx.root, ctx.unknown, ctx.mask_mode)
    label = reader.read_label(s)
    counts = count_values(label, plan.lut_size)
    if counts.size > plan.lut_size and counts[plan.lut_size:].any():
        bad = (np.flatnonzero(counts[plan.lut_size:]) + plan.lut_size).tolist()[:8]
        raise LabeltreeError(f"label values {bad} lie beyond the taxonomy's largest value {plan.lut_size - 1}",
                             s.label or s.image)
    v, n = _sparse(counts[:plan.lut_size])
    rec: dict[str, Any] = {"height": int(label.shape[0]), "width": int(label.shape[1]), "values": v, "pixels": n}
    # sign components: 8-connected components of each sign value present
    if plan.sign_values.size:
        present = plan.sign_values[counts[plan.sign_values] > 0]
        if present.size:
            rec["sign_values"], rec["sign_components"] = _sign_components(label, present)
    if ctx.instances and s.instances is not None and plan.inst_factor:
        iv, ic, ip = _instance_counts(reader, s, plan, label.shape)
        rec["instance_values"], rec["instances"], rec["instance_pixels"] = iv, ic, ip
    if s.boxes:
        tax = load_taxonomy(ctx.taxonomy_ref)
        rec["boxes"] = [[tax.stored_value(b.class_id), b.x1 - b.x0 + 1, b.y1 - b.y0 + 1] for b in s.boxes]
    return rec


def _sign_components(label: np.ndarray, values: np.ndarray) -> tuple[list[int], list[int]]:
    from scipy import ndimage

    # crop to the rows/columns holding any sign pixel first: signs cover a tiny part of a frame
    mask = np.isin(label, values)
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    crop = label[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    eight = np.ones((3, 3), dtype=bool)
    out = []
    for v in values.tolist():
        _, n = ndimage.label(crop == v, structure=eight)
        out.append(int(n))
    return values.tolist(), out


def _instance_counts(reader, s: Sample, plan: _Plan, shape: tuple[int, ...]) -> tuple[list[int], ...]:
    inst = reader.read_instances(s)
    if inst.shape != shape:
        raise LabeltreeError(f"instance map is {inst.shape[1]}x{inst.shape[0]} but its label map is "
                             f"{shape[1]}x{shape[0]}", s.instances)
    ids_px = count_values(inst)
    ids = np.flatnonzero(ids_px)
    cls = ids // plan.inst_factor
    keep = cls < plan.lut_size
    keep[keep] = plan.has_instances[cls[keep]]
    cls, px = cls[keep], ids_px[ids[keep]]
    n_inst = np.bincount(cls, minlength=plan.lut_size)
    n_px = np.bincount(cls, weights=px, minlength=plan.lut_size).astype(np.int64)
    nz = np.flatnonzero(n_inst)
    return nz.tolist(), n_inst[nz].tolist(), n_px[nz].tolist()


def record_task(task: tuple[WorkerContext, Sample]) -> tuple[str, Any]:
    """Worker entry: ('ok', record) or ('bad', message) for a file that is bad input."""
    ctx, s = task
    try:
        return "ok", image_record(ctx, s)
    except LabeltreeError as e:
        return "bad", str(e)
