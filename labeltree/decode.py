"""Pixel decoding for every reader: the ONE place that picks the PNG decoder.

PNG decoding dominates everything downstream (stats, evaluation, training input), so label PNGs go
through the fastest decoder that returns exactly the stored values. `benchmarks/bench_readers.py`
measures PIL, OpenCV and `torchvision.io.decode_png` on 8-bit grey, 8-bit palette and 16-bit label
maps and checks them pixel for pixel against PIL: torchvision (libpng/zlib) is exact for 8/16-bit
grey and palette PNGs (palette files come back as INDICES with ImageReadMode.UNCHANGED) and the
fastest; OpenCV expands palettes to BGR, so it cannot read Vistas labels at all. PNGs torchvision
does not reproduce exactly (1/2/4-bit samples, which it rescales; interlaced files, untested) and
non-PNG files go through PIL. Image headers are read without decoding pixels (`image_size`).
"""

from __future__ import annotations

import struct
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .errors import LabeltreeError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# PNG colour types (IHDR byte 25)
PNG_GREY, PNG_RGB, PNG_PALETTE, PNG_GREY_ALPHA, PNG_RGBA = 0, 2, 3, 4, 6
PNG_COLOUR_NAMES = {PNG_GREY: "greyscale", PNG_RGB: "RGB colour", PNG_PALETTE: "palette", PNG_GREY_ALPHA:
                    "greyscale+alpha", PNG_RGBA: "RGBA colour"}

#: which library decodes label PNGs (see module docstring); "pil" forces the reference decoder
LABEL_DECODER = "torchvision"
# torchvision 0.29 announces that its image codecs move to torchcodec; they still work and are the
# fastest exact decoder here. Silence that one notice (per call it would flood every reader); if a
# future torchvision drops decode_png, `_decode_torchvision` falls back to PIL.
warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities of TorchVision",
                        category=DeprecationWarning)


@dataclass(frozen=True)
class PngHeader:
    width: int
    height: int
    bit_depth: int
    colour_type: int
    interlace: int

    @property
    def description(self) -> str:
        return f"{self.width}x{self.height} {self.bit_depth}-bit {PNG_COLOUR_NAMES.get(self.colour_type, '?')} PNG"

    @property
    def channels(self) -> int:
        return {PNG_GREY: 1, PNG_PALETTE: 1, PNG_GREY_ALPHA: 2, PNG_RGB: 3, PNG_RGBA: 4}.get(self.colour_type, 0)


def png_header(head: bytes, path: str | Path | None = None) -> PngHeader | None:
    """Parse the IHDR chunk from the first 29+ bytes; None when the bytes are no PNG."""
    if not head.startswith(PNG_SIGNATURE):
        return None
    if len(head) < 29 or head[12:16] != b"IHDR":
        raise LabeltreeError("PNG file has no IHDR header: the file is truncated or corrupt", path)
    w, h, depth, ctype, _comp, _filt, interlace = struct.unpack(">IIBBBBB", head[16:29])
    return PngHeader(w, h, depth, ctype, interlace)


def _torchvision_exact(hdr: PngHeader) -> bool:
    return hdr.bit_depth in (8, 16) and hdr.colour_type in (PNG_GREY, PNG_PALETTE) and hdr.interlace == 0


def _decode_torchvision(path: Path) -> np.ndarray:
    try:
        import torch
        from torchvision.io import ImageReadMode, decode_png, read_file
    except ImportError:  # torchvision without image codecs: the reference decoder is always exact
        return _decode_pil(path)

    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore", DeprecationWarning)  # see LABEL_DECODER; pytest resets global filters
        t = decode_png(read_file(str(path)), ImageReadMode.UNCHANGED)
    return t[0].numpy()


def _decode_pil(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        im.load()
        arr = np.asarray(im)
    if arr.dtype == bool:  # 1-bit greyscale: stored samples are 0/1
        arr = arr.astype(np.uint8)
    elif arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return arr


def read_png_header(path: Path) -> PngHeader | None:
    try:
        with open(path, "rb") as f:
            head = f.read(33)
    except FileNotFoundError:
        raise LabeltreeError("file not found", path) from None
    except OSError as e:
        raise LabeltreeError(f"cannot read file ({e})", path) from None
    if not head:
        raise LabeltreeError("file is empty (0 bytes): truncated or corrupt; re-extract it from the dataset", path)
    return png_header(head, path)


def decode_array(path: Path, hdr: PngHeader | None = None, decoder: str | None = None) -> np.ndarray:
    """Decode an image file to its stored sample values (HxW or HxWxC), with the fastest exact decoder.

    Raises LabeltreeError naming the file when it is truncated or corrupt.
    """
    path = Path(path)
    if hdr is None:
        hdr = read_png_header(path)
    decoder = decoder or LABEL_DECODER
    try:
        if hdr is not None and decoder == "torchvision" and _torchvision_exact(hdr):
            return _decode_torchvision(path)
        return _decode_pil(path)
    except LabeltreeError:
        raise
    except (OSError, RuntimeError, ValueError, SyntaxError) as e:
        what = hdr.description if hdr is not None else "image"
        raise LabeltreeError(f"cannot decode {what} ({str(e).strip() or type(e).__name__}): the file is truncated "
                             "or corrupt; re-extract or re-download it", path) from None


def image_size(path: str | Path) -> tuple[int, int]:
    """(height, width) from the file header, without decoding pixels."""
    path = Path(path)
    hdr = read_png_header(path)
    if hdr is not None:
        return hdr.height, hdr.width
    try:
        with Image.open(path) as im:
            w, h = im.size
    except FileNotFoundError:
        raise LabeltreeError("image file not found", path) from None
    except (OSError, SyntaxError, ValueError) as e:
        raise LabeltreeError(f"cannot read image header ({e}): the file is truncated or corrupt", path) from None
    return h, w


def read_rgb(path: str | Path) -> np.ndarray:
    """An image as HxWx3 uint8 RGB (PIL: photos are JPEG/PPM/8-bit PNG, decoded once per use)."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode == "RGB":
                return np.asarray(im)
            return np.asarray(im.convert("RGB"))
    except FileNotFoundError:
        raise LabeltreeError("image file not found", path) from None
    except (OSError, SyntaxError, ValueError) as e:
        raise LabeltreeError(f"cannot decode image ({e}): the file is truncated or corrupt; re-extract it from the "
                             "dataset", path) from None


def change_fraction(arr: np.ndarray) -> float:
    """Share of 4-neighbour pixel pairs whose values differ: ~0.01-0.1 for label maps, >0.5 for photos."""
    a = arr if arr.ndim == 2 else arr.reshape(arr.shape[0], arr.shape[1], -1)
    if a.shape[0] < 2 or a.shape[1] < 2:
        return 0.0
    dx = a[:, 1:] != a[:, :-1]
    dy = a[1:] != a[:-1]
    if a.ndim == 3:
        dx, dy = dx.any(-1), dy.any(-1)
    return (np.count_nonzero(dx) + np.count_nonzero(dy)) / (dx.size + dy.size)


PHOTO_CHANGE = 0.35  # label maps of real datasets stay below ~0.15 even after nearest-neighbour downscaling
