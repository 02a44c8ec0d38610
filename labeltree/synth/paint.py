"""The painter: one street frame, a pure function of (seed, dataset, index, size), painted in tree nodes.

The camera and colour balance differ per dataset (Cityscapes: low car camera with the ego hood,
dull greenish tint; Vistas: varied heights, focal lengths and colour casts, JPEG; GTSDB: more
signs, bluish noisy frames), so that a mixed-dataset model meets a domain shift like the real one.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from labeltree.synth import objects as obj
from labeltree.synth.canvas import STYLES, Canvas, Scene, Street, Style, frame_rng, jitter, lowfreq
from labeltree.synth.world import World, get_world
from labeltree.vocab import GTSDB_SIGNS

GTSDB_EMPTY = 0.1  # share of GTSDB frames without a sign
MAX_SIGNS = 8  # a 256-px-wide frame holds about this many sign posts side by side


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
        cols.append(jitter(rng, palette[rng.integers(len(palette))], 12))
    return np.asarray(ends), np.asarray(heights), np.asarray(veg), np.asarray(cols, dtype=np.float32)


def _background(world: World, st: Street, rng: np.random.Generator) -> Canvas:
    """Sky, facades / hedges, the end-of-street wall and the ground with its markings (in this order: the
    random draws of a frame follow it)."""
    W, H, N = st.W, st.H, world.node
    xs = np.arange(W, dtype=np.float64) + 0.5
    ys = np.arange(H, dtype=np.float64) + 0.5
    nodes = np.full((H, W), N["Sky"], dtype=np.int16)
    rgb = np.empty((H, W, 3), dtype=np.float32)
    # sky: vertical gradient, blue or overcast
    overcast = rng.random() < 0.5
    top = jitter(rng, (185, 195, 205) if overcast else (90, 140, 200), 10)
    bottom = jitter(rng, (215, 220, 225) if overcast else (170, 200, 230), 10)
    t = np.clip(ys / max(1.0, st.hor), 0, 1)[:, None, None]
    rgb[:] = top * (1 - t) + bottom * t
    sides, yg = _facades(N, st, rng, nodes, rgb, xs, ys)
    road, X, Z = _ground(N, st, rng, nodes, rgb, xs, ys, yg, sides)
    _road_markings(N, st, rng, nodes, rgb, road, X, Z)
    return Canvas(nodes, rgb)


_Blocks = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _facades(N: dict[str, int], st: Street, rng: np.random.Generator, nodes: np.ndarray, rgb: np.ndarray,
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
    wall_col[at_end] = jitter(rng, (130, 125, 120), 15)
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
    rgb[vg] = jitter(rng, (70, 110, 45), 10)
    return sides, yg


def _ground(N: dict[str, int], st: Street, rng: np.random.Generator, nodes: np.ndarray, rgb: np.ndarray,
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
    rgb[side] = jitter(rng, (165, 160, 150), 10)
    rgb[side & tile] *= 0.8
    for s, (ends, _h, is_veg, _c) in enumerate(sides):
        sel = side & ((X < 0) if s == 0 else (X >= 0)) & (ax > rh + 0.55 * sw)
        b = np.minimum(np.searchsorted(ends, Z[sel]), len(ends) - 1)
        grass = np.zeros_like(sel)
        grass[sel] = is_veg[b]
        nodes[grass] = N["Terrain"]
        rgb[grass] = jitter(rng, (105, 140, 60), 12)
    nodes[road] = N["Road"]
    rgb[road] = jitter(rng, (92, 92, 96), 8)
    return road, X, Z


def _road_markings(N: dict[str, int], st: Street, rng: np.random.Generator, nodes: np.ndarray, rgb: np.ndarray,
                   road: np.ndarray, X: np.ndarray, Z: np.ndarray) -> None:
    """Bike lanes, lane lines, a crossing, manholes and a catch basin, painted on the road only."""
    ax = np.abs(X)
    rh = st.road_half

    def paint(m: np.ndarray, name: str, col: tuple[int, int, int], jit: float = 8) -> None:
        m = m & road
        nodes[m] = N[name]
        rgb[m] = jitter(rng, col, jit)

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
    st = Street(rng, style, width, height)
    cv = _background(world, st, rng)
    N = world.node
    rh = st.road_half
    objects: list[tuple[float, Callable[[], None]]] = []  # (depth, painter) painted far to near

    def add(Z: float, fn: Callable[..., None], *args: object) -> None:  # calls fn(canvas, street, rng, *args, Z)
        objects.append((Z, lambda: fn(cv, st, rng, *args, Z)))

    for _ in range(rng.poisson(3.0)):
        lane = rng.choice([-1.0, 1.0]) * (rh / 2 if rng.random() < 0.7 else rh - 0.9)
        add(rng.uniform(5, 60), obj.car, N, lane + rng.uniform(-0.3, 0.3))
    for _ in range(rng.poisson(2.5)):
        s = -1 if rng.random() < 0.5 else 1
        X = s * (rh + rng.uniform(0.4, st.sw[0 if s < 0 else 1] - 0.3))
        add(rng.uniform(4, 40), obj.person, N["Person"], X)
    for _ in range(rng.choice([0, 0, 1, 2])):
        add(rng.uniform(5, 40), obj.rider, N, rng.choice([-1.0, 1.0]) * (rh - 0.8))
    for _ in range(rng.integers(0, 5)):
        s = -1 if rng.random() < 0.5 else 1
        add(rng.uniform(6, 60), obj.tree, N, s * (rh + st.sw[0 if s < 0 else 1] - 0.6))
    for _ in range(rng.integers(0, 3)):
        add(rng.uniform(8, 50), obj.street_light, N, rng.choice([-1.0, 1.0]) * (rh + 0.3))
    if rng.random() < 0.35:
        add(rng.uniform(10, 40), obj.traffic_light, N, rng.choice([-1.0, 1.0]) * (rh + 0.4))
    if world.layout[dataset] == "idd":  # IDD frames only: other datasets' frames draw nothing more
        obj.idd_objects(world.idd_node, st, rng, add)
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
        p = obj.sign_post(cv, st, rng, world, style, cls, front, taken)
        if p is not None:
            posts.append(p)
    signs = [paint() for _Z, paint in sorted(posts, key=lambda p: -p[0])]

    if style.ego_hood:
        xs = (np.arange(width) + 0.5 - width / 2) / (width / 2)
        hood_top = height * (0.93 + 0.04 * xs ** 2)
        m = (np.arange(height)[:, None] + 0.5) >= hood_top[None, :]
        cv.nodes[m] = N["Ego Vehicle"]
        cv.inst[m] = 0
        cv.rgb[m] = jitter(rng, (40, 42, 48), 6)
    rgb = _finish(cv.rgb, rng, style, cv.nodes == N["Sky"])
    return Scene(cv.nodes, cv.inst, rgb, signs)


def _finish(rgb: np.ndarray, rng: np.random.Generator, style: Style, sky: np.ndarray) -> np.ndarray:
    """Camera look: illumination field, colour cast, saturation, brightness and sensor noise."""
    H, W, _ = rgb.shape
    light = 1.0 + 0.10 * lowfreq(rng, H, W, 16)
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
