"""One pass over a dataset: what its labels (and a model's predictions) say about each class.

Per class (a slot per taxonomy class, ignored classes included): pixels, frames it appears in, where
in the frame it lies (a vertical profile), how large it is (its share of the frames it appears in),
its neighbours (the classes its pixels touch), and with a model the histogram of the model's
predicted tree nodes over its pixels (the class's fingerprint). Pixels are taken on a stride grid
(at most MAX_PIXELS per frame): placement compares distributions, not counts.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from labeltree.core.taxonomy import Taxonomy
from labeltree.datasets.base import Sample
from labeltree.datasets.registry import open_dataset
from labeltree.errors import LabeltreeError
from labeltree.fsutil import atomic_path
from labeltree.place.model import NodeModel
from labeltree.resources import user_cache_dir
from labeltree.stats.cache import file_sig

ROWS = 8  # bins of the vertical profile
MAX_PIXELS = 16384  # pixels per frame on the stride grid
CACHE_VERSION = 3


@dataclass
class ClassEvidence:
    """Per-slot arrays for one dataset (slot i = taxonomy.classes[i])."""

    dataset: str
    taxonomy: Taxonomy
    frames: int
    pixels: np.ndarray  # [K] labelled pixels (stride grid)
    images: np.ndarray  # [K] frames the class appears in
    rows: np.ndarray  # [K, ROWS] pixels per vertical band
    share: np.ndarray  # [K] sum over frames of the class's share of the frame
    touch: np.ndarray  # [K, K] neighbouring pixel pairs (right and down neighbours)
    pred: np.ndarray | None  # [K, n_nodes] the model's node histogram over the class's pixels
    examples: dict[int, list[str]]  # slot -> frame keys where it covers most
    root: Path | None = None
    samples: dict[str, Sample] = field(default_factory=dict)  # the example frames, by key (for crops)
    frame_keys: list[str] = field(default_factory=list)  # every frame read, in order
    frame_pred: np.ndarray | None = None  # [F, K, n_nodes] `pred` per frame (audit: where a mapping fails most)

    @property
    def size(self) -> np.ndarray:
        """Mean share of a frame the class covers where it appears."""
        return self.share / np.maximum(self.images, 1)

    def profile(self) -> np.ndarray:
        return self.rows / np.maximum(self.rows.sum(1, keepdims=True), 1)


def slot_table(tax: Taxonomy) -> np.ndarray:
    """Stored value -> slot (-1 for values of no class)."""
    lut = np.full(tax.lut_size, -1, dtype=np.int64)
    for i, c in enumerate(tax.classes):
        if c.id >= 0:
            lut[tax.stored_value(c.id)] = i
    return lut


def _frame(lab: np.ndarray, nodes: np.ndarray | None, stride: int) -> tuple[np.ndarray, np.ndarray | None]:
    lab = lab[::stride, ::stride]
    if nodes is not None:
        nodes = nodes[::stride, ::stride]
        h, w = min(lab.shape[0], nodes.shape[0]), min(lab.shape[1], nodes.shape[1])
        lab, nodes = lab[:h, :w], nodes[:h, :w]
    return lab, nodes


def scan(dataset: str, tax: Taxonomy, root: str | Path, model: NodeModel | None = None, n_nodes: int = 0,
         max_frames: int | None = None, split: str | None = None) -> ClassEvidence:
    """Read every (or the first `max_frames`, spread over the splits) frame of `dataset` under `root`."""
    reader = open_dataset(tax, root)
    splits = [split] if split else reader.splits()
    samples = [s for sp in splits for s in reader.samples(sp)]
    if not samples:
        raise LabeltreeError(f"no frames of {dataset} found (splits: {', '.join(splits) or 'none'}); is this the "
                             f"dataset's root?", root)
    if max_frames and len(samples) > max_frames:
        pick = np.linspace(0, len(samples) - 1, max_frames).round().astype(int)
        samples = [samples[i] for i in sorted(set(pick.tolist()))]
    key = _cache_key(dataset, tax, samples, model) if model is not None else None
    cached = _load(key, tax, samples) if key else None
    if cached is not None:
        cached.dataset, cached.root = dataset, Path(root)
        return _in_tree(cached, model, n_nodes)
    lut = slot_table(tax)
    k = len(tax.classes)
    m_nodes = len(model.node_names) if model is not None else 0  # the pass counts the model's own node ids
    ev = ClassEvidence(dataset, tax, len(samples), np.zeros(k, np.int64), np.zeros(k, np.int64),
                       np.zeros((k, ROWS), np.int64), np.zeros(k), np.zeros((k, k), np.int64),
                       np.zeros((k, m_nodes), np.int64) if model is not None else None, {})
    best: dict[int, list[tuple[float, str]]] = {}
    per_frame = []
    for s in samples:
        full = reader.read_label(s)
        nodes = model.predict(reader.read_image(s)) if model is not None else None
        stride = max(1, int(np.ceil(np.sqrt(full.size / MAX_PIXELS))))
        lab, nodes = _frame(full, nodes, stride)
        slots = np.where(lab < len(lut), lut[np.minimum(lab, len(lut) - 1)], -1)
        per_frame.append(_add_frame(ev, slots, nodes, m_nodes, best, s.key))
    ev.frame_keys = [s.key for s in samples]
    if ev.pred is not None:
        ev.frame_pred = np.stack([f for f in per_frame if f is not None]).astype(np.int32)
    ev.examples = {i: [key for _, key in sorted(v, reverse=True)[:3]] for i, v in best.items()}
    keep = {k for keys in ev.examples.values() for k in keys}
    ev.root, ev.samples = Path(root), {s.key: s for s in samples if s.key in keep}
    if key:
        _save(key, ev)
    return _in_tree(ev, model, n_nodes)


def _in_tree(ev: ClassEvidence, model: NodeModel | None, n_nodes: int) -> ClassEvidence:
    """The model's node ids -> the tree's (`NodeModel.remap`, by node name). The pass and its cache keep the
    model's own ids, so one pass serves every tree the model is read in (place against the base tree, then
    audit of the extension: no second pass over the base datasets)."""
    if model is None or ev.pred is None:
        return ev
    m_nodes = len(model.node_names)
    remap = model.remap[:m_nodes] if model.remap is not None else np.arange(m_nodes)
    onto = np.zeros((m_nodes, n_nodes), np.int64)
    ok = (remap >= 0) & (remap < n_nodes)
    onto[np.flatnonzero(ok), remap[ok]] = 1
    ev.pred = ev.pred @ onto
    if ev.frame_pred is not None:
        ev.frame_pred = (ev.frame_pred.astype(np.int64) @ onto).astype(np.int32)
    return ev


# -- cache: a model's pass over a dataset is the slow part; `place` and `audit` against one model reuse it --

def _cache_key(dataset: str, tax: Taxonomy, samples: list[Sample], model: NodeModel) -> str:
    """Digest of the model file, its node names, the taxonomy and every frame read (path, size, mtime)."""
    parts = [CACHE_VERSION, dataset, tax.model_dump_json(), file_sig(model.path), model.node_names, MAX_PIXELS,
             [[s.key, file_sig(s.label), file_sig(s.image), repr(s.boxes)] for s in samples]]
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:32]


def _path(key: str) -> Path:
    return user_cache_dir() / "place" / f"{key}.npz"


def _load(key: str, tax: Taxonomy, samples: list[Sample]) -> ClassEvidence | None:
    p = _path(key)
    if not p.is_file():
        return None
    try:
        with np.load(p, allow_pickle=False) as z:
            examples = {int(k): list(v) for k, v in json.loads(str(z["examples"])).items()}
            keep = {k for keys in examples.values() for k in keys}
            return ClassEvidence("", tax, int(z["frames"]), z["pixels"], z["images"], z["rows"], z["share"],
                                 z["touch"], z["pred"], examples, None, {s.key: s for s in samples if s.key in keep},
                                 [s.key for s in samples], z["frame_pred"])
    except (OSError, ValueError, KeyError):  # a damaged cache file is recomputed
        return None


def _save(key: str, ev: ClassEvidence) -> None:
    try:
        with atomic_path(_path(key)) as tmp, open(tmp, "wb") as f:
            np.savez_compressed(f, frames=ev.frames, pixels=ev.pixels, images=ev.images, rows=ev.rows,
                                share=ev.share, touch=ev.touch, pred=ev.pred, frame_pred=ev.frame_pred,
                                examples=json.dumps({str(k): v for k, v in ev.examples.items()}))
    except (OSError, LabeltreeError):  # no cache is no error
        pass


def _add_frame(ev: ClassEvidence, slots: np.ndarray, nodes: np.ndarray | None, n_nodes: int,
               best: dict[int, list[tuple[float, str]]], key: str) -> np.ndarray | None:
    """Add one frame's counts; returns its [K, n_nodes] prediction histogram (None without a model)."""
    k = len(ev.pixels)
    ok = slots >= 0
    counts = np.bincount(slots[ok], minlength=k)
    ev.pixels += counts
    present = counts > 0
    ev.images += present
    ev.share += counts / max(slots.size, 1)
    band = (np.arange(slots.shape[0]) * ROWS // max(slots.shape[0], 1))[:, None].repeat(slots.shape[1], 1)
    ev.rows += np.bincount(slots[ok] * ROWS + band[ok], minlength=k * ROWS).reshape(k, ROWS)
    for a, b in ((slots[:, :-1], slots[:, 1:]), (slots[:-1, :], slots[1:, :])):
        m = (a >= 0) & (b >= 0) & (a != b)
        pair = np.bincount(a[m] * k + b[m], minlength=k * k).reshape(k, k)
        ev.touch += pair + pair.T
    for i in np.flatnonzero(present):
        best.setdefault(int(i), []).append((float(counts[i]), key))
    if nodes is None or ev.pred is None:
        return None
    m = ok & (nodes >= 0) & (nodes < n_nodes)
    hist = np.bincount(slots[m] * n_nodes + nodes[m], minlength=k * n_nodes).reshape(k, n_nodes)
    ev.pred += hist
    return hist
