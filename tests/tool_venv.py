"""Cached virtual environments that hold an official evaluation tool, for conformance tests.

The official tools pin their own dependencies (cityscapesScripts breaks on numpy 2.4, bdd100k's eval pulls in
scalabel and pins nothing), so each gets its own environment, built once per machine in a temp folder and
renamed into place (two test runs building at once cannot see a half-built one). The first build needs PyPI;
without it the caller skips with the reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CACHE = Path(os.environ.get("LABELTREE_TEST_CACHE", Path.home() / ".cache" / "labeltree-tests"))


def _python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _works(venv: Path, check: str) -> bool:
    py = _python(venv)
    return py.exists() and subprocess.run([str(py), "-c", check], capture_output=True).returncode == 0


def tool_python(venv: Path, requirements: list[str], check: str, what: str, timeout: float = 900) -> Path:
    """The python of the cached environment `venv`, built with `requirements` if `check` fails there;
    raises RuntimeError with the reason (`what` names the tool in it)."""
    if _works(venv, check):
        return _python(venv)
    venv.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{venv.name}-build-", dir=venv.parent))
    try:
        subprocess.run([sys.executable, "-m", "venv", str(tmp)], check=True, capture_output=True, timeout=timeout)
        r = subprocess.run([str(_python(tmp)), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                            *requirements], capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"pip install {' '.join(requirements)} failed: {r.stderr.strip()[-400:]}")
        if not _works(tmp, check):
            raise RuntimeError(f"{what} installed but does not import")
        try:
            os.rename(tmp, venv)  # atomic; fails if another builder got there first
        except OSError:
            if not _works(venv, check):
                raise
        # a venv's scripts name their interpreter by path: use the one at its final place
        return _python(venv)
    except (subprocess.SubprocessError, OSError) as e:
        raise RuntimeError(f"cannot build the {what} environment at {venv}: {e}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
