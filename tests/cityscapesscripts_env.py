"""A cached virtual environment with cityscapesScripts (numpy < 2.4), for conformance tests.

cityscapesScripts 2.3.0 breaks on numpy 2.4, so it gets its own environment (tests/tool_venv.py: built once
per machine, renamed into place). `LABELTREE_CITYSCAPESSCRIPTS_VENV` points at an existing one instead.
"""

from __future__ import annotations

import os
from pathlib import Path

from tool_venv import CACHE, tool_python

REQUIREMENTS = ["cityscapesscripts", "numpy<2.4"]
VENV = Path(os.environ.get("LABELTREE_CITYSCAPESSCRIPTS_VENV", CACHE / "cityscapesscripts-venv"))
CHECK = "import cityscapesscripts.preparation.json2labelImg, cityscapesscripts.helpers.labels, numpy"


def cityscapesscripts_python(timeout: float = 600) -> Path:
    """The python of the cached environment, building it if needed; raises RuntimeError with the reason."""
    return tool_python(VENV, REQUIREMENTS, CHECK, "cityscapesScripts", timeout)
