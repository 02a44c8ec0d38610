"""A cached virtual environment with BDD100K's toolkit (`bdd100k.eval.seg`), for conformance tests.

bdd100k 1.0.1 (PyPI) imports scalabel, pandas, pycocotools and more (~540 MB, ~2 minutes to build once per
machine; tests/tool_venv.py), pinned to numpy < 2 as it was released against. `LABELTREE_BDD100K_VENV` points at
an existing one instead.
"""

from __future__ import annotations

import os
from pathlib import Path

from tool_venv import CACHE, tool_python

REQUIREMENTS = ["bdd100k==1.0.1", "numpy<2"]
VENV = Path(os.environ.get("LABELTREE_BDD100K_VENV", CACHE / "bdd100k-venv"))
CHECK = "import bdd100k.eval.seg"


def bdd100k_python(timeout: float = 900) -> Path:
    """The python of the cached environment, building it if needed; raises RuntimeError with the reason."""
    return tool_python(VENV, REQUIREMENTS, CHECK, "bdd100k", timeout)
