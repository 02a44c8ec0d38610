"""Builders of tiny datasets in their native layouts, shared by the tests (one PNG writer, one reader).

Paths come from the layout modules (`labeltree.datasets.cityscapes`, ...), so a test frame lies exactly
where the reader looks for it.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from labeltree.datasets import cityscapes


def save_png(path: Path, arr: np.ndarray, palette: bool | np.ndarray = False, mode: str | None = None) -> Path:
    """Write `arr` as a PNG (uint16 -> 16-bit grey), creating folders. `palette=True` stores an 8-bit
    palette image with a seeded random palette (palette indices are what a reader must return), an
    (N, 3) array stores that palette."""
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(arr, mode=mode) if mode else Image.fromarray(arr)
    if palette is not False:
        im = im.convert("P")
        colours = np.random.default_rng(0).integers(0, 256, 768) if palette is True else np.asarray(palette)
        im.putpalette(list(np.asarray(colours, dtype=np.int64).reshape(-1)))
    im.save(path)
    return path


def read_png(source: Path | bytes) -> np.ndarray:
    """A PNG file (or its bytes) as the array of its stored values."""
    with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as im:
        return np.asarray(im)


def cityscapes_key(city: str, seq: int, frame: int = 19) -> str:
    return f"{city}_{seq:06d}_{frame:06d}"


def cityscapes_frame(root: Path, split: str, city: str, seq: int, label: np.ndarray, image: np.ndarray | None = None,
                     instances: np.ndarray | None = None) -> str:
    """One Cityscapes frame: gtFine labelIds (and instanceIds, leftImg8bit photo where given); returns its key."""
    key = cityscapes_key(city, seq)
    save_png(cityscapes.label_path(root, split, city, key), label)
    if instances is not None:
        save_png(cityscapes.instance_path(root, split, city, key), instances.astype(np.uint16))
    if image is not None:
        save_png(cityscapes.image_path(root, split, city, key), image)
    return key


def run_cli(*args: Any, code: int = 0) -> str:
    """`labeltree ARGS` in-process: its output, after checking the exit status and that no traceback leaked."""
    from click.testing import CliRunner

    from labeltree.cli import main

    res = CliRunner().invoke(main, [str(a) for a in args])
    assert res.exit_code == code, res.output
    assert "Traceback" not in res.output
    return res.output


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """torch on one thread: an oversubscribed OpenMP pool slows torch many times over on a busy 2-core machine."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)
