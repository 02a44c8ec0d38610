"""The painter's ground: each dataset's camera and look (`Style`), the per-frame random generator, the
canvas a frame is painted on in tree nodes, and the street's geometry that places objects in depth."""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

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


class Canvas:
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


def rect(h: int, w: int) -> np.ndarray:
    return np.ones((max(1, h), max(1, w)), dtype=bool)


def jitter(rng: np.random.Generator, base: tuple[int, int, int], amount: float = 18) -> np.ndarray:
    return np.clip(np.asarray(base, dtype=np.float32) + rng.normal(0, amount, 3), 0, 255)


class Street:
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


def lowfreq(rng: np.random.Generator, H: int, W: int, cells: int = 8) -> np.ndarray:
    """Smooth random field in [-1, 1] (illumination, stains)."""
    g = rng.uniform(0, 255, (max(2, H // cells), max(2, W // cells))).astype(np.uint8)
    return np.asarray(Image.fromarray(g).resize((W, H), Image.BILINEAR), dtype=np.float32) / 127.5 - 1.0
