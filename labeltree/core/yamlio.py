"""The one YAML loader of every file kind (taxonomy, tree, training config, demo settings, overrides):
safe, duplicate keys refused, nesting bounded, and every error one line with file and line.

`load_model` / `check_model` validate the loaded data with a pydantic model and turn its first error
into the same kind of line (the file, the line of the offending key, what was expected).
"""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError, ValidationInfo, field_validator

from labeltree.errors import LabeltreeError
from labeltree.fsutil import MAX_TEXT_BYTES, read_input

# Deeper than any real file (a tree of 32 levels is ~66 YAML levels); a bound keeps hostile nesting,
# direct or through aliases, from becoming a RecursionError anywhere downstream.
MAX_DEPTH = 100

M = TypeVar("M", bound=BaseModel)


class NoBoolNumbers(BaseModel):
    """A settings model whose numbers refuse YAML true / false (pydantic reads `steps: true` as 1, `[0, true]`
    as [0, 1.0]): a typo or a wrong key's value, never a number someone meant."""

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_number(cls, v: Any, info: ValidationInfo) -> Any:
        items = v if isinstance(v, list | tuple) else [v]
        if any(isinstance(x, bool) for x in items) and _numeric(cls.model_fields[info.field_name].annotation):
            raise ValueError("expected a number, not true / false")
        return v


def _numeric(annotation: Any) -> bool:
    """Does the field hold numbers (int / float, alone or in a list, tuple or union) and never a bool?"""
    args = typing.get_args(annotation)
    if annotation in (bool, Any) or any(a in (bool, Any) for a in args):
        return False
    return annotation in (int, float) or any(_numeric(a) for a in args)

def read_text_file(path: Path, what: str) -> str:
    if not path.exists():
        raise LabeltreeError(f"{what} file not found (searched {path.resolve()})", path)
    data = read_input(path, what, MAX_TEXT_BYTES)  # a FIFO, a device, a giant: one line, never a hang
    if not data.strip():
        raise LabeltreeError(f"{what} file is empty", path)
    if b"\x00" in data[:8192]:
        raise LabeltreeError(f"{what} file is binary, not YAML/text", path)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise LabeltreeError(f"{what} file is not UTF-8 text ({e.reason} at byte {e.start})", path) from None


class _Refused(yaml.YAMLError):
    """A well-formed document this loader refuses (duplicate key, too deep), at a line."""

    def __init__(self, message: str, line: int):
        super().__init__(message)
        self.problem = message
        self.problem_mark = type("Mark", (), {"line": line - 1})()


class _NoDuplicates:
    """Refuse duplicate mapping keys: YAML would silently keep the last one, which turns 'a class mapped
    twice' into a silent remapping and `train: {steps: 10, steps: 20}` into 20 steps."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[object, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)  # type: ignore[attr-defined]
            try:
                hash(key)
            except TypeError:
                continue  # SafeLoader reports unhashable keys itself
            line = key_node.start_mark.line + 1
            if key in seen:
                raise _Refused(f"key {key!r} appears twice in one mapping (lines {seen[key]} and {line})", line)
            seen[key] = line
        return super().construct_mapping(node, deep=deep)  # type: ignore[misc]


class StrictLoader(_NoDuplicates, yaml.SafeLoader):
    """The loader of every user file: safe, no duplicate keys, nesting bounded by MAX_DEPTH (the
    composer recurses per level; aliases can multiply depth)."""

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                line = self.peek_event().start_mark.line + 1
                raise _Refused(f"nested more than {MAX_DEPTH} levels deep", line)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def get_single_node(self) -> yaml.Node | None:
        node = super().get_single_node()
        if node is not None:
            _check_height(node)
        return node


# Files shipped with labeltree (trusted, small): libyaml's parser where it is there (several times faster),
# the same duplicate-key rule.
_BundledLoader = type("_BundledLoader", (_NoDuplicates, getattr(yaml, "CSafeLoader", yaml.SafeLoader)), {})


def _check_height(root: yaml.Node) -> None:
    """Refuse data nested deeper than MAX_DEPTH once aliases are followed (an alias repeats a whole
    anchored node, so ten aliases of a 90-level node make 900 levels). Iterative; an alias back into
    its own anchor (a cycle) counts once and is left to the reader of the data to name."""
    height: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    open_: set[int] = set()
    while stack:
        node, done = stack.pop()
        kids = _children(node)
        if done:
            open_.discard(id(node))
            height[id(node)] = 1 + max((height.get(id(k), 0) for k in kids), default=0)
            if height[id(node)] > MAX_DEPTH:
                raise _Refused(f"nested more than {MAX_DEPTH} levels deep (through aliases)",
                               node.start_mark.line + 1)
            continue
        if id(node) in height or id(node) in open_:
            continue
        open_.add(id(node))
        stack.append((node, True))
        stack.extend((k, False) for k in kids if id(k) not in height and id(k) not in open_)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for kv in node.value for n in kv]
    return []


def parse_yaml(text: str, path: str | Path | None = None) -> Any:
    """Parse YAML text safely (no duplicate keys, bounded nesting) with a LabeltreeError (file:line)."""
    try:
        return yaml.load(text, Loader=StrictLoader)  # noqa: S506 - StrictLoader is a SafeLoader
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        kind = "YAML error" if isinstance(e, _Refused) else "YAML syntax error"
        raise LabeltreeError(f"{kind}: {problem}", path, line) from None


def load_yaml(path: str | Path, what: str = "YAML") -> Any:
    """A YAML file through StrictLoader, with a LabeltreeError (file:line) instead of a traceback."""
    path = Path(path)
    return parse_yaml(read_text_file(path, what), path)


def load_bundled(path: str | Path) -> Any:
    """A data file shipped with labeltree, parsed fast; None when it cannot be read (whoever loads it
    for real reports why)."""
    try:
        return yaml.load(Path(path).read_text(encoding="utf-8"), Loader=_BundledLoader)  # noqa: S506 - safe
    except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError):
        return None


def load_any(path: str | Path, what: str) -> Any:
    """`load_yaml`, but a file shipped with labeltree (under its taxonomy folder) is parsed by libyaml
    (`load_bundled`): `labeltree tree` reads five bundled files, and the pure-Python parser was most of
    its time. A bundled file that libyaml cannot read goes through `load_yaml`, which says why."""
    from labeltree.resources import taxonomy_dir

    path = Path(path)
    if path.resolve().is_relative_to(taxonomy_dir().resolve()):
        data = _bundled_via_json(path)
        if data is not None:
            return data
    return load_yaml(path, what)


def _bundled_via_json(path: Path) -> Any:
    """A bundled file's data from a JSON copy in the user cache (keyed on the file's path, size and mtime;
    written on first use, atomically), else parsed by libyaml. Only data that JSON keeps exactly is
    cached (a tree file with integer keys is parsed each time). Any cache problem: parse the file."""
    import contextlib
    import json
    import os

    cached = _json_copy(path)
    if cached is not None:
        try:
            return json.loads(cached.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            pass
    data = load_bundled(path)
    if cached is None or data is None:
        return data
    text = json.dumps(data)
    if json.loads(text) == data:
        tmp = cached.with_name(f".{cached.name}.{os.getpid()}.tmp")
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, cached)
        except OSError:  # a read-only or full cache: parse next time too
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
    return data


def _json_copy(path: Path) -> Path | None:
    """Where the JSON copy of a bundled file lives in the user cache (None when the file cannot be stat'ed)."""
    import hashlib

    from labeltree.resources import user_cache_dir

    try:
        st = path.stat()
    except OSError:
        return None
    key = hashlib.sha256(f"{path.resolve()}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()[:32]
    return user_cache_dir() / "bundled" / f"{key}.json"


def load_model(path: str | Path, model: type[M], what: str) -> M:
    """A YAML file validated by `model`: every error names the file, the line and the key."""
    path = Path(path)
    text = read_text_file(path, what)
    return check_model(model, parse_yaml(text, path), path, what, text=text)


# -- pointing into the file -------------------------------------------------------------------------

def line_in(text: str, keys: tuple[Any, ...] | list[Any]) -> int | None:
    """1-based line of the node at `keys` (mapping keys / sequence indices) in YAML text: the deepest
    one that exists. Only used to point error messages into the file; any failure gives None."""
    try:
        node = yaml.compose(text, Loader=StrictLoader)  # noqa: S506 - a SafeLoader
    except yaml.YAMLError:
        return None
    if node is None:
        return None
    line = node.start_mark.line + 1
    for k in keys:
        if isinstance(node, yaml.MappingNode):
            hit = next(((kn, vn) for kn, vn in node.value if kn.value == str(k)), None)
            if hit is None:
                return line
            node, line = hit[1], hit[0].start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(k, int) and 0 <= k < len(node.value):
            node = node.value[k]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def line_of(path: str | Path | None, *keys: str | int) -> int | None:
    """`line_in` for a file (read again: only on the error path)."""
    if path is None:
        return None
    try:
        return line_in(read_input(path, "YAML", MAX_TEXT_BYTES).decode("utf-8"), keys)
    except (LabeltreeError, OSError, UnicodeDecodeError):
        return None


# -- pydantic errors as one line -----------------------------------------------------------------------

def check_model(model: type[M], data: Any, path: str | Path | None, what: str, *, text: str | None = None,
                prefix: tuple[Any, ...] = ()) -> M:
    """`model.model_validate(data)`; its first error -> LabeltreeError with the line of the key (in
    `text`, else the file re-read). `prefix`: where `data` sits in the file (a part of a bigger file)."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise model_error(e, model, data, path, what, text=text, prefix=prefix) from None


def model_error(e: ValidationError, model: type[BaseModel], data: Any, path: str | Path | None, what: str, *,
                text: str | None = None, prefix: tuple[Any, ...] = ()) -> LabeltreeError:
    # an unknown key first: a misspelt key explains the 'missing' one beside it
    errs = sorted(e.errors(), key=lambda x: x["type"] != "extra_forbidden")
    err = errs[0]
    loc = _data_loc(data, tuple(err["loc"]))
    message = _describe(err, loc, errs, model)
    keys = (*prefix, *loc)
    line = line_in(text, keys) if text is not None else line_of(path, *keys)
    extra = f" ({len(errs)} problems; first shown)" if len(errs) > 1 else ""
    return LabeltreeError(f"invalid {what}: {message}{extra}", path, line)


def _data_loc(data: Any, loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """pydantic's error location with its own tags ('[key]', union members) dropped: only keys and
    indices that exist in `data`, plus a last key that is missing or refused."""
    out: list[Any] = []
    cur = data
    for i, k in enumerate(loc):
        if isinstance(cur, dict) and k in cur:
            cur = cur[k]
        elif isinstance(cur, dict) and str(k) in {str(x) for x in cur}:
            cur = next(v for x, v in cur.items() if str(x) == str(k))
        elif isinstance(cur, list | tuple) and isinstance(k, int) and 0 <= k < len(cur):
            cur = cur[k]
        elif i == len(loc) - 1 and isinstance(cur, dict) and isinstance(k, str) and k != "[key]":
            out.append(k)  # a missing required key
            break
        else:
            continue
        out.append(k)
    return tuple(out)


_KIND = {"dict_type": "a mapping", "model_type": "a mapping", "model_attributes_type": "a mapping",
         "list_type": "a list", "tuple_type": "a list", "set_type": "a list"}


def _describe(err: dict[str, Any], loc: tuple[Any, ...], errs: list[dict[str, Any]], model: type[BaseModel]) -> str:
    """One readable sentence for a pydantic error at `loc` (data keys only)."""
    where = ".".join(str(p) for p in loc)
    kind, msg, value = err["type"], err["msg"].removeprefix("Value error, "), err.get("input")
    if kind == "extra_forbidden":
        parent = loc[:-1]
        bad = sorted({str(x["loc"][-1]) for x in errs if x["type"] == "extra_forbidden"
                      and tuple(x["loc"])[:-1] == tuple(err["loc"])[:-1]})
        allowed = ", ".join(_fields_at(model, tuple(err["loc"])[:-1]))
        at = f" in {'.'.join(map(str, parent))}" if parent else ""
        top = "" if parent else "top-level "
        return f"unknown {top}key(s) {bad}{at}; allowed: {allowed}"
    if kind == "missing":
        at = f" in {'.'.join(map(str, loc[:-1]))}" if len(loc) > 1 else ""
        return f"missing required key '{loc[-1]}'{at}"
    if kind in _KIND:
        desc = _description_at(model, tuple(err["loc"]))
        return f"'{where}' must be {_KIND[kind]}{f' ({desc})' if desc else ''}, not {_a(value)}"
    got = f" (got {value!r})" if isinstance(value, int | float | str | bool) and len(repr(value)) < 60 else ""
    return f"{where}: {msg}{got}" if where else msg


def _a(value: Any) -> str:
    if value is None:
        return "empty"
    if isinstance(value, dict | list):
        return "a mapping" if isinstance(value, dict) else "a list"
    name = {str: "text", int: "number", float: "number", bool: "true/false"}.get(type(value), type(value).__name__)
    return f"a {name} ({value!r})"


def _unwrap(ann: Any) -> Any:
    """Optional[X] / Annotated[X, ...] -> X (the model member of a union first)."""
    while True:
        origin = typing.get_origin(ann)
        if origin is typing.Annotated:
            ann = typing.get_args(ann)[0]
        elif origin in (typing.Union, types.UnionType):
            members = [a for a in typing.get_args(ann) if a is not type(None)]
            ann = next((a for a in members if _model_of(a) is a), members[0])
        else:
            return ann


def _model_of(ann: Any) -> type[BaseModel] | None:
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    return next((m for m in map(_model_of, typing.get_args(ann)) if m is not None), None)


def _walk(model: type[BaseModel], loc: tuple[Any, ...]) -> tuple[Any, Any]:
    """Follow `loc` through the model's fields, dict values and list items: (the field info if `loc`
    ends on a field, the annotation there)."""
    ann: Any = model
    info = None
    for k in loc:
        ann = _unwrap(ann)
        if isinstance(ann, type) and issubclass(ann, BaseModel) and isinstance(k, str) and k in ann.model_fields:
            info = ann.model_fields[k]
            ann = info.annotation
        elif typing.get_origin(ann) in (dict, list, tuple) and typing.get_args(ann):
            info, ann = None, typing.get_args(ann)[-1]
        else:
            return None, None
    return info, ann


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The keys allowed in the mapping at `loc`."""
    target = _model_of(_unwrap(_walk(model, loc)[1]))
    return list(target.model_fields) if target is not None else []


def _description_at(model: type[BaseModel], loc: tuple[Any, ...]) -> str:
    info, ann = _walk(model, loc)
    if info is not None and info.description:
        return info.description
    target = _model_of(_unwrap(ann))
    return f"keys {', '.join(target.model_fields)}" if target is not None else ""


def dump_yaml(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=120, default_flow_style=None)
