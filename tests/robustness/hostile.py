"""Helpers for the robustness tests: hostile files and the one assertion every refusal must pass."""

from __future__ import annotations

import re
import struct
import zlib
from pathlib import Path

import numpy as np
from builders import save_png
from click.testing import CliRunner, Result

from labeltree.cli import main


def _content(p: Path) -> bytes:
    st = p.stat()
    if st.st_size > 64 << 20:  # a hostile giant (sparse): its size, time and first bytes stand for it
        with open(p, "rb") as f:
            return f"{st.st_size} {st.st_mtime_ns}".encode() + f.read(1 << 16)
    return p.read_bytes()


def snapshot(root: Path) -> dict[str, bytes]:
    """Every regular file under `root` with its bytes (a new, changed or removed file shows up)."""
    return {str(p.relative_to(root)): _content(p) for p in sorted(root.rglob("*"))
            if p.is_file() and not p.is_symlink()}


def invoke(args: list, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args], env=env)


def refused(args: list, root: Path, *needles: str, usage: bool = False, env: dict[str, str] | None = None) -> str:
    """Run the CLI in-process; assert exit 2, one error line holding `needles`, no traceback, and every
    file under `root` byte-identical afterwards (nothing written, nothing replaced). Returns the line.

    `usage`: a click usage error (its 'Usage:' lines, then one 'Error:' line) instead of labeltree's one line.
    """
    before = snapshot(root)
    res = invoke(args, env)
    assert res.exit_code == 2, (res.exit_code, res.output, res.exception)
    assert isinstance(res.exception, SystemExit), res.exception
    assert "Traceback" not in res.output
    # progress bars (tqdm: '\r'-separated, '%|') may precede the message; the message itself is one line
    lines = [ln for ln in re.split(r"[\r\n]", res.stderr) if ln.strip() and "%|" not in ln]
    if usage:
        assert lines and lines[-1].startswith("Error:"), res.stderr
    else:
        assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    for n in needles:
        assert n in lines[-1], (n, lines[-1])
    assert snapshot(root) == before, "a pre-existing file was changed, or a new one written"
    return lines[-1]


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bytes(width: int, height: int, raw: bytes, depth: int = 8, colour: int = 0,
              zdata: bytes | None = None) -> bytes:
    """A PNG with valid chunks and CRCs around `raw` (filter byte + samples per row), however short or wrong."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(raw) if zdata is None
                                                                   else zdata) + _chunk(b"IEND", b""))


def rows(width: int, n: int, channels: int = 1, depth: int = 8, filt: int = 0, value: int = 7) -> bytes:
    row = bytes([filt]) + bytes([value]) * (width * channels * depth // 8)
    return row * n


def short_png(width: int = 16, height: int = 8, have: int = 3, channels: int = 1, colour: int = 0,
              depth: int = 8) -> bytes:
    """IDAT holds `have` of `height` rows: libpng says 'Not enough image data' (torchvision then segfaults)."""
    return png_bytes(width, height, rows(width, have, channels, depth), depth, colour)


def png(path: Path, arr: np.ndarray) -> Path:
    return save_png(path, arr)


CS_KEY = "aachen_000000_000019"


def cs_root(root: Path, split: str = "train", city: str = "aachen", label: bytes | None = None,
            photo: bytes | None = None, key: str = CS_KEY) -> Path:
    """A one-frame Cityscapes tree; `label` / `photo` replace the good files with these bytes."""
    lab = root / "gtFine" / split / city / f"{key}_gtFine_labelIds.png"
    img = root / "leftImg8bit" / split / city / f"{key}_leftImg8bit.png"
    png(lab, np.full((8, 16), 7, np.uint8))
    png(img, np.full((8, 16, 3), 90, np.uint8))
    if label is not None:
        lab.write_bytes(label)
    if photo is not None:
        img.write_bytes(photo)
    return root
