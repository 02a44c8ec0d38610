"""Split lists: `{split}.txt` with one `IMAGE LABEL` line per sample, as mmsegmentation / detectron2-style
training code reads them (whitespace-separated, paths relative to the list's folder).

A path with a space or an odd character is written POSIX-shell quoted (`shlex.quote`), so that
`shlex.split(line)` gives the two paths back; plain paths stay unquoted (`a/b.png c/d.png`). A path
holding a line break (any that str.splitlines splits at) cannot be written in a line-based list and is
refused; a tab or another control character is written quoted.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from labeltree.errors import LabeltreeError


def _field(path: str | Path, base: Path) -> str:
    rel = os.path.relpath(os.path.realpath(path), os.path.realpath(base))  # as the kernel resolves it
    if len(f"x{rel}x".splitlines()) > 1:  # a line break of any kind (\n, \r, \v, \f, \x1c-\x1e, \x85, \u2028-9)
        raise LabeltreeError("this file name holds a line break, which a split list cannot hold; rename the file",
                             path)
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        raise LabeltreeError("this file name is not valid UTF-8, which a split list cannot hold; rename the file",
                             path) from None
    return shlex.quote(rel)


def list_line(image: str | Path, label: str | Path, base: str | Path) -> str:
    """One `IMAGE LABEL` line, both paths relative to `base` (the list's folder), quoted where needed."""
    return f"{_field(image, Path(base))} {_field(label, Path(base))}"


def read_split_list(path: str | Path) -> list[tuple[Path, Path]]:
    """The (image, label) pairs of a split list, as absolute paths."""
    path = Path(path)
    base = path.parent
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        fields = shlex.split(line)
        if len(fields) != 2:
            raise LabeltreeError(f"a split list line holds IMAGE LABEL, this one {len(fields)} field(s)", path, n)
        out.append((base / fields[0], base / fields[1]))
    return out
