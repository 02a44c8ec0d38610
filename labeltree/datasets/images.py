"""Which files a command that takes IMAGES... reads: files as given, folders searched for photos."""

from __future__ import annotations

from pathlib import Path

from labeltree.errors import LabeltreeError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".ppm", ".bmp", ".tif", ".tiff", ".webp"}


def collect_images(inputs: list[str | Path]) -> list[Path]:
    out: list[Path] = []
    for i in inputs:
        p = Path(i)
        if p.is_dir():
            out.extend(sorted(q for q in p.rglob("*") if q.suffix.lower() in IMAGE_SUFFIXES))
        elif p.exists():
            out.append(p)
        else:
            raise LabeltreeError("input image not found", p)
    if not out:
        raise LabeltreeError(f"no images found in {', '.join(map(str, inputs))}")
    return out
