"""Training / evaluation scale of a photo and its label: fixed size, or aspect-preserving.

Why: Vistas photos come in many aspect ratios (0.5-25 MP); squeezing them all to one size distorts
every one that is not of that aspect. The paper downsamples "respecting their aspect ratio" and
then crops; the authors scale each photo just enough to cover the crop. Modes (`resize_mode`):
- fixed: exactly `resize` (H, W) (today's default; right for fixed-size datasets);
- cover: the smallest uniform scale at which the photo covers `resize` (H, W): f = max(H/h, W/w);
- short: the photo's shorter side to `resize`'s shorter side: f = min(H, W) / min(h, w).
Sizes are rounded to whole pixels, so the aspect is kept within one pixel.
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np

from labeltree.datasets.resize import resize_pair

ResizeMode = Literal["fixed", "cover", "short"]
RESIZE_MODES: tuple[str, ...] = get_args(ResizeMode)


def scaled_size(size: tuple[int, int], resize: tuple[int, int] | None, mode: str = "fixed") -> tuple[int, int]:
    """(H, W) that a photo of `size` (H, W) is scaled to; `size` itself without `resize`."""
    h, w = int(size[0]), int(size[1])
    if not resize:
        return h, w
    H, W = int(resize[0]), int(resize[1])
    if mode == "fixed":
        return H, W
    if mode == "cover":
        f = max(H / h, W / w)
    elif mode == "short":
        f = min(H, W) / min(h, w)
    else:
        raise ValueError(f"resize_mode must be one of {', '.join(RESIZE_MODES)}, not {mode!r}")
    return max(1, round(h * f)), max(1, round(w * f))


def scale_pair(img: np.ndarray, lab: np.ndarray, resize: tuple[int, int] | None,
               mode: str = "fixed") -> tuple[np.ndarray, np.ndarray]:
    """Photo bilinear, label nearest, to `scaled_size` (unchanged when already there)."""
    size = scaled_size(lab.shape[:2], resize, mode)
    if size == tuple(lab.shape[:2]):
        return img, lab
    return resize_pair(img, lab, size)
