"""The choices and defaults that options offer, shared by the library and the command line.

Import-free on purpose: the command line declares every option from these at start-up, and
`labeltree --help` or `labeltree tree` must not load numpy, pydantic or the dataset readers to do so.
The library modules that own each notion import their constant from here (boxmask: MODES, ...).
"""

from __future__ import annotations

from typing import Literal, get_args

#: the paper's tree, used where a command needs a tree and none is given or implied
DEFAULT_TREE = "cityscapes+vistas+gtsdb"

#: GTSDB boxes as pixels: the sign's shape inscribed in its box (the paper's), or the filled box
MaskMode = Literal["fine", "coarse"]
MODES: tuple[str, ...] = get_args(MaskMode)
DEFAULT_MASK_MODE: MaskMode = "fine"
#: gtsdb-masks files: 16-bit (0 = unlabeled, 2000 + ClassID) or 8-bit (ClassID, 255 = unlabeled)
MaskEncoding = Literal["16bit", "8bit"]
ENCODINGS: tuple[str, ...] = get_args(MaskEncoding)
#: gtsdb-masks rasterisers: exact shapes, or the authors' released masks reproduced
STYLES: tuple[str, ...] = ("clean", "authors")
DEFAULT_STYLE = "clean"

#: label values a taxonomy does not define: stop, or read them as the ignore value
UNKNOWN_CHOICES: tuple[str, ...] = ("error", "ignore")

#: the paper's rule: a class is evaluated when it has >= this many gt pixels (docs/design.md §2.6)
DEFAULT_MIN_PIXELS = 1000

#: the dataset file layouts the readers know (datasets/registry.py LAYOUTS is keyed by exactly these)
LAYOUT_NAMES: tuple[str, ...] = ("bdd100k", "cityscapes", "gtsdb", "idd", "vistas")

#: synth: signs per GTSDB frame (lo, hi), in frames that have signs
GTSDB_SIGNS: tuple[int, int] = (1, 3)
