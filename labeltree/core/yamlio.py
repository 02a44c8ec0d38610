"""Safe YAML loading with file and line in every error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from labeltree.errors import LabeltreeError


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


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key: object, line: int, first: int):
        super().__init__(f"key {key!r} appears twice in one mapping (lines {first} and {line})")
        self.problem = str(self)
        self.problem_mark = type("Mark", (), {"line": line - 1})()


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys: YAML would silently keep the last one, which
    turns 'a class mapped twice' into a silent remapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[object, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                continue  # SafeLoader reports unhashable keys itself
            line = key_node.start_mark.line + 1
            if key in seen:
                raise _DuplicateKey(key, line, seen[key])
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str, path: str | Path | None = None) -> Any:
    """Parse YAML text safely (no duplicate keys) with a LabeltreeError (file:line) on bad syntax."""
    try:
        return yaml.load(text, Loader=StrictLoader)  # noqa: S506 - StrictLoader is a SafeLoader
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        kind = "YAML error" if isinstance(e, _DuplicateKey) else "YAML syntax error"
        raise LabeltreeError(f"{kind}: {problem}", path, line) from None


def load_yaml(path: str | Path, what: str = "YAML") -> Any:
    """yaml.safe_load with a LabeltreeError (file:line) instead of a traceback."""
    path = Path(path)
    return parse_yaml(read_text_file(path, what), path)


def line_of(path: str | Path | None, *keys: str | int) -> int | None:
    """1-based line of the node at `keys` (mapping keys / sequence indices) in a YAML file, if known.

    Used only to point error messages into the file; any failure gives None.
    """
    if path is None:
        return None
    try:
        node = yaml.compose(Path(path).read_text(), Loader=yaml.SafeLoader)
        line = node.start_mark.line + 1 if node is not None else None
        for k in keys:
            if isinstance(node, yaml.MappingNode):
                nxt = None
                for kn, vn in node.value:
                    if kn.value == str(k):
                        nxt, line = vn, kn.start_mark.line + 1
                        break
                if nxt is None:
                    return line
                node = nxt
            elif isinstance(node, yaml.SequenceNode) and isinstance(k, int) and k < len(node.value):
                node = node.value[k]
                line = node.start_mark.line + 1
            else:
                return line
        return line
    except Exception:  # noqa: BLE001 - only a hint for a message
        return None


def dump_yaml(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=120, default_flow_style=None)
