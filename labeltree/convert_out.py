"""Where a conversion's outputs go and what OUT may be (`labeltree convert`).

The converted labels take the target layout's own paths (the layout modules' path functions); OUT is
adopted only when it is new, empty, or this command's own earlier output of the same conversion (its
manifest); every output must lie inside OUT, once, and on no input file. `conv` below is a
`labeltree.convert.Conversion` (typed loosely: that module imports this one).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from labeltree.datasets import Sample
from labeltree.datasets import bdd100k as bdd_layout
from labeltree.datasets import cityscapes as cs_layout
from labeltree.datasets import gtsdb as gtsdb_layout
from labeltree.datasets import idd as idd_layout
from labeltree.datasets import vistas as vistas_layout
from labeltree.errors import LabeltreeError
from labeltree.fsutil import MAX_TEXT_BYTES, read_input

MANIFEST = "labeltree-convert.json"  # settings of the conversion that wrote OUT (a rerun must match them)
_CITY_OK = re.compile(r"[^A-Za-z0-9]+")


def output_path(out: Path, conv: Any, s: Sample, index: int) -> Path:
    """The converted label's path in the target's layout."""
    t = conv.target
    if t.kind == "tree":
        return tree_label_path(out, s.split, s.key, t.level)
    if conv.layout == "cityscapes":
        city, key = s.city, s.key
        if city is None or cs_layout.CityscapesReader.prediction_key(Path(key)) != key:
            # a frame from another layout: a Cityscapes-style key {city}_{seq:06}_{frame:06}
            city = _CITY_OK.sub("", conv.source) or "frames"
            seq = int(s.key) if s.key.isdigit() and int(s.key) < 10**6 else index
            key = f"{city}_{seq:06d}_000000"
        if t.kind == "trainids":
            return cs_layout.train_label_path(out, s.split, city, key)
        return cs_layout.label_path(out, s.split, city, key)
    if conv.layout == "bdd100k":  # its masks store train ids: native and trainids write the same files
        return bdd_layout.label_path(out, s.split, s.key)
    if conv.layout == "idd":
        seq, frame = idd_place(conv, s, index)
        if t.kind == "trainids":
            return idd_layout.train_label_path(out, s.split, seq, frame)
        return idd_layout.label_path(out, s.split, seq, frame, conv.column or idd_layout.DEFAULT_COLUMN)
    if conv.layout == "vistas":
        if t.kind == "trainids":
            return vistas_layout.train_label_path(out, s.split, s.key)
        return vistas_layout.label_path(out, s.split, s.key)
    if t.kind == "trainids":
        return gtsdb_layout.train_mask_path(out, s.key)
    return gtsdb_layout.mask_path(out, s.key)


def idd_place(conv: Any, s: Sample, index: int) -> tuple[str, str]:
    """(sequence, frame) of a sample in the IDD layout: its own for an IDD sample; else the sample's
    city (or the source dataset's name) as the sequence and its key's letters and digits as the frame
    (Cityscapes aachen_000003_000019 -> aachen/000003000019), the index where none are left."""
    seq = _CITY_OK.sub("", s.city or "") or _CITY_OK.sub("", conv.source) or "frames"
    rest = s.key.removeprefix(f"{s.city}_") if s.city else s.key
    if s.city is not None and rest != s.key and getattr(conv, "source_layout", "") == "idd":
        return s.city, rest  # an IDD sample keeps its names ('seq 2', '000_102'): {seq}_{frame}
    return seq, _CITY_OK.sub("", rest) or f"{index:06d}"


def tree_label_path(out: Path, split: str, key: str, level: int | None = None) -> Path:
    """A 16-bit tree-node map: `tree[-L{level}]/{split}/{key}.png`."""
    return Path(out) / ("tree" if level is None else f"tree-L{level}") / split / f"{key}.png"


def inside(a: Path, b: Path) -> bool:
    a, b = a.resolve(), b.resolve()
    return a == b or b in a.parents


def adopt_out(out: Path, signature: dict[str, Any], force: bool) -> None:
    """OUT may be new, empty, or this command's own earlier output of the same conversion (its manifest);
    any other folder (a user's files, another conversion) is replaced only with --force."""
    if out.exists() and not out.is_dir():
        raise LabeltreeError("OUT must be a folder, but a file is there; choose another path", out)
    if force or not out.exists():
        return
    manifest = out / MANIFEST
    if not manifest.exists():
        if any(out.iterdir()):
            raise LabeltreeError(f"OUT exists and is no earlier `labeltree convert` output (no {MANIFEST}); pass "
                                 "--force to write into it (files of the same names are replaced), or choose a "
                                 "new or empty folder", out)
        return
    try:
        before = json.loads(read_input(manifest, "convert manifest", MAX_TEXT_BYTES))
    except (LabeltreeError, ValueError):
        before = None
    if before != signature:
        raise LabeltreeError(f"{out} holds labels of another conversion (see {MANIFEST}); pass --force to "
                             "replace them, or pick another OUT", manifest)


def check_out_paths(out: Path, paths: list[Path], inputs: list[Path]) -> None:
    """Every output lies inside OUT, once, and on no input file (overrides, gt.txt, tree, taxonomy)."""
    top = out.resolve()
    for p in paths:
        if not p.resolve().is_relative_to(top):
            raise LabeltreeError(f"this output would lie outside OUT {out}; check --split and the dataset's file "
                                 "names", p)
    if len(set(paths)) != len(paths):
        raise LabeltreeError("two samples would be written to the same output file; convert one split at a time "
                             "(--split)", out)
    sources = {os.path.realpath(i) for i in inputs}
    for p in paths:
        if os.path.realpath(p) in sources:
            raise LabeltreeError("this output would replace an input of the command (no command writes over its "
                                 "inputs); choose another OUT", p)
