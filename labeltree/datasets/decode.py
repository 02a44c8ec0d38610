"""Pixel decoding for every reader: the ONE place that picks the PNG decoder.

PNG decoding dominates everything downstream (stats, evaluation, training input), so label PNGs go
through the fastest decoder that returns exactly the stored values, chosen per format by
measurement (`benchmarks/bench_readers.py`; 2048x1024 label maps, this machine):
- 8-bit greyscale (Cityscapes labelIds, predictions): pyspng (libspng), ~26 ms against PIL's ~41 ms,
  exact, and no torch import (torchvision's decode_png costs 3-7 s of start-up for ~10% more speed);
- 8-bit palette (Vistas): PIL, ~17 ms; it returns the INDICES (pyspng and OpenCV expand palettes to
  colours, so they cannot read Vistas labels at all);
- 16-bit greyscale (instance ids, GTSDB masks): PIL, ~52 ms (pyspng 0.1.4 returns grey+alpha for
  them and is no faster);
- everything else (1/2/4-bit samples, interlaced files, non-PNG): PIL.
LABELTREE_PNG_DECODER=pil forces PIL everywhere; =torchvision restores the old torchvision path for
8/16-bit grey and palette files. Image headers are read without decoding pixels (`image_size`).
"""

from __future__ import annotations

import importlib.util
import io
import os
import struct
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from labeltree.errors import LabeltreeError
from labeltree.fsutil import MAX_IMAGE_BYTES, check_input, read_input

try:  # same results as zlib, ~1.6x faster inflate (benchmarks/bench_png_check.py)
    from isal import isal_zlib as _inflate
except ImportError:  # pragma: no cover - isal is a dependency; zlib is the fallback
    _inflate = zlib  # type: ignore[misc]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# PNG colour types (IHDR byte 25)
PNG_GREY, PNG_RGB, PNG_PALETTE, PNG_GREY_ALPHA, PNG_RGBA = 0, 2, 3, 4, 6
PNG_COLOUR_NAMES = {PNG_GREY: "greyscale", PNG_RGB: "RGB colour", PNG_PALETTE: "palette", PNG_GREY_ALPHA:
                    "greyscale+alpha", PNG_RGBA: "RGBA colour"}

#: which library decodes label PNGs (see module docstring): auto (per format), pil, torchvision
LABEL_DECODER = os.environ.get("LABELTREE_PNG_DECODER", "auto").strip().lower() or "auto"
_HAVE_TORCHVISION = importlib.util.find_spec("torchvision") is not None
_HAVE_PYSPNG = importlib.util.find_spec("pyspng") is not None
# torchvision 0.29 announces that its image codecs move to torchcodec; they still work and are the
# fastest exact decoder here. Silence that one notice (per call it would flood every reader).
# check_pixels bounds every image this package decodes, below PIL's own bomb limit: PIL's warning is noise
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
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


#: images with more pixels are refused before decoding (a forged header would otherwise allocate gigabytes);
#: 80 Mpx holds every frame of the datasets here (Vistas' largest ~ 25 Mpx). LABELTREE_MAX_PIXELS overrides.
MAX_PIXELS = int(os.environ.get("LABELTREE_MAX_PIXELS", "80000000"))


def check_pixels(width: int, height: int, path: str | Path | None = None) -> None:
    """Refuse empty images and images above MAX_PIXELS, from their header, before any pixel is decoded."""
    if width <= 0 or height <= 0:
        raise LabeltreeError(f"image header says {width}x{height} pixels: the file is corrupt", path)
    if width * height > MAX_PIXELS:
        raise LabeltreeError(f"image header says {width}x{height} pixels, more than the {MAX_PIXELS} this tool "
                             "decodes (a corrupt or forged header?); set LABELTREE_MAX_PIXELS to allow it", path)


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


def _row_bytes(hdr: PngHeader) -> int:
    return (hdr.width * hdr.channels * hdr.bit_depth + 7) // 8


def check_png_pixels(idat: bytes, hdr: PngHeader, path: str | Path | None = None) -> None:
    """Inflate the image data of a non-interlaced PNG and check it holds every row with a valid filter byte.

    libpng (inside torchvision) kills the process on "Not enough image data" or a bad filter byte
    although every chunk and CRC is intact (a broken writer); this check raises first, naming the file.
    """
    stride = 1 + _row_bytes(hdr)
    need = hdr.height * stride
    try:
        if len(idat) * 1032 <= 4 * need + (1 << 20):  # deflate expands <= 1032x: no bomb; one buffer is faster
            raw = _inflate.decompress(idat, bufsize=need)
        else:  # could inflate to far more than the rows: stop at what the rows need
            raw = zlib.decompressobj().decompress(idat, need)
    except (zlib.error, _inflate.error) as e:
        raise LabeltreeError(f"PNG image data cannot be inflated ({e}): the file is corrupt; re-extract or "
                             "re-download it", path) from None
    if len(raw) < need:
        raise LabeltreeError(f"PNG image data holds {len(raw) // stride} of {hdr.height} rows "
                             f"({len(raw)} of {need} bytes): the file is truncated or corrupt; re-extract or "
                             "re-download it", path)
    filters = np.frombuffer(raw, dtype=np.uint8)[::stride]
    if filters.size and int(filters.max()) > 4:
        row = int(np.argmax(filters > 4))
        raise LabeltreeError(f"PNG row {row} has filter type {int(filters[row])} (valid: 0-4): the file is corrupt",
                             path)


def check_png_chunks(data: bytes, path: str | Path | None = None, hdr: PngHeader | None = None,
                     pixels: bool = True) -> None:
    """Walk the chunk list: every chunk complete with a matching CRC-32, IDAT present, IEND reached.

    torchvision's decode_png (0.29) crashes the process (SIGSEGV) on any libpng error after the
    header, so files go to it only after this check (~0.1 ms for a 2048x1024 label map), which
    catches truncation and bit rot with the file name in the message. PNGs whose chunks are intact
    but whose compressed pixel data is inconsistent (a broken writer) can still reach libpng: set
    LABELTREE_PNG_DECODER=pil to decode everything with PIL, which raises instead. `pixels=False` skips
    inflating the image data (`check_png_pixels`) for a decoder that refuses bad data itself (libspng).
    """
    view = memoryview(data)
    pos, n, idat = 8, len(data), False
    parts: list[memoryview] = []
    while True:
        if pos + 12 > n:
            raise LabeltreeError(f"PNG ends after {n} bytes in the middle of its chunk list (no IEND chunk): the file "
                                 "is truncated; re-extract or re-download it", path)
        length = int.from_bytes(view[pos:pos + 4], "big")
        ctype = bytes(view[pos + 4:pos + 8])
        end = pos + 8 + length
        if end + 4 > n:
            raise LabeltreeError(f"PNG chunk {ctype!r} at byte {pos} needs {length} bytes but the file ends after "
                                 f"{n}: the file is truncated; re-extract or re-download it", path)
        if zlib.crc32(view[pos + 4:end]) != int.from_bytes(view[end:end + 4], "big"):
            raise LabeltreeError(f"PNG chunk {ctype!r} at byte {pos} fails its CRC check: the file is corrupt; "
                                 "re-extract or re-download it", path)
        if ctype == b"IDAT":
            idat = True
            parts.append(view[pos + 8:end])
        if ctype == b"IEND":
            break
        pos = end + 4
    if not idat:
        raise LabeltreeError("PNG has no image data (IDAT chunk): the file is corrupt", path)
    if pixels and hdr is not None and hdr.interlace == 0:
        check_png_pixels(b"".join(parts), hdr, path)


def _decode_torchvision(data: bytes) -> np.ndarray:
    import torch
    from torchvision.io import ImageReadMode, decode_png

    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore", DeprecationWarning)  # see LABEL_DECODER; pytest resets global filters
        t = decode_png(torch.frombuffer(bytearray(data), dtype=torch.uint8), ImageReadMode.UNCHANGED)
    return t[0].numpy()


def _pyspng_exact(hdr: PngHeader) -> bool:
    return hdr.bit_depth == 8 and hdr.colour_type == PNG_GREY and hdr.interlace == 0


def _decode_pyspng(data: bytes) -> np.ndarray:
    import pyspng

    return pyspng.load(data)


def _decode_pil(source: Path | bytes, path: str | Path | None = None) -> np.ndarray:
    with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as im:
        check_pixels(*im.size, path)
        im.load()
        arr = np.asarray(im)
    if arr.dtype == bool:  # 1-bit greyscale: stored samples are 0/1
        arr = arr.astype(np.uint8)
    elif arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return arr


def _read(path: Path, size: int = -1) -> bytes:
    """An image file's bytes (the first `size`): a regular file of sane size (fsutil.read_input), never a
    FIFO, a device or a sparse giant read until memory runs out."""
    try:
        data = read_input(path, "image", MAX_IMAGE_BYTES, size)
    except FileNotFoundError:
        raise LabeltreeError("file not found", path) from None
    if not data:
        raise LabeltreeError("file is empty (0 bytes): truncated or corrupt; re-extract it from the dataset", path)
    return data


def read_png_header(path: Path) -> PngHeader | None:
    """The IHDR of a PNG file (reads 33 bytes); None when the file is no PNG."""
    return png_header(_read(path, 33), path)


def read_file_and_header(path: Path) -> tuple[bytes, PngHeader | None]:
    """The whole file (decoded from memory afterwards: one read per file) and its PNG header."""
    data = _read(path)
    return data, png_header(data[:33], path)


def decode_array(path: Path, hdr: PngHeader | None = None, decoder: str | None = None,
                 data: bytes | None = None) -> np.ndarray:
    """Decode an image file to its stored sample values (HxW or HxWxC), with the fastest exact decoder.

    `data` are the file's bytes when the caller has read them already. Raises LabeltreeError naming
    the file when it is truncated or corrupt.
    """
    path = Path(path)
    if data is None:
        data, hdr = read_file_and_header(path)
    elif hdr is None:
        hdr = png_header(data[:33], path)
    decoder = decoder or LABEL_DECODER
    try:
        spng = hdr is not None and decoder == "auto" and _pyspng_exact(hdr) and _HAVE_PYSPNG
        if hdr is not None:  # PIL pads missing rows silently and libpng segfaults on them: check every PNG
            check_pixels(hdr.width, hdr.height, path)
            check_png_chunks(data, path, hdr, pixels=not spng)  # libspng refuses short or bad rows itself
        if spng:
            try:
                return _decode_pyspng(data)
            except RuntimeError:  # say what is wrong as the pixel check says it (rows, filter bytes, zlib)
                check_png_chunks(data, path, hdr)
                raise
        if hdr is not None and decoder == "torchvision" and _torchvision_exact(hdr) and _HAVE_TORCHVISION:
            return _decode_torchvision(data)
        return _decode_pil(data, path)
    except LabeltreeError:
        raise
    except (OSError, RuntimeError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        what = hdr.description if hdr is not None else "image"
        raise LabeltreeError(f"cannot decode {what} ({str(e).strip() or type(e).__name__}): the file is truncated "
                             "or corrupt; re-extract or re-download it", path) from None


def image_size(path: str | Path) -> tuple[int, int]:
    """(height, width) from the file header, without decoding pixels."""
    path = Path(path)
    hdr = read_png_header(path)
    if hdr is not None:
        check_pixels(hdr.width, hdr.height, path)
        return hdr.height, hdr.width
    try:
        with Image.open(check_input(path, "image")) as im:  # a regular file (read_png_header checked it too)
            w, h = im.size
    except FileNotFoundError:
        raise LabeltreeError("image file not found", path) from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise LabeltreeError(f"cannot read image header ({e}): the file is truncated or corrupt", path) from None
    check_pixels(w, h, path)
    return h, w


def read_rgb(path: str | Path) -> np.ndarray:
    """An image as a writable HxWx3 uint8 RGB array (PIL: photos are JPEG/PPM/8-bit PNG, decoded once per
    use). Writable so that torch.from_numpy can take it as is; np.array costs ~0.6 ms more than
    np.asarray on 2 Mpx, against ~30 ms of JPEG decoding."""
    path = Path(path)
    data, hdr = read_file_and_header(path)
    if hdr is not None:  # PIL pads a PNG whose image data ends early without a word: check it (~ +50% time)
        check_pixels(hdr.width, hdr.height, path)
        check_png_chunks(data, path, hdr)
    try:
        with Image.open(io.BytesIO(data)) as im:
            check_pixels(*im.size, path)
            im.load()
            return np.array(im if im.mode == "RGB" else im.convert("RGB"))
    except FileNotFoundError:
        raise LabeltreeError("image file not found", path) from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
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
