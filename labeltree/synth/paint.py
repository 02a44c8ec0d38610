"""The painter: one street frame, a pure function of (seed, dataset, index, size), painted in tree nodes.

The camera and colour balance differ per dataset (Cityscapes: low car camera with the ego hood,
dull greenish tint; Vistas: varied heights, focal lengths and colour casts, JPEG; GTSDB: more
signs, bluish noisy frames), so that a mixed-dataset model meets a domain shift like the real one.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from labeltree.core.taxonomy import ClassDef
from labeltree.datasets.shapes import shape_mask
from labeltree.synth.signs import draw_sign
from labeltree.synth.world import World, get_world
from labeltree.vocab import GTSDB_SIGNS

GTSDB_EMPTY = 0.1  # share of GTSDB frames without a sign
MAX_SIGNS = 8  # a 256-px-wide frame holds about this many sign posts side by side


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
    """Sky, facades / hedges, the end-of-street wall and the ground with its markings (in this order: the
    random draws of a frame follow it)."""
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
    sides, yg = _facades(N, st, rng, nodes, rgb, xs, ys)
    road, X, Z = _ground(N, st, rng, nodes, rgb, xs, ys, yg, sides)
    _road_markings(N, st, rng, nodes, rgb, road, X, Z)
    return _Canvas(nodes, rgb)


_Blocks = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _facades(N: dict[str, int], st: _Street, rng: np.random.Generator, nodes: np.ndarray, rgb: np.ndarray,
             xs: np.ndarray, ys: np.ndarray) -> tuple[list[_Blocks], np.ndarray]:
    """Facades per column (the first thing each column's upward ray hits), with windows and ragged hedge
    tops; returns both sides' blocks and the ground row of each column."""
    W, H = st.W, st.H
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
    return sides, yg


def _ground(N: dict[str, int], st: _Street, rng: np.random.Generator, nodes: np.ndarray, rgb: np.ndarray,
            xs: np.ndarray, ys: np.ndarray, yg: np.ndarray,
            sides: list[_Blocks]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sidewalks, grass strips in front of hedges and the road; returns the road mask and the ground's
    world coordinates X, Z per pixel."""
    W, H = st.W, st.H
    g = ys[:, None] >= np.maximum(yg[None, :], st.hor + 0.5)
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
    for s, (ends, _h, is_veg, _c) in enumerate(sides):
        sel = side & ((X < 0) if s == 0 else (X >= 0)) & (ax > rh + 0.55 * sw)
        b = np.minimum(np.searchsorted(ends, Z[sel]), len(ends) - 1)
        grass = np.zeros_like(sel)
        grass[sel] = is_veg[b]
        nodes[grass] = N["Terrain"]
        rgb[grass] = _jitter(rng, (105, 140, 60), 12)
    nodes[road] = N["Road"]
    rgb[road] = _jitter(rng, (92, 92, 96), 8)
    return road, X, Z


def _road_markings(N: dict[str, int], st: _Street, rng: np.random.Generator, nodes: np.ndarray, rgb: np.ndarray,
                   road: np.ndarray, X: np.ndarray, Z: np.ndarray) -> None:
    """Bike lanes, lane lines, a crossing, manholes and a catch basin, painted on the road only."""
    ax = np.abs(X)
    rh = st.road_half

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


def _wheels(pic: np.ndarray, mask: np.ndarray, wh: int, ww: int) -> None:
    """Dark wheels in the bottom `wh` rows at both sides and the gap between them left unpainted."""
    ph, pw = mask.shape
    pic[ph - wh:, :ww] = (20, 20, 20)
    pic[ph - wh:, pw - ww:] = (20, 20, 20)
    if pw - 2 * ww > 0:
        mask[ph - wh:, ww:pw - ww] = False


def _autorickshaw(cv: _Canvas, st: _Street, rng: np.random.Generator, node: int, X: float, Z: float) -> None:
    """IDD's three-wheeler seen from behind: black rounded canopy over a yellow or green body."""
    y0, x0, ph, pw = st.box(X, Z, 1.4, 1.75)
    mask = _rect(ph, pw)
    cap = max(1, int(round(ph * 0.45)))
    mask[:cap] = shape_mask("circle", 2 * cap, pw)[:cap] | (np.arange(cap)[:, None] >= cap // 2)
    pic = np.empty((ph, pw, 3), dtype=np.float32)
    pic[:cap] = _jitter(rng, (28, 28, 30), 6)
    pic[cap:] = _jitter(rng, (225, 185, 30) if rng.random() < 0.6 else (40, 140, 70), 15)
    pic[cap:cap + max(1, ph // 8), pw // 5:max(pw // 5 + 1, 4 * pw // 5)] = (60, 55, 50)  # rear opening
    _wheels(pic, mask, max(1, int(round(ph * 0.14))), max(1, int(round(pw * 0.18))))
    cv.put(y0, x0, mask, node, cv.new_serial(), pic)


def _vehicle_fallback(cv: _Canvas, st: _Street, rng: np.random.Generator, node: int, X: float, Z: float) -> None:
    """A vehicle of no other kind (tractor trailer, cart, caravan): a slatted box on big wheels."""
    y0, x0, ph, pw = st.box(X, Z, 2.2, 2.1)
    mask = _rect(ph, pw)
    pic = np.empty((ph, pw, 3), dtype=np.float32)
    pic[:] = _jitter(rng, [(200, 110, 40), (60, 90, 150), (120, 85, 55)][rng.integers(3)], 15)
    slat = max(2, ph // 6)
    pic[(np.arange(ph) % slat) == 0] *= 0.55
    _wheels(pic, mask, max(1, int(round(ph * 0.25))), max(1, int(round(pw * 0.22))))
    cv.put(y0, x0, mask, node, cv.new_serial(), pic)


def _barrier(cv: _Canvas, st: _Street, rng: np.random.Generator, node: int, X: float, Z: float) -> None:
    """A roadside barrier at the kerb: a low, wide board striped red/white or yellow/black, down to the ground."""
    y0, x0, ph, pw = st.box(X, Z, rng.uniform(1.8, 3.6), rng.uniform(0.7, 1.0))
    a, b = ((215, 40, 35), (235, 235, 230)) if rng.random() < 0.6 else ((230, 190, 30), (30, 30, 30))
    stripe = max(2, ph // 2)
    yy, xx = np.mgrid[0:ph, 0:pw]
    pic = np.where((((xx + yy) // stripe) % 2 == 0)[..., None], _jitter(rng, a, 8), _jitter(rng, b, 8))
    cv.put(y0, x0, _rect(ph, pw), node, cv.new_serial(), pic.astype(np.float32))


def _idd_objects(N: dict[str, int], st: _Street, rng: np.random.Generator,
                 add: Callable[..., None]) -> None:
    """IDD frames only (their own random draws): autorickshaws, other vehicles and roadside barriers,
    each where the tree has its node (IDD's add-on root nodes)."""
    rh = st.road_half
    if "Autorickshaw" in N:
        for _ in range(rng.poisson(1.2)):
            lane = rng.choice([-1.0, 1.0]) * (rh / 2 if rng.random() < 0.6 else rh - 0.8)
            add(rng.uniform(5, 45), _autorickshaw, N["Autorickshaw"], lane + rng.uniform(-0.3, 0.3))
    if "Vehicle Fallback" in N and rng.random() < 0.5:
        add(rng.uniform(8, 50), _vehicle_fallback, N["Vehicle Fallback"], rng.choice([-1.0, 1.0]) * rh / 2)
    if "Obs-Str-Bar Fallback" in N:
        for _ in range(rng.integers(0, 3)):
            s = -1.0 if rng.random() < 0.5 else 1.0
            add(rng.uniform(5, 35), _barrier, N["Obs-Str-Bar Fallback"], s * (rh + rng.uniform(0.1, 0.5)))


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
    if world.layout[dataset] == "idd":  # IDD frames only: other datasets' frames draw nothing more
        _idd_objects(world.idd_node, st, rng, add)
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

def gtsdb_sign_classes(seed: int, frame: int, n_classes: int, signs: tuple[int, int] = GTSDB_SIGNS) -> list[int]:
    """ClassIDs drawn in GTSDB frame `frame`: none in 1 frame of 10, else `signs` (lo, hi) of them;
    consecutive frames walk through a seeded permutation of all classes, so any ~n_classes/hi frames
    hold every class."""
    lo, hi = signs
    rng = frame_rng(seed, "gtsdb-classes", frame)
    n = 0 if rng.random() < GTSDB_EMPTY else int(rng.integers(lo, hi + 1))
    perm = np.random.default_rng([int(seed) & 0xFFFFFFFF, 43043]).permutation(n_classes)
    return [int(perm[(hi * frame + s) % n_classes]) for s in range(n)]
