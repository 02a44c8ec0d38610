"""Synthetic street scenes of one world, written as every dataset of a tree file in its own layout.

The default tree writes Cityscapes, Cityscapes Extended, Vistas v1.2 and GTSDB; `--tree` names
another (Vistas v2.0, BDD100K, IDD: `WRITERS` has one frame writer per layout).

The real datasets cannot be downloaded here, yet tests, the demo, the trainer and the benchmarks
need data in the exact native layouts (docs/design.md §3) with the real taxonomies. One procedural street
generator paints every frame in the NODES OF THE SEMANTIC TREE (the finest vocabulary there is:
lane markings, manholes, bicyclists, sign fronts of each GTSDB class, ...); each dataset's label
is then one lookup `node -> stored value` compiled from the tree file (`Hierarchy.tables(ds)
.node_to_value`: the dataset class at the depth it annotates, e.g. a lane marking is Cityscapes
"road", a sign front of class k is Cityscapes "traffic sign" and Cityscapes-Extended 2000 + k).
No id is written here; world objects are named by tree node and looked up.

The camera and colour balance differ per dataset (Cityscapes: low car camera with the ego hood,
dull greenish tint; Vistas: varied heights, focal lengths and colour casts, JPEG; GTSDB: more
signs, bluish noisy frames), so that a mixed-dataset model meets a domain shift like the real one.

Every frame is a pure function of (seed, dataset, index, size): frames are made in a process
pool and written atomically; the same arguments give the same bytes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import re
import shutil
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image

from labeltree.core.hierarchy import Hierarchy
from labeltree.core.taxonomy import ClassDef, Taxonomy
from labeltree.core.tree_file import load_hierarchy
from labeltree.datasets import bdd100k, cityscapes, gtsdb, idd, vistas
from labeltree.datasets.gtsdb import GTSDB_SPLITS
from labeltree.datasets.registry import reader_for
from labeltree.datasets.shapes import shape_mask
from labeltree.errors import LabeltreeError
from labeltree.fsutil import atomic_path, write_json, write_png, write_text
from labeltree.parallel import pmap
from labeltree.synth.signs import draw_sign
from labeltree.vocab import DEFAULT_TREE, GTSDB_SIGNS

HIERARCHY = DEFAULT_TREE
MARKER = "synth.json"
# Dataset class for world objects the dataset has no class for (Cityscapes labels a street lamp or
# the back of a sign as "static"), by layout; a layout without one (BDD100K, IDD) gets its ignore value.
FALLBACK_CLASS = {"cityscapes": "static", "vistas": "Unlabeled"}
# Tree nodes the street generator paints (looked up by name in the tree file).
WORLD_NODES = ("Sky", "Building", "Vegetation", "Terrain", "Road", "Sidewalk", "Lane Marking - General",
               "Lane Marking - Crosswalk", "Crosswalk - Plain", "Bike Lane", "Manhole", "Catch Basin", "Pole",
               "Street Light", "Traffic Light", "Traffic Sign (Back)", "Car", "Truck", "Bus", "Person",
               "Bicyclist", "Motorcyclist", "Bicycle", "Motorcycle", "Ego Vehicle")
CITIES = {"train": ("aachen", "bremen", "zurich"), "val": ("frankfurt", "lindau")}
CS_FRAME = 19  # Cityscapes annotates the 20th frame of each 30-frame snippet
GTSDB_TRAIN, GTSDB_TEST = len(GTSDB_SPLITS["train"]), len(GTSDB_SPLITS["test"])
GTSDB_TEST_START = GTSDB_SPLITS["test"].start
GTSDB_EMPTY = 0.1  # share of GTSDB frames without a sign
MAX_SIGNS = 8  # a 256-px-wide frame holds about this many sign posts side by side
JPEG_QUALITY = 90
VAL_EVERY = 5  # every 5th frame is validation: 80 % / 20 %


# -- the world's vocabulary -----------------------------------------------------------------------

class World:
    """Tree nodes of the generator's objects and the per-dataset `node -> stored value` tables.

    The datasets are the tree file's (trained and evaluation-only), each written in its taxonomy's
    layout; an evaluation-only dataset in the layout of a trained one (Cityscapes Extended) gets that
    dataset's frames with its own labels. The sign classes are those of the tree's box dataset.
    """

    def __init__(self, hierarchy: str = HIERARCHY):
        h = load_hierarchy(hierarchy)
        self.hierarchy = h
        missing = [n for n in WORLD_NODES if n not in h.index]
        if missing:
            raise LabeltreeError(f"the synthetic street needs tree nodes {', '.join(missing)}, which tree "
                                 f"'{h.name}' does not have", h.path)
        self.node = {n: h.index[n] for n in WORLD_NODES}
        self.datasets: list[str] = list(h.mappings)
        self.tax: dict[str, Taxonomy] = {}
        self.layout: dict[str, str] = {}
        self.lut: dict[str, np.ndarray] = {}
        self.folder: dict[str, str] = {}  # dataset -> its folder under OUT (one plain name, never a path)
        for ds in self.datasets:
            m = h.mapping(ds)
            self.tax[ds] = m.taxonomy
            self.layout[ds] = reader_for(m.taxonomy).layout
            if self.layout[ds] != "gtsdb" and self.layout[ds] not in WRITERS:
                raise LabeltreeError(f"dataset '{ds}' of tree '{h.name}' is in layout '{self.layout[ds]}', which "
                                     f"labeltree synth cannot write (it writes {', '.join([*WRITERS, 'gtsdb'])})",
                                     h.path)
            self.folder[ds] = _folder_name(ds, m.taxonomy, h)
            self.lut[ds] = self._node_values(ds)
        twice = [f for f in set(self.folder.values()) if list(self.folder.values()).count(f) > 1]
        if twice:
            raise LabeltreeError(f"tree '{h.name}' has several datasets that would be written to OUT/{twice[0]}/: "
                                 "give their taxonomies distinct names", h.path)
        boxes = [ds for ds in self.datasets if self.layout[ds] == "gtsdb"]
        if not boxes:
            raise LabeltreeError(f"the synthetic street draws GTSDB's signs: tree '{h.name}' has no dataset in "
                                 "the GTSDB layout", h.path)
        self.sign_dataset = boxes[0]
        gt = self.tax[self.sign_dataset]
        v2n = h.tables(self.sign_dataset).value_to_node
        self.signs: list[ClassDef] = sorted(gt.classes, key=lambda c: c.id)
        self.sign_node = {c.id: int(v2n[gt.stored_value(c.id)]) for c in self.signs}
        bad = [c.name for c in self.signs if c.shape is None or self.sign_node[c.id] < 0]
        if bad:
            raise LabeltreeError(f"GTSDB classes {', '.join(bad)} have no shape or no tree node", h.path)
        # stored value -> does the class have instances (encoded per the taxonomy's encoding.instances)
        self.has_instances: dict[str, np.ndarray] = {}
        for ds, tax in self.tax.items():
            if tax.annotation == "dense" and tax.encoding.instances is not None:
                flags = np.zeros(tax.lut_size, dtype=bool)
                for c in tax.classes:
                    if c.id >= 0:
                        flags[tax.stored_value(c.id)] = c.has_instances
                self.has_instances[ds] = flags
        trained = [ds for ds in self.datasets if not h.mapping(ds).evaluation_only]
        # evaluation-only dataset -> the trained dataset of its layout whose frames it labels
        self.shares = {ds: next(t for t in trained if self.layout[t] == self.layout[ds]) for ds in self.datasets
                       if h.mapping(ds).evaluation_only and any(self.layout[t] == self.layout[ds] for t in trained)}
        self.rendered = [ds for ds in self.datasets if ds not in self.shares]

    def _node_values(self, ds: str) -> np.ndarray:
        """node -> stored value: the dataset's class at the depth it annotates; a node finer than the
        dataset gets its ancestor's class (Hierarchy.tables), a node coarser than every class of the
        dataset (a painted inner node) its first mapped descendant's, anything else the fallback."""
        h, tax = self.hierarchy, self.tax[ds]
        n2v = h.tables(ds).node_to_value.copy()
        for n in np.flatnonzero(n2v < 0):
            below = [d for d in sorted(h.descendants(int(n))) if d != n and n2v[d] >= 0]
            if below:
                n2v[n] = n2v[below[0]]
        if tax.annotation == "dense":
            name = FALLBACK_CLASS.get(self.layout[ds])
            fb = tax.find(name) if name is not None else None
            if fb is not None:
                n2v[n2v < 0] = tax.stored_value(fb.id)
            elif tax.ignore_ids:
                n2v[n2v < 0] = tax.stored_value(tax.ignore_ids[0])
            else:
                raise LabeltreeError(f"taxonomy '{tax.name}' has no class for objects it does not label "
                                     f"({name or 'an ignore id'})", h.path)
        return n2v

    def instances(self, ds: str, values: np.ndarray, inst: np.ndarray) -> np.ndarray:
        """The dataset's 16-bit instance map, encoded as its taxonomy's `encoding.instances` says."""
        enc = self.tax[ds].encoding.instances
        if enc is None or ds not in self.has_instances:
            raise LabeltreeError(f"taxonomy '{ds}' has no encoding.instances: it defines no instance files")
        return _instances(values, inst, self.has_instances[ds], enc.factor, enc.stuff_factor, np.uint16)

    def labels(self, ds: str, nodes: np.ndarray) -> np.ndarray:
        """Node map -> stored label values of dataset `ds` (uint8 or uint16 as the taxonomy says)."""
        dtype = np.uint16 if self.tax[ds].encoding.dtype == "uint16" else np.uint8
        return self.lut[ds].astype(dtype)[nodes]


_FOLDER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


def _folder_name(ds: str, tax: Taxonomy, h: Hierarchy) -> str:
    """OUT/<this>/ for a dataset: its name, or for a taxonomy file its taxonomy's name; a name that is
    no single plain folder name ('../x', '/etc') is refused, so nothing is ever written outside OUT."""
    for name in (ds, tax.name) if Path(ds).suffix not in (".yaml", ".yml") else (tax.name,):
        if _FOLDER.fullmatch(name) and name not in (MARKER,):
            return name
    raise LabeltreeError(f"dataset '{ds}' of tree '{h.name}' (taxonomy name '{tax.name}') is no plain folder "
                         "name (letters, digits, . _ + -); synth writes each dataset to OUT/<name>/: rename the "
                         "taxonomy", h.path)


@cache
def get_world(hierarchy: str = HIERARCHY) -> World:
    return World(hierarchy)


# -- cameras and looks --------------------------------------------------------------------------

@dataclass(frozen=True)
class Style:
    """How one dataset photographs the world: camera ranges and colour treatment."""

    cam_height: tuple[float, float]
    horizon: tuple[float, float]  # fraction of image height
    focal: tuple[float, float]  # fraction of image width
    vp_shift: float  # vanishing point x offset, fraction of width
    cam_x: float  # lateral camera offset range (m)
    ego_hood: bool
    tint: tuple[float, float, float]
    tint_jitter: float
    saturation: tuple[float, float]
    brightness: tuple[float, float]
    noise: float
    sign_poles: tuple[int, ...]  # choices for the number of sign posts (Cityscapes/Vistas)
    sign_px: tuple[float, float]  # sign width range in pixels at 256 px image width
    back_share: float


STYLES = {
    "cityscapes": Style((1.18, 1.26), (0.40, 0.46), (0.85, 0.95), 0.06, 1.0, True, (0.93, 1.0, 0.90), 0.02,
                        (0.70, 0.80), (0.82, 0.90), 5.0, (0, 1, 1, 2, 2, 3), (12, 36), 0.2),
    "vistas": Style((1.3, 2.4), (0.32, 0.50), (0.70, 1.10), 0.15, 2.0, False, (1.0, 1.0, 1.0), 0.12,
                    (0.9, 1.3), (0.8, 1.2), 4.0, (0, 1, 1, 2, 2, 3), (12, 36), 0.25),
    # BDD100K: dashcams behind the windscreen, wide lenses, day and dusk, compressed
    "bdd100k": Style((1.25, 1.5), (0.42, 0.55), (0.55, 0.75), 0.10, 1.5, True, (1.0, 0.98, 0.95), 0.08,
                     (0.75, 1.15), (0.55, 1.1), 6.0, (0, 1, 1, 2), (10, 30), 0.3),
    # IDD: Indian roads, hazy warm light, higher cameras
    "idd": Style((1.4, 1.8), (0.36, 0.46), (0.75, 0.95), 0.10, 1.5, False, (1.06, 1.0, 0.88), 0.05,
                 (0.7, 0.95), (0.9, 1.15), 6.0, (0, 1, 1, 2), (10, 32), 0.3),
    "gtsdb": Style((1.3, 1.4), (0.44, 0.50), (0.90, 1.00), 0.08, 1.0, False, (0.95, 0.98, 1.08), 0.03,
                   (0.9, 1.1), (0.85, 1.0), 7.0, (), (14, 40), 0.0),
}


def frame_rng(seed: int, dataset: str, index: int) -> np.random.Generator:
    """Independent, reproducible RNG per (seed, dataset, frame): frames can be made in any order."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(dataset.encode()), int(index)])


# -- the painter ----------------------------------------------------------------------------------

@dataclass
class SignBox:
    """A drawn sign: GTSDB ClassID (-1 for a sign back), inclusive box, instance serial."""

    class_id: int
    x0: int
    y0: int
    x1: int
    y1: int
    serial: int
    front: bool = True


@dataclass
class Scene:
    """One rendered frame: tree node per pixel, object serial per pixel (0 = stuff), RGB, signs."""

    nodes: np.ndarray
    inst: np.ndarray
    rgb: np.ndarray
    signs: list[SignBox] = field(default_factory=list)


class _Canvas:
    def __init__(self, nodes: np.ndarray, rgb: np.ndarray):
        self.nodes, self.rgb = nodes, rgb
        self.inst = np.zeros(nodes.shape, dtype=np.int32)
        self.H, self.W = nodes.shape
        self.serial = 0

    def new_serial(self) -> int:
        self.serial += 1
        return self.serial

    def put(self, y0: int, x0: int, mask: np.ndarray, node: int, serial: int, color: np.ndarray | tuple) -> None:
        """Paint `mask` (local) at (y0, x0), clipped to the frame; colour is RGB or an HxWx3 picture."""
        h, w = mask.shape
        ya, xa = max(0, y0), max(0, x0)
        yb, xb = min(self.H, y0 + h), min(self.W, x0 + w)
        if ya >= yb or xa >= xb:
            return
        m = mask[ya - y0:yb - y0, xa - x0:xb - x0]
        self.nodes[ya:yb, xa:xb][m] = node
        self.inst[ya:yb, xa:xb][m] = serial
        col = np.asarray(color, dtype=np.float32)
        if col.ndim == 3:
            col = col[ya - y0:yb - y0, xa - x0:xb - x0][m]
        self.rgb[ya:yb, xa:xb][m] = col


def _rect(h: int, w: int) -> np.ndarray:
    return np.ones((max(1, h), max(1, w)), dtype=bool)


def _jitter(rng: np.random.Generator, base: tuple[int, int, int], amount: float = 18) -> np.ndarray:
    return np.clip(np.asarray(base, dtype=np.float32) + rng.normal(0, amount, 3), 0, 255)


class _Street:
    """Geometry of one street (meters) seen by one camera (pixels): a straight road between two
    rows of facades, flat ground, billboard objects standing on it."""

    def __init__(self, rng: np.random.Generator, style: Style, W: int, H: int):
        self.rng, self.W, self.H = rng, W, H
        self.ch = rng.uniform(*style.cam_height)
        self.hor = rng.uniform(*style.horizon) * H
        self.f = rng.uniform(*style.focal) * W
        self.vpx = W * (0.5 + rng.uniform(-style.vp_shift, style.vp_shift))
        self.road_half = rng.uniform(3.2, 4.6)
        self.sw = (rng.uniform(2.2, 4.0), rng.uniform(2.2, 4.0))  # sidewalk widths left, right
        self.cam_x = rng.uniform(-style.cam_x, style.cam_x)
        self.cam_x = float(np.clip(self.cam_x, -self.road_half + 0.5, self.road_half - 0.5))
        self.z_end = rng.uniform(60, 220)

    def project(self, X: float, Z: float, Y: float = 0.0) -> tuple[float, float]:
        """World point (lateral X, height Y, depth Z) -> pixel (x, y)."""
        return self.vpx + self.f * (X - self.cam_x) / Z, self.hor + self.f * (self.ch - Y) / Z

    def box(self, X: float, Z: float, w: float, h: float, y_base: float = 0.0) -> tuple[int, int, int, int]:
        """Pixel (y0, x0, height, width) of an upright w x h (m) billboard centred at X, standing at y_base."""
        xl, yb = self.project(X - w / 2, Z, y_base)
        xr, yt = self.project(X + w / 2, Z, y_base + h)
        x0, y0 = int(math.floor(xl)), int(math.floor(yt))
        return y0, x0, max(1, int(math.ceil(yb)) - y0), max(1, int(math.ceil(xr)) - x0)


def _blocks(rng: np.random.Generator, z_end: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Facade blocks along one side: end depths, heights, vegetation flags, colours."""
    ends, heights, veg, cols = [], [], [], []
    z = rng.uniform(-5, 5)
    palette = [(120, 110, 100), (150, 140, 125), (95, 90, 90), (140, 95, 80), (170, 160, 150), (85, 95, 110)]
    while z < z_end + 10:
        z += rng.uniform(8, 30)
        is_veg = rng.random() < 0.22
        ends.append(z)
        heights.append(rng.uniform(3.0, 7.0) if is_veg else rng.uniform(7.0, 24.0))
        veg.append(is_veg)
        cols.append(_jitter(rng, palette[rng.integers(len(palette))], 12))
    return np.asarray(ends), np.asarray(heights), np.asarray(veg), np.asarray(cols, dtype=np.float32)


def _lowfreq(rng: np.random.Generator, H: int, W: int, cells: int = 8) -> np.ndarray:
    """Smooth random field in [-1, 1] (illumination, stains)."""
    g = rng.uniform(0, 255, (max(2, H // cells), max(2, W // cells))).astype(np.uint8)
    return np.asarray(Image.fromarray(g).resize((W, H), Image.BILINEAR), dtype=np.float32) / 127.5 - 1.0


def _background(world: World, st: _Street, rng: np.random.Generator) -> _Canvas:
    """Sky, facades / hedges, the end-of-street wall and the ground with its markings."""
    W, H, N = st.W, st.H, world.node
    xs = np.arange(W, dtype=np.float64) + 0.5
    ys = np.arange(H, dtype=np.float64) + 0.5
    nodes = np.full((H, W), N["Sky"], dtype=np.int16)
    rgb = np.empty((H, W, 3), dtype=np.float32)
    # sky: vertical gradient, blue or overcast
    overcast = rng.random() < 0.5
    top = _jitter(rng, (185, 195, 205) if overcast else (90, 140, 200), 10)
    bottom = _jitter(rng, (215, 220, 225) if overcast else (170, 200, 230), 10)
    t = np.clip(ys / max(1.0, st.hor), 0, 1)[:, None, None]
    rgb[:] = top * (1 - t) + bottom * t

    # facades per column: the first thing each column's upward ray hits
    left_b = st.road_half + st.sw[0] + st.cam_x
    right_b = st.road_half + st.sw[1] - st.cam_x
    dx = xs - st.vpx
    with np.errstate(divide="ignore", invalid="ignore"):
        zf = np.where(dx < 0, st.f * left_b / -dx, st.f * right_b / dx)
    zf = np.where(np.isfinite(zf) & (zf > 0), zf, np.inf)
    at_end = zf >= st.z_end
    zc = np.minimum(zf, st.z_end)
    sides = [_blocks(rng, st.z_end), _blocks(rng, st.z_end)]
    hb = np.empty(W)
    veg = np.zeros(W, dtype=bool)
    wall_col = np.empty((W, 3), dtype=np.float32)
    for side, (ends, heights, is_veg, cols) in enumerate(sides):
        sel = (dx < 0) if side == 0 else (dx >= 0)
        b = np.minimum(np.searchsorted(ends, zc[sel]), len(ends) - 1)
        hb[sel], veg[sel], wall_col[sel] = heights[b], is_veg[b], cols[b]
    end_h = rng.uniform(10, 30)
    hb[at_end], veg[at_end] = end_h, False
    wall_col[at_end] = _jitter(rng, (130, 125, 120), 15)
    # ragged hedge tops
    hb = np.where(veg, hb * (1 + 0.12 * np.sin(zc * 1.9 + rng.uniform(0, 6))), hb)
    yg = st.hor + st.f * st.ch / zc
    yt = st.hor + st.f * (st.ch - hb) / zc
    Y = ys[:, None]
    wall = (Y >= yt[None, :]) & (Y < yg[None, :])
    # window grid on building facades, in facade coordinates (along-street u, height v)
    v = st.ch - (Y - st.hor) * zc[None, :] / st.f
    u = np.where(at_end, (xs - st.vpx) * st.z_end / st.f, zc)[None, :]
    win = ((u + 100) % 3.4 < 1.7) & (v % 3.1 > 1.1) & (v % 3.1 < 2.3) & (v > 2.6) & (v < hb[None, :] - 0.6)
    bld = wall & ~veg[None, :]
    vg = wall & veg[None, :]
    nodes[bld] = N["Building"]
    nodes[vg] = N["Vegetation"]
    wc = np.broadcast_to(wall_col[None, :, :], (H, W, 3))
    rgb[bld] = wc[bld]
    win_m = bld & win
    rgb[win_m] = rgb[win_m] * 0.45 + np.array([40, 55, 70], dtype=np.float32)
    rgb[vg] = _jitter(rng, (70, 110, 45), 10)

    # ground
    g = Y >= np.maximum(yg[None, :], st.hor + 0.5)
    with np.errstate(divide="ignore"):
        Z = np.broadcast_to((st.f * st.ch / np.maximum(ys - st.hor, 1e-3))[:, None], (H, W))
    X = (xs[None, :] - st.vpx) * Z / st.f + st.cam_x
    ax = np.abs(X)
    rh = st.road_half
    sw = np.where(X < 0, st.sw[0], st.sw[1])
    road = g & (ax <= rh)
    side = g & ~road
    nodes[side] = N["Sidewalk"]
    tile = ((X * 2.0 + 50) % 1.0 < 0.07) | ((Z * 2.0) % 1.0 < 0.07)
    rgb[side] = _jitter(rng, (165, 160, 150), 10)
    rgb[side & tile] *= 0.8
    # grass strips in front of hedges
    for s, (ends, _h, is_veg, _c) in enumerate(sides):
        sel = side & ((X < 0) if s == 0 else (X >= 0)) & (ax > rh + 0.55 * sw)
        b = np.minimum(np.searchsorted(ends, Z[sel]), len(ends) - 1)
        grass = np.zeros_like(sel)
        grass[sel] = is_veg[b]
        nodes[grass] = N["Terrain"]
        rgb[grass] = _jitter(rng, (105, 140, 60), 12)
    nodes[road] = N["Road"]
    rgb[road] = _jitter(rng, (92, 92, 96), 8)

    def paint(m: np.ndarray, name: str, col: tuple[int, int, int], jit: float = 8) -> None:
        m = m & road
        nodes[m] = N[name]
        rgb[m] = _jitter(rng, col, jit)

    if rng.random() < 0.45:  # bike lanes along both edges
        inner = rh - rng.uniform(1.2, 1.6)
        paint(ax > inner, "Bike Lane", (150, 70, 60) if rng.random() < 0.6 else (80, 130, 80))
        paint((ax > inner - 0.15) & (ax <= inner), "Lane Marking - General", (225, 225, 220))
    paint((ax > rh - 0.3) & (ax < rh - 0.15), "Lane Marking - General", (225, 225, 220))
    phase = rng.uniform(0, 9)
    paint((ax < 0.08) & ((Z + phase) % 9 < 3), "Lane Marking - General", (225, 225, 220))
    r = rng.random()
    if r < 0.6:  # a crossing somewhere ahead
        zc0 = rng.uniform(6, 30)
        band = (Z >= zc0) & (Z < zc0 + rng.uniform(3, 4.5))
        if r < 0.4:
            paint(band & ((X + 100) % 1.0 < 0.5), "Lane Marking - Crosswalk", (230, 230, 225))
        else:
            depth = rng.uniform(3, 4.5)
            band = (Z >= zc0) & (Z < zc0 + depth)
            paint(band, "Crosswalk - Plain", (150, 120, 110))
            paint(band & ((Z < zc0 + 0.2) | (Z >= zc0 + depth - 0.2)), "Lane Marking - General", (225, 225, 220))
    for _ in range(rng.integers(0, 3)):
        mx, mz, rr = rng.uniform(-rh + 0.6, rh - 0.6), rng.uniform(5, 25), rng.uniform(0.3, 0.45)
        paint((X - mx) ** 2 + (Z - mz) ** 2 < rr * rr, "Manhole", (55, 55, 60), 5)
    if rng.random() < 0.5:
        cz = rng.uniform(5, 20)
        paint((ax > rh - 0.55) & (ax < rh - 0.3) & (Z > cz) & (Z < cz + 0.8), "Catch Basin", (40, 40, 42), 4)
    canvas = _Canvas(nodes, rgb)
    return canvas


# -- objects ------------------------------------------------------------------------------------

def _car(cv: _Canvas, st: _Street, rng: np.random.Generator, N: dict[str, int], X: float, Z: float) -> None:
    big = rng.random() < 0.12
    kind = ("Truck" if rng.random() < 0.5 else "Bus") if big else "Car"
    w, h = (2.5, 3.2) if big else (1.8, 1.5)
    y0, x0, ph, pw = st.box(X, Z, w, h)
    body = _jitter(rng, [(160, 20, 20), (30, 30, 35), (200, 200, 205), (40, 60, 120), (120, 120, 125),
                         (20, 80, 50)][rng.integers(6)], 15)
    pic = np.empty((ph, pw, 3), dtype=np.float32)
    pic[:] = body
    mask = _rect(ph, pw)
    cab = int(round(ph * (0.2 if big else 0.4)))
    inset = int(round(pw * (0.04 if big else 0.13)))
    if not big and inset > 0:
        mask[:cab, :inset] = False
        mask[:cab, pw - inset:] = False
    pic[int(cab * 0.25):cab, inset:pw - inset] = (45, 55, 70)  # windows
    wh = max(1, int(round(ph * 0.18)))
    ww = max(1, int(round(pw * 0.2)))
    pic[ph - wh:, :ww] = (20, 20, 20)
    pic[ph - wh:, pw - ww:] = (20, 20, 20)
    ly = int(round(ph * 0.55))
    pic[ly:ly + max(1, ph // 10), :max(1, pw // 8)] = (200, 30, 30)
    pic[ly:ly + max(1, ph // 10), pw - max(1, pw // 8):] = (200, 30, 30)
    cv.put(y0, x0, mask, N[kind], cv.new_serial(), pic)


def _person_mask(ph: int, pw: int) -> tuple[np.ndarray, int, int]:
    """Silhouette: round head, torso, two legs; returns mask, head rows, torso end row."""
    mask = np.zeros((ph, pw), dtype=bool)
    hd = max(1, int(round(ph * 0.14)))
    hw = max(1, min(pw, int(round(pw * 0.55))))
    hx = (pw - hw) // 2
    mask[:hd, hx:hx + hw] = shape_mask("circle", hd, hw)
    te = max(hd + 1, int(round(ph * 0.55)))
    mask[hd:te] = True
    if pw >= 3:
        lw = max(1, int(round(pw * 0.38)))
        mask[te:, :lw] = True
        mask[te:, pw - lw:] = True
    else:
        mask[te:] = True
    return mask, hd, te


def _person(cv: _Canvas, st: _Street, rng: np.random.Generator, node: int, X: float, Z: float,
            y_base: float = 0.0, height: float | None = None, helmet: bool = False) -> None:
    h = height or rng.uniform(1.55, 1.9)
    y0, x0, ph, pw = st.box(X, Z, 0.55, h, y_base)
    mask, hd, te = _person_mask(ph, pw)
    pic = np.empty((ph, pw, 3), dtype=np.float32)
    pic[:hd] = (40, 40, 45) if helmet else _jitter(rng, (200, 160, 130), 20)
    pic[hd:te] = _jitter(rng, [(200, 40, 40), (40, 60, 150), (230, 230, 220), (50, 50, 50),
                               (220, 180, 40)][rng.integers(5)], 20)
    pic[te:] = _jitter(rng, (45, 45, 70), 15)
    cv.put(y0, x0, mask, node, cv.new_serial(), pic)


def _rider(cv: _Canvas, st: _Street, rng: np.random.Generator, N: dict[str, int], X: float, Z: float) -> None:
    moto = rng.random() < 0.4
    w, h = (0.75, 1.15) if moto else (0.45, 1.05)
    y0, x0, ph, pw = st.box(X, Z, w, h)
    mask = _rect(ph, pw)
    pic = np.empty((ph, pw, 3), dtype=np.float32)
    pic[:] = _jitter(rng, (60, 60, 70) if moto else (150, 150, 160), 20)
    pic[ph - max(1, ph // 3):] = (25, 25, 25)  # wheel
    cv.put(y0, x0, mask, N["Motorcycle" if moto else "Bicycle"], cv.new_serial(), pic)
    _person(cv, st, rng, N["Motorcyclist" if moto else "Bicyclist"], X, Z, y_base=0.55,
            height=rng.uniform(1.1, 1.25), helmet=moto)


def _tree(cv: _Canvas, st: _Street, rng: np.random.Generator, N: dict[str, int], X: float, Z: float) -> None:
    serial = 0
    y0, x0, ph, pw = st.box(X, Z, 0.3, 2.8)
    cv.put(y0, x0, _rect(ph, pw), N["Vegetation"], serial, _jitter(rng, (90, 65, 45), 10))
    cw, chh = rng.uniform(2.2, 3.5), rng.uniform(2.5, 3.5)
    y0, x0, ph, pw = st.box(X, Z, cw, chh, 2.4)
    m = shape_mask("circle", ph, pw)
    tex = np.asarray(_jitter(rng, (60, 105, 40), 12)) * (1 + 0.25 * _lowfreq(rng, ph, pw, 2)[..., None])
    cv.put(y0, x0, m, N["Vegetation"], serial, tex)


def _pole(cv: _Canvas, st: _Street, N: dict[str, int], X: float, Z: float, top: float, serial: int,
          y_base: float = 0.0) -> None:
    y0, x0, ph, pw = st.box(X, Z, 0.14, top - y_base, y_base)
    cv.put(y0, x0, _rect(ph, pw), N["Pole"], serial, (130, 130, 135))


def _street_light(cv: _Canvas, st: _Street, rng: np.random.Generator, N: dict[str, int], X: float,
                  Z: float) -> None:
    height = rng.uniform(6.0, 8.0)
    s = cv.new_serial()
    _pole(cv, st, N, X, Z, height, s)
    arm = -np.sign(X) * 1.6
    y0, x0, ph, pw = st.box(X + arm / 2, Z, abs(arm), 0.12, height - 0.12)
    cv.put(y0, x0, _rect(ph, pw), N["Pole"], s, (130, 130, 135))
    y0, x0, ph, pw = st.box(X + arm, Z, 0.7, 0.25, height - 0.3)
    cv.put(y0, x0, _rect(ph, pw), N["Street Light"], cv.new_serial(), (225, 220, 190))


def _traffic_light(cv: _Canvas, st: _Street, rng: np.random.Generator, N: dict[str, int], X: float,
                   Z: float) -> None:
    _pole(cv, st, N, X, Z, 2.5, cv.new_serial())
    y0, x0, ph, pw = st.box(X, Z, 0.35, 0.95, 2.4)
    pic = np.empty((ph, pw, 3), dtype=np.float32)
    pic[:] = (30, 30, 30)
    lit = rng.integers(3)
    for i, col in enumerate(((220, 40, 30), (230, 180, 30), (40, 200, 80))):
        r0, r1 = (ph * i) // 3, max((ph * i) // 3 + 1, (ph * (i + 1)) // 3)
        pic[r0:r1, pw // 4: max(pw // 4 + 1, 3 * pw // 4)] = col if i == lit else (70, 70, 70)
    cv.put(y0, x0, _rect(ph, pw), N["Traffic Light"], cv.new_serial(), pic)


def _place_sign(st: _Street, rng: np.random.Generator, style: Style, shape: str,
                taken: list[tuple[int, int]]) -> tuple[float, float, int, int, int, int] | None:
    """A depth, lateral position and pixel box for a sign that lies fully inside the frame and does not
    overlap (in x, pole included) a sign already placed. None if no place was found."""
    W, H = st.W, st.H
    for _ in range(16):
        pw = int(round(rng.uniform(*style.sign_px) * W / 256))
        pw = max(8, min(pw, W - 4, H - 4))
        ph = int(round(pw * 0.88)) if shape in ("triangle", "inverted-triangle") else pw
        size_m = rng.uniform(0.7, 0.9)
        Z = st.f * size_m / pw
        if Z < 2.5:
            continue
        side = -1 if rng.random() < 0.5 else 1
        X = side * (st.road_half + rng.uniform(0.3, 0.9))
        xc = st.project(X, Z)[0]
        if not pw / 2 + 1 <= xc <= W - pw / 2 - 1:  # pole on a traffic island / gantry instead
            xc = rng.uniform(pw / 2 + 1, W - pw / 2 - 1)
            X = (xc - st.vpx) * Z / st.f + st.cam_x
        x0 = int(round(xc - pw / 2))
        half_h = size_m * ph / pw / 2
        yc_m = rng.uniform(1.9, 2.7)
        y_top = st.project(X, Z, yc_m + half_h)[1]
        if y_top < 1:
            yc_m = st.ch + (st.hor - 1.5) * Z / st.f - half_h
            if yc_m < 0.9:
                continue
            y_top = st.project(X, Z, yc_m + half_h)[1]
        y0 = int(round(y_top))
        if y0 < 0 or y0 + ph > H - 1 or x0 < 0 or x0 + pw > W:
            continue
        if any(not (x0 + pw + 2 <= a or b + 2 <= x0) for a, b in taken):
            continue
        taken.append((x0, x0 + pw))
        return X, Z, x0, y0, pw, ph
    return None


def _sign_post(cv: _Canvas, st: _Street, rng: np.random.Generator, world: World, style: Style,
               cls: ClassDef, front: bool, taken: list[tuple[int, int]]) -> tuple[float, Callable[[], SignBox]] | None:
    """Place a sign post; returns (depth, painter) so posts can be painted far to near, or None."""
    place = _place_sign(st, rng, style, cls.shape or "circle", taken)
    if place is None:
        return None
    X, Z, x0, y0, pw, ph = place
    serial = cv.new_serial()

    def paint() -> SignBox:
        # pole from the ground up to the sign's centre, then the sign face over it
        y_mid_m = st.ch - (y0 + ph / 2 - st.hor) * Z / st.f
        _pole(cv, st, world.node, X, Z, max(0.2, y_mid_m), cv.new_serial())
        pic, mask = draw_sign(cls, ph, pw)
        if front:
            cv.put(y0, x0, mask, world.sign_node[cls.id], serial, pic)
        else:
            back = np.empty((ph, pw, 3), dtype=np.float32)
            back[:] = _jitter(rng, (150, 150, 155), 10)
            cv.put(y0, x0, mask, world.node["Traffic Sign (Back)"], serial, back)
        return SignBox(cls.id if front else -1, x0, y0, x0 + pw - 1, y0 + ph - 1, serial, front)

    return Z, paint


def render_scene(dataset: str, seed: int, index: int, width: int, height: int,
                 sign_classes: list[int] | None = None, world: World | None = None,
                 street_signs: tuple[int, int] | None = None) -> Scene:
    """Render frame `index` of `dataset`'s synthetic set: a pure function of its arguments.

    `sign_classes`: GTSDB ClassIDs of the sign fronts to draw (GTSDB frames); None = the style's
    random number of sign posts with random classes and some sign backs (Cityscapes / Vistas);
    `street_signs` (lo, hi) overrides that number of posts.
    """
    world = world or get_world()
    style = STYLES[world.layout[dataset]]
    rng = frame_rng(seed, dataset, index)
    st = _Street(rng, style, width, height)
    cv = _background(world, st, rng)
    N = world.node
    rh = st.road_half
    objects: list[tuple[float, Callable[[], None]]] = []  # (depth, painter) painted far to near

    def add(Z: float, fn: Callable[..., None], *args: object) -> None:  # calls fn(canvas, street, rng, *args, Z)
        objects.append((Z, lambda: fn(cv, st, rng, *args, Z)))

    for _ in range(rng.poisson(3.0)):
        lane = rng.choice([-1.0, 1.0]) * (rh / 2 if rng.random() < 0.7 else rh - 0.9)
        add(rng.uniform(5, 60), _car, N, lane + rng.uniform(-0.3, 0.3))
    for _ in range(rng.poisson(2.5)):
        s = -1 if rng.random() < 0.5 else 1
        X = s * (rh + rng.uniform(0.4, st.sw[0 if s < 0 else 1] - 0.3))
        add(rng.uniform(4, 40), _person, N["Person"], X)
    for _ in range(rng.choice([0, 0, 1, 2])):
        add(rng.uniform(5, 40), _rider, N, rng.choice([-1.0, 1.0]) * (rh - 0.8))
    for _ in range(rng.integers(0, 5)):
        s = -1 if rng.random() < 0.5 else 1
        add(rng.uniform(6, 60), _tree, N, s * (rh + st.sw[0 if s < 0 else 1] - 0.6))
    for _ in range(rng.integers(0, 3)):
        add(rng.uniform(8, 50), _street_light, N, rng.choice([-1.0, 1.0]) * (rh + 0.3))
    if rng.random() < 0.35:
        add(rng.uniform(10, 40), _traffic_light, N, rng.choice([-1.0, 1.0]) * (rh + 0.4))
    for _z, fn in sorted(objects, key=lambda o: -o[0]):
        fn()

    # signs last (far to near) so that every sign is whole: GTSDB boxes must hold what was drawn
    taken: list[tuple[int, int]] = []
    posts = []
    if sign_classes is None:
        if street_signs is not None:
            n_posts = int(rng.integers(street_signs[0], street_signs[1] + 1))
        else:
            n_posts = int(rng.choice(style.sign_poles)) if style.sign_poles else 0
        wanted = []
        for _ in range(n_posts):
            front = rng.random() >= style.back_share
            wanted.append((world.signs[rng.integers(len(world.signs))], front))
    else:
        by_id = {c.id: c for c in world.signs}
        wanted = [(by_id[k], True) for k in sign_classes]
    for cls, front in wanted:
        p = _sign_post(cv, st, rng, world, style, cls, front, taken)
        if p is not None:
            posts.append(p)
    signs = [paint() for _Z, paint in sorted(posts, key=lambda p: -p[0])]

    if style.ego_hood:
        xs = (np.arange(width) + 0.5 - width / 2) / (width / 2)
        hood_top = height * (0.93 + 0.04 * xs ** 2)
        m = (np.arange(height)[:, None] + 0.5) >= hood_top[None, :]
        cv.nodes[m] = N["Ego Vehicle"]
        cv.inst[m] = 0
        cv.rgb[m] = _jitter(rng, (40, 42, 48), 6)
    rgb = _finish(cv.rgb, rng, style, cv.nodes == N["Sky"])
    return Scene(cv.nodes, cv.inst, rgb, signs)


def _finish(rgb: np.ndarray, rng: np.random.Generator, style: Style, sky: np.ndarray) -> np.ndarray:
    """Camera look: illumination field, colour cast, saturation, brightness and sensor noise."""
    H, W, _ = rgb.shape
    light = 1.0 + 0.10 * _lowfreq(rng, H, W, 16)
    light[sky] = 1.0
    img = rgb * light[..., None]
    tint = np.asarray(style.tint) * (1 + rng.uniform(-style.tint_jitter, style.tint_jitter, 3))
    img *= tint.astype(np.float32)
    grey = img.mean(axis=2, keepdims=True)
    img = grey + (img - grey) * rng.uniform(*style.saturation)
    img *= rng.uniform(*style.brightness)
    img += rng.normal(0.0, style.noise, img.shape).astype(np.float32)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


# -- writers --------------------------------------------------------------------------------------

def _instances(values: np.ndarray, inst: np.ndarray, has_inst: np.ndarray, base: int, stuff_scale: int,
               dtype: type) -> np.ndarray:
    """value*base + k on pixels of instance classes (k = 0, 1, ... per class in object order) and
    value*stuff_scale elsewhere (Cityscapes: id*1000+k / id; Vistas: class*256+k / class*256)."""
    out = values.astype(np.int64) * stuff_scale
    thing = has_inst[values] & (inst > 0)
    if thing.any():
        key = values[thing].astype(np.int64) << 32 | inst[thing].astype(np.int64)
        uniq, inv = np.unique(key, return_inverse=True)
        first = np.searchsorted(uniq, (uniq >> 32) << 32)
        k = np.arange(len(uniq)) - first
        out[thing] = values[thing].astype(np.int64) * base + k[inv]
    return out.astype(dtype)


def write_ppm(target: Path, rgb: np.ndarray) -> None:
    """Binary P6 PPM (GTSDB's frame format), written atomically."""
    h, w, _ = rgb.shape
    with atomic_path(target) as tmp:
        tmp.write_bytes(f"P6\n{w} {h}\n255\n".encode() + np.ascontiguousarray(rgb, dtype=np.uint8).tobytes())


def _link(src: Path, target: Path) -> None:
    """`target` becomes a hard link to `src` (a copy where links are impossible), atomically."""
    with atomic_path(target) as tmp:
        tmp.unlink()
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)


def _write_jpeg(target: Path, rgb: np.ndarray) -> None:
    with atomic_path(target) as tmp:
        Image.fromarray(rgb).save(tmp, format="JPEG", quality=JPEG_QUALITY, subsampling=2, optimize=False)


def vistas_key(seed: int, index: int) -> str:
    """A 22-character Mapillary-style image key, stable for (seed, index)."""
    d = hashlib.sha256(f"labeltree-synth/{seed}/{index}".encode()).digest()
    return base64.urlsafe_b64encode(d).decode()[:22]


def cityscapes_split(index: int) -> str:
    return "val" if index % VAL_EVERY == VAL_EVERY - 1 else "train"


def split_index(index: int) -> tuple[str, int]:
    """(split, position within the split) of frame `index`: every VAL_EVERY-th frame is validation."""
    split = cityscapes_split(index)
    return split, index // VAL_EVERY if split == "val" else index - index // VAL_EVERY


def cityscapes_key(index: int) -> tuple[str, str, str]:
    """(split, city, key) of Cityscapes frame `index`: cities round-robin within a split."""
    split, j = split_index(index)
    cities = CITIES[split]
    city = cities[j % len(cities)]
    return split, city, f"{city}_{j // len(cities):06d}_{CS_FRAME:06d}"


def gtsdb_layout(n: int) -> list[int]:
    """Frame numbers for n GTSDB frames: about 2/3 from 00000 (train), the rest from 00600 (test)."""
    if n > GTSDB_TRAIN + GTSDB_TEST:
        raise LabeltreeError(f"GTSDB numbering holds at most {GTSDB_TRAIN + GTSDB_TEST} frames "
                             f"(00000-00599 train, 00600-00899 test); asked for {n}")
    n_train = min(GTSDB_TRAIN, int(round(n * 2 / 3)))
    n_test = n - n_train
    if n_test > GTSDB_TEST:
        n_train, n_test = n - GTSDB_TEST, GTSDB_TEST
    return list(range(n_train)) + list(range(GTSDB_TEST_START, GTSDB_TEST_START + n_test))


def gtsdb_sign_classes(seed: int, frame: int, n_classes: int, signs: tuple[int, int] = GTSDB_SIGNS) -> list[int]:
    """ClassIDs drawn in GTSDB frame `frame`: none in 1 frame of 10, else `signs` (lo, hi) of them;
    consecutive frames walk through a seeded permutation of all classes, so any ~n_classes/hi frames
    hold every class."""
    lo, hi = signs
    rng = frame_rng(seed, "gtsdb-classes", frame)
    n = 0 if rng.random() < GTSDB_EMPTY else int(rng.integers(lo, hi + 1))
    perm = np.random.default_rng([int(seed) & 0xFFFFFFFF, 43043]).permutation(n_classes)
    return [int(perm[(hi * frame + s) % n_classes]) for s in range(n)]


@dataclass(frozen=True)
class _Job:
    dataset: str
    index: int
    seed: int
    width: int
    height: int
    out: str
    hierarchy: str
    gtsdb_signs: tuple[int, int] = GTSDB_SIGNS
    street_signs: tuple[int, int] | None = None


def _make(job: _Job) -> dict:
    """Render and write one frame in its dataset's layout; returns what the summary needs."""
    world = get_world(job.hierarchy)
    layout = world.layout[job.dataset]
    if layout == "gtsdb":
        classes = gtsdb_sign_classes(job.seed, job.index, len(world.signs), job.gtsdb_signs)
        sc = render_scene(job.dataset, job.seed, job.index, job.width, job.height, classes, world)
        name = gtsdb.frame_name(job.index)
        write_ppm(Path(job.out) / world.folder[job.dataset] / name, sc.rgb)
        return {"dataset": job.dataset, "name": name,
                "boxes": [(s.x0, s.y0, s.x1, s.y1, s.class_id) for s in sc.signs]}
    sc = render_scene(job.dataset, job.seed, job.index, job.width, job.height, None, world, job.street_signs)
    values = world.labels(job.dataset, sc.nodes)
    split = WRITERS[layout](world, job, sc, Path(job.out) / world.folder[job.dataset], values)
    return {"dataset": job.dataset, "split": split,
            "counts": np.bincount(values.ravel(), minlength=world.tax[job.dataset].lut_size),
            "signs": [s.class_id for s in sc.signs if s.front]}


def _write_cityscapes(world: World, job: _Job, sc: Scene, root: Path, ids: np.ndarray) -> str:
    """labelIds + instanceIds + photo; the evaluation datasets that share these frames (Cityscapes
    Extended) get their own labels and hard links to the photos."""
    split, city, key = cityscapes_key(job.index)
    ds = job.dataset
    write_png(cityscapes.image_path(root, split, city, key), sc.rgb)
    write_png(cityscapes.label_path(root, split, city, key), ids)
    if ds in world.has_instances:
        write_png(cityscapes.instance_path(root, split, city, key), world.instances(ds, ids, sc.inst))
    for other in (e for e, src in world.shares.items() if src == ds):
        dest = Path(job.out) / world.folder[other]
        _link(cityscapes.image_path(root, split, city, key), cityscapes.image_path(dest, split, city, key))
        write_png(cityscapes.label_path(dest, split, city, key), world.labels(other, sc.nodes))
    return split


def _write_vistas(world: World, job: _Job, sc: Scene, root: Path, lab: np.ndarray) -> str:
    """JPEG photo, palette label and instance PNG in the folders of the taxonomy's release."""
    split = cityscapes_split(job.index)
    key = vistas_key(job.seed, job.index)
    ds = job.dataset
    tax = world.tax[ds]
    _write_jpeg(vistas.image_path(root, split, key), sc.rgb)
    write_png(vistas.label_path(root, split, key, tax.version), lab, palette=tax.palette())
    if ds in world.has_instances:
        write_png(vistas.instance_path(root, split, key, tax.version), world.instances(ds, lab, sc.inst))
    return vistas.VISTAS_SPLITS[split]


def bdd100k_key(seed: int, index: int) -> str:
    """A BDD100K-style video name `xxxxxxxx-xxxxxxxx`, stable for (seed, index)."""
    d = hashlib.sha256(f"labeltree-synth/bdd100k/{seed}/{index}".encode()).hexdigest()
    return f"{d[:8]}-{d[8:16]}"


def _write_bdd100k(world: World, job: _Job, sc: Scene, root: Path, lab: np.ndarray) -> str:
    """JPEG photo, 8-bit mask of train ids (255 = unknown) and its colour map, as the 10K release."""
    split = cityscapes_split(job.index)
    key = bdd100k_key(job.seed, job.index)
    _write_jpeg(bdd100k.image_path(root, split, key), sc.rgb)
    write_png(bdd100k.label_path(root, split, key), lab)
    write_png(bdd100k.colormap_path(root, split, key), lab, palette=world.tax[job.dataset].palette())
    return split


IDD_SEQUENCES = 4  # synthetic IDD frames go round-robin into this many sequence folders per split


def idd_key(index: int) -> tuple[str, str, str]:
    """(split, sequence, frame) of IDD frame `index`: sequences '0'.., frames numbered within a split."""
    split, j = split_index(index)
    return split, str(j % IDD_SEQUENCES), f"{j:06d}"


def _write_idd(world: World, job: _Job, sc: Scene, root: Path, lab: np.ndarray) -> str:
    """PNG photo and the label PNG of the taxonomy's column (createLabels' `_gtFine_label{column}s.png`)."""
    split, seq, frame = idd_key(job.index)
    write_png(idd.image_path(root, split, seq, frame), sc.rgb)
    write_png(idd.label_path(root, split, seq, frame, idd.column_of(world.tax[job.dataset])), lab)
    return split


# layout -> frame writer(world, job, scene, the dataset's folder, the frame's label values) -> split name
# (GTSDB frames are written by _make: their labels are gt.txt lines)
WRITERS: dict[str, Callable[[World, _Job, Scene, Path, np.ndarray], str]] = {
    "cityscapes": _write_cityscapes,
    "vistas": _write_vistas,
    "bdd100k": _write_bdd100k,
    "idd": _write_idd,
}


def vistas_config(tax: Taxonomy) -> dict:
    """config.json in Mapillary's format, generated from the taxonomy (index = label value)."""
    labels = [{"color": list(c.color), "instances": c.has_instances, "readable": c.display, "name": c.name,
               "evaluate": not c.ignore_in_eval} for c in sorted(tax.classes, key=lambda c: c.id)]
    return {"labels": labels, "version": tax.version, "mapping": "public",
            "folder_structure": "{split}/{content}/{key:.{22}}.{ext}"}


# -- the whole job ------------------------------------------------------------------------------------

@dataclass
class SynthResult:
    out: Path
    roots: dict[str, Path]
    frames: dict[str, dict[str, int]]  # dataset -> split -> frames
    pixels: dict[str, dict[str, float]]  # dataset -> class name -> share of pixels
    signs: dict[str, dict[int, int]]  # dataset -> GTSDB ClassID -> sign count
    gtsdb_boxes: int
    seconds: float
    layouts: dict[str, str] = field(default_factory=dict)  # dataset -> layout
    shared: dict[str, str] = field(default_factory=dict)  # evaluation dataset -> dataset whose frames it labels

    @property
    def images(self) -> int:
        """Frames rendered (Cityscapes Extended shares the Cityscapes frames)."""
        return sum(sum(self.frames.get(ds, {}).values()) for ds in self.rendered)

    @property
    def rendered(self) -> list[str]:
        return [ds for ds in self.roots if ds not in self.shared]


def parse_size(text: str) -> tuple[int, int]:
    """'256x128' -> (256, 128)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise LabeltreeError(f"size must look like 256x128 (width x height), got '{text}'") from None
    if not (32 <= w <= 8192 and 32 <= h <= 8192):
        raise LabeltreeError(f"size {w}x{h} is out of range: width and height must be 32..8192")
    return w, h


def _prepare_out(out: Path, force: bool, folders: list[str]) -> None:
    """Refuse a non-empty folder that is not an earlier synth output (unless forced); clear an earlier
    one's dataset folders (those it recorded and those about to be written, nothing else)."""
    if out.exists() and not out.is_dir():
        raise LabeltreeError("OUT exists and is a file; give a folder", out)
    for sub in folders:  # writing through a link would write outside OUT
        if (out / sub).is_symlink() or ((out / sub).exists() and not (out / sub).is_dir()):
            raise LabeltreeError(f"OUT/{sub} is a {'link' if (out / sub).is_symlink() else 'file'}; synth writes "
                                 "only inside OUT: remove it or choose another OUT", out / sub)
    if not out.exists() or not any(out.iterdir()):
        return
    marker = out / MARKER
    meta = None
    if marker.is_file() and not marker.is_symlink():
        try:
            meta = json.loads(marker.read_text())
        except (OSError, ValueError):
            meta = None
    if isinstance(meta, dict) and meta.get("generator") == "labeltree synth":  # an earlier synth output
        try:
            recorded = [str(v["root"]) for v in meta.get("datasets", {}).values()]
        except (AttributeError, KeyError, TypeError):
            recorded = []
        for sub in dict.fromkeys([*recorded, *folders]):
            target = out / sub
            if _FOLDER.fullmatch(sub) and sub != MARKER and target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
        return
    if not force:
        raise LabeltreeError(f"folder is not empty and is no earlier `labeltree synth` output (no valid {MARKER}); "
                             "choose an empty or new folder, or pass --force to write into it (files with the "
                             "same names are replaced, nothing else is touched)", out)


def synthesize(out: str | Path, images: int = 50, seed: int = 0, size: tuple[int, int] = (256, 128),
               workers: int | None = None, force: bool = False, gtsdb_images: int | None = None,
               progress: bool = True, hierarchy: str = HIERARCHY, gtsdb_signs: tuple[int, int] = GTSDB_SIGNS,
               street_signs: tuple[int, int] | None = None) -> SynthResult:
    """Write `images` frames of each dataset of the tree `hierarchy` under `out/<dataset>/` (see module
    doc); returns counts for a summary.

    The box dataset (GTSDB) gets `gtsdb_images` frames (default: `images`, at most 900 because of
    its numbering) with `gtsdb_signs` (lo, hi) signs each; `street_signs` sets the sign posts per
    dense frame (default: the style's 0-3). Denser signs give a sign classifier more examples per frame.
    An earlier synth output in `out` is replaced; any other non-empty folder needs `force`.
    """
    if images < 1:
        raise LabeltreeError(f"--images must be at least 1, got {images}")
    for opt, r in (("--gtsdb-signs", gtsdb_signs), ("--street-signs", street_signs)):
        if r is not None and not 0 <= r[0] <= r[1] <= MAX_SIGNS:
            raise LabeltreeError(f"{opt} must be LO-HI with 0 <= LO <= HI <= {MAX_SIGNS}, got {r[0]}-{r[1]}")
    width, height = size
    out = Path(out)
    n_gtsdb = min(images, GTSDB_TRAIN + GTSDB_TEST) if gtsdb_images is None else gtsdb_images
    frames_gtsdb = gtsdb_layout(n_gtsdb)
    world = get_world(hierarchy)
    _prepare_out(out, force, list(world.folder.values()))
    t0 = time.perf_counter()
    params = {"generator": "labeltree synth", "seed": seed, "images": images, "gtsdb_images": n_gtsdb,
              "size": [width, height], "hierarchy": hierarchy, "gtsdb_signs": list(gtsdb_signs),
              "street_signs": list(street_signs) if street_signs is not None else None}
    write_json(out / MARKER, {**params, "complete": False})
    jobs = []
    for ds in world.rendered:
        if world.layout[ds] == "gtsdb":
            jobs += [_Job(ds, i, seed, width, height, str(out), hierarchy, gtsdb_signs=gtsdb_signs)
                     for i in frames_gtsdb]
        else:
            jobs += [_Job(ds, i, seed, width, height, str(out), hierarchy, street_signs=street_signs)
                     for i in range(images)]
    frames: dict[str, dict[str, int]] = {ds: {} for ds in world.rendered}
    counts = {ds: np.zeros(world.tax[ds].lut_size, dtype=np.int64) for ds in world.rendered
              if world.layout[ds] != "gtsdb"}
    signs: dict[str, dict[int, int]] = {ds: {} for ds in world.rendered}
    gt_lines: dict[str, list[str]] = {ds: [] for ds in world.rendered if world.layout[ds] == "gtsdb"}
    for r in pmap(_make, jobs, workers=workers, desc="synth", progress=progress, chunksize=4):
        ds = r["dataset"]
        if ds in gt_lines:
            split = "train" if int(r["name"][:5]) < GTSDB_TEST_START else "test"
            for x0, y0, x1, y1, k in r["boxes"]:
                gt_lines[ds].append(gtsdb.gt_line(r["name"], x0, y0, x1, y1, k))
                signs[ds][k] = signs[ds].get(k, 0) + 1
        else:
            split = r["split"]
            counts[ds] += r["counts"]
            for k in r["signs"]:
                signs[ds][k] = signs[ds].get(k, 0) + 1
        frames[ds][split] = frames[ds].get(split, 0) + 1
    for ds, lines in gt_lines.items():
        write_text(out / world.folder[ds] / gtsdb.GT_FILE, "".join(line + "\n" for line in lines))
    for ds in world.rendered:
        if world.layout[ds] == "vistas":
            tax = world.tax[ds]
            write_json(out / world.folder[ds] / vistas.config_name(tax.version), vistas_config(tax))
    pixels = {}
    for ds, c in counts.items():
        tax = world.tax[ds]
        total = max(1, int(c.sum()))
        names = {tax.stored_value(k.id): k.display for k in tax.classes}
        pixels[ds] = {names.get(int(v), str(v)): float(c[v]) / total for v in np.flatnonzero(c)}
    for ev, src in world.shares.items():
        frames[ev] = dict(frames[src])
        signs[ev] = signs.pop(src)
    seconds = time.perf_counter() - t0
    roots = {ds: out / world.folder[ds] for ds in world.datasets}
    n_boxes = sum(len(v) for v in gt_lines.values())
    res = SynthResult(out, roots, frames, pixels, signs, n_boxes, seconds, dict(world.layout), dict(world.shares))
    write_json(out / MARKER, {**params, "complete": True, "frames": frames,
                              "signs": {d: {str(k): v for k, v in sorted(s.items())} for d, s in signs.items()},
                              "gtsdb_boxes": n_boxes,
                              "datasets": {ds: {"root": world.folder[ds], "taxonomy": world.tax[ds].name,
                                                "layout": world.layout[ds]} for ds in world.datasets}})
    return res


# what each layout's synthetic files are, for the summary
WHAT = {"cityscapes": "leftImg8bit/*.png, gtFine/*_labelIds.png, *_instanceIds.png (16-bit)",
        "vistas": "{training,validation}/images/*.jpg, labels/*.png (palette), instances/*.png, config",
        "bdd100k": "images/10k/{train,val}/*.jpg, labels/sem_seg/masks/*.png (train ids), colormaps/",
        "idd": "leftImg8bit/{train,val}/{seq}/*_leftImg8bit.png, gtFine/.../*_gtFine_labellevel3Ids.png",
        "gtsdb": "NNNNN.ppm (P6), gt.txt"}


def summary(res: SynthResult) -> str:
    """Human-readable lines: where each dataset went, frames per split, pixel shares, signs."""
    lines = [f"wrote {res.out} in {res.seconds:.1f} s ({res.images} frames, "
             f"{60 * res.images / max(res.seconds, 1e-9):.0f} frames/min)"]
    for ds, root in res.roots.items():
        split = ", ".join(f"{s} {n}" for s, n in sorted(res.frames.get(ds, {}).items()))
        extra = ""
        if ds in res.signs and res.signs[ds]:
            s = res.signs[ds]
            extra = f"; {sum(s.values())} signs of {len(s)} classes"
        layout = res.layouts.get(ds, "")
        if layout == "gtsdb":
            extra += f"; gt.txt {res.gtsdb_boxes} boxes"
        what = WHAT.get(layout, "")
        if ds in res.shared:
            what = f"gtFine/*_labelIds.png (its own labels of the {res.shared[ds]} frames), leftImg8bit (links)"
        lines.append(f"  {ds:<20} {root}  [{split}{extra}]")
        lines.append(f"  {'':<20} {what}")
    for ds, shares in res.pixels.items():
        top = sorted(shares.items(), key=lambda kv: -kv[1])[:6]
        lines.append(f"  pixels {ds}: " + ", ".join(f"{n} {100 * v:.1f}%" for n, v in top))
    return "\n".join(lines)


def as_json(res: SynthResult) -> str:
    return json.dumps({"out": str(res.out), "roots": {k: str(v) for k, v in res.roots.items()},
                       "frames": res.frames, "gtsdb_boxes": res.gtsdb_boxes, "seconds": res.seconds})
