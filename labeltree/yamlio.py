"""Safe YAML loading with file and line in every error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .errors import LabeltreeError


def read_text_file(path: Path, what: str) -> str:
    if not path.exists():
        raise LabeltreeError(f"{what} file not found (searched {path.resolve()})", path)
    if path.is_dir():
        raise LabeltreeError(f"expected a {what} file, found a directory", path)
    data = path.read_bytes()
    if not data.strip():
        raise LabeltreeError(f"{what} file is empty", path)
    if b"\x00" in data[:8192]:
        raise LabeltreeError(f"{what} file is binary, not YAML/text", path)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise LabeltreeError(f"{what} file is not UTF-8 text ({e.reason} at byte {e.start})", path) from None


def load_yaml(path: str | Path, what: str = "YAML") -> Any:
    """yaml.safe_load with a LabeltreeError (file:line) instead of a traceback."""
    path = Path(path)
    text = read_text_file(path, what)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise LabeltreeError(f"YAML syntax error: {problem}", path, line) from None


def dump_yaml(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=120, default_flow_style=None)
