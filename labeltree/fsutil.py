"""Atomic file output: write to a temp file in the same folder, then rename over the target."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temp path next to `target`; on success rename it onto `target`, else delete it."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text(target: str | Path, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text)


def write_json(target: str | Path, data: Any) -> None:
    write_text(target, json.dumps(data, indent=2) + "\n")


def write_png(target: str | Path, array: np.ndarray, palette: np.ndarray | None = None) -> None:
    """Write a label/image array as PNG atomically (uint16 -> 16-bit grey, uint8 -> 8-bit grey or
    palette when `palette` (N x 3 uint8) is given, HxWx3 -> RGB)."""
    if array.dtype == np.uint16:
        im = Image.fromarray(array)  # mode I;16
    else:
        im = Image.fromarray(np.ascontiguousarray(array))
        if palette is not None:
            im = im.convert("P") if im.mode != "L" else im
            im.putpalette(np.asarray(palette, dtype=np.uint8).reshape(-1).tolist())
    with atomic_path(target) as tmp:
        im.save(tmp, format="PNG")
