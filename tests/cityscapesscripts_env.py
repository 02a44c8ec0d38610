"""A cached virtual environment with cityscapesScripts (numpy < 2.4), for conformance tests.

cityscapesScripts 2.3.0 breaks on numpy 2.4, so it gets its own environment, built once per machine
in a temp folder and renamed into place (two test runs building at once cannot see a half-built one).
`LABELTREE_CITYSCAPESSCRIPTS_VENV` points at an existing one instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REQUIREMENTS = ["cityscapesscripts", "numpy<2.4"]
CACHE = Path(os.environ.get("LABELTREE_TEST_CACHE", Path.home() / ".cache" / "labeltree-tests"))
VENV = Path(os.environ.get("LABELTREE_CITYSCAPESSCRIPTS_VENV", CACHE / "cityscapesscripts-venv"))
CHECK = "import cityscapesscripts.preparation.json2labelImg, cityscapesscripts.helpers.labels, numpy"


def _python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _works(venv: Path) -> bool:
    py = _python(venv)
    return py.exists() and subprocess.run([str(py), "-c", CHECK], capture_output=True).returncode == 0


def cityscapesscripts_python(timeout: float = 600) -> Path:
    """The python of the cached environment, building it if needed; raises RuntimeError with the reason."""
    if _works(VENV):
        return _python(VENV)
    VENV.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{VENV.name}-build-", dir=VENV.parent))
    try:
        subprocess.run([sys.executable, "-m", "venv", str(tmp)], check=True, capture_output=True, timeout=timeout)
        r = subprocess.run([str(_python(tmp)), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                            *REQUIREMENTS], capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"pip install {' '.join(REQUIREMENTS)} failed: {r.stderr.strip()[-400:]}")
        if not _works(tmp):
            raise RuntimeError("cityscapesscripts installed but does not import")
        try:
            os.rename(tmp, VENV)  # atomic; fails if another builder got there first
        except OSError:
            if not _works(VENV):
                raise
        # a venv's scripts name their interpreter by path: use the one at its final place
        return _python(VENV)
    except (subprocess.SubprocessError, OSError) as e:
        raise RuntimeError(f"cannot build the cityscapesScripts environment at {VENV}: {e}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
