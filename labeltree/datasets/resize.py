"""Resizing photos and label maps, without torch: the one photo resize of training, `predict` and `evaluate`.

Photos: bilinear, antialiased (PIL). Label maps read from files: nearest (PIL). Maps a model predicted
(node ids, dataset ids) are brought to the photo's size with torch's `F.interpolate(mode='nearest')`
indices, so that a map is the same pixel for pixel whether the network ran in PyTorch or ONNX Runtime.
"""

from __future__ import annotations

import numpy as np
from PIL import Image


def resize_photo(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """HxWx3 uint8 -> (H, W) = `size`, bilinear (antialiased)."""
    h, w = size
    return np.asarray(Image.fromarray(img).resize((w, h), Image.BILINEAR))


def resize_label(lab: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A label map of stored values -> `size`, nearest."""
    h, w = size
    return np.asarray(Image.fromarray(lab).resize((w, h), Image.NEAREST))


def resize_pair(img: np.ndarray, lab: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A photo and its label to `size` (H, W): the photo bilinear, the label nearest."""
    return resize_photo(img, size), resize_label(lab, size)


def nearest_resize(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of the last two axes with torch's F.interpolate(mode='nearest') indices
    (src = floor(dst * in / out) in float32), so that label maps match the PyTorch path pixel for pixel."""
    h, w = a.shape[-2:]
    H, W = size
    if (h, w) == (H, W):
        return a

    def idx(n_in: int, n_out: int) -> np.ndarray:
        scale = np.float32(n_in) / np.float32(n_out)
        return np.minimum(np.floor(np.arange(n_out, dtype=np.float32) * scale).astype(np.int64), n_in - 1)

    return a[..., idx(h, H)[:, None], idx(w, W)[None, :]]
