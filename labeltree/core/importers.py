"""Import a dataset's own label table as a labeltree taxonomy, so that a new dataset needs no code.

Sources: a Mapillary-style `config.json` (`labels: [{name, readable, color, instances, evaluate}]`,
pixel value = list index), a CSV/TSV table (id, name, colour, optional others), and the label table
of cityscapesScripts (`cityscapesscripts.helpers.labels`) when that package is installed. Every
import is validated with the `Taxonomy` model; errors name the file, the row's line and the class.
"""

from __future__ import annotations

import colorsys
import csv
import io
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from labeltree.core.taxonomy import DTYPE_MAX, Taxonomy, normalise_name
from labeltree.core.yamlio import read_text_file
from labeltree.errors import LabeltreeError
from labeltree.fsutil import write_text

# Column header (lower case, non-alphanumerics removed) -> ClassDef field.
COLUMNS: dict[str, str] = {
    **dict.fromkeys(["id", "classid", "labelid", "value", "index"], "id"),
    **dict.fromkeys(["name", "label", "class", "classname", "labelname"], "name"),
    **dict.fromkeys(["readable", "displayname", "display"], "readable"),
    "category": "category",
    "categoryid": "category_id",
    "trainid": "train_id",
    **dict.fromkeys(["hasinstances", "instances"], "has_instances"),
    "ignoreineval": "ignore_in_eval",
    "evaluate": "evaluate",  # Vistas: evaluate = not ignore_in_eval
    "shape": "shape",
    "synonyms": "synonyms",
    "includes": "includes",
    **dict.fromkeys(["color", "colour", "rgb"], "color"),
    **{f"{c}{x}": f"color_{x}" for c in ("color", "colour") for x in "rgb"},
    **{x: f"color_{x}" for x in "rgb"},
}
INT_FIELDS = {"id", "category_id", "train_id"}
TRAIN_ID_MAX = 255  # train ids are 8-bit label values (255 = ignore, as `convert --to X:trainids` writes)
BOOL_FIELDS = {"has_instances", "ignore_in_eval", "evaluate"}
UNLABELED_NAMES = {"unlabeled", "unlabelled", "void unlabeled", "void unlabelled"}


def _key(col: str) -> str:
    return re.sub(r"[^a-z0-9]", "", col.lower())


def _int(text: str) -> int:
    """A whole number as written in a table: ASCII digits with an optional sign (int() would also take
    '1_000' or other scripts' digits, and a float or 'nan' must not pass as an id)."""
    if not re.fullmatch(r"\s*[+-]?[0-9]+\s*", text):
        raise ValueError(f"expected a whole number, got {text.strip()!r}")
    return int(text)


def _bool(text: str) -> bool:
    t = text.strip().lower()
    if t in ("true", "1", "yes", "y", "t"):
        return True
    if t in ("false", "0", "no", "n", "f", ""):
        return False
    raise ValueError(f"expected true/false, got {text!r}")


def _colour(text: str) -> list[int]:
    t = text.strip()
    if re.fullmatch(r"#[0-9a-fA-F]{6}", t):
        return [int(t[i:i + 2], 16) for i in (1, 3, 5)]
    parts = [p for p in re.split(r"[\s,;/()\[\]]+", t) if p]
    if len(parts) != 3 or not all(re.fullmatch(r"\d+", p) for p in parts):
        raise ValueError(f"colour must be 'r,g,b' or '#rrggbb', got {text!r}")
    return [int(p) for p in parts]


def auto_colours(n: int) -> list[list[int]]:
    """n distinct, stable colours (golden-ratio hue walk) for tables that carry none."""
    out = []
    for i in range(n):
        r, g, b = colorsys.hsv_to_rgb((i * 0.618033988749895) % 1.0, 0.65, 0.95 - 0.25 * (i % 3) / 2)
        out.append([round(r * 255), round(g * 255), round(b * 255)])
    return out


def _validate(data: dict[str, Any], path: Path, lines: list[int | None]) -> Taxonomy:
    """Taxonomy.model_validate with the offending row's line and class in the message."""
    try:
        return Taxonomy.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = list(err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        idx = loc[1] if len(loc) >= 2 and loc[0] == "classes" and isinstance(loc[1], int) else None
        m = re.match(r"classes\[(\d+)\]", msg)
        if idx is None and m:
            idx = int(m.group(1))
        line, what = None, ""
        if idx is not None and idx < len(data["classes"]):
            line = lines[idx] if idx < len(lines) else None
            c = data["classes"][idx]
            what = f"class '{c.get('name')}' (id {c.get('id')}): "
            msg = re.sub(r"^classes\[\d+\] '[^']*': ", "", msg)
        field = ".".join(str(p) for p in loc[2:]) if idx is not None else ".".join(map(str, loc))
        raise LabeltreeError(f"{what}{field + ': ' if field else ''}{msg}", path, line) from None


def build_taxonomy(classes: list[dict[str, Any]], path: Path, lines: list[int | None], *, name: str,
                   annotation: str = "dense", encoding: dict[str, Any] | None = None,
                   ignore: Iterable[int | str] | None = None, version: str = "",
                   description: str = "") -> Taxonomy:
    """Wrap imported class rows into a validated Taxonomy.

    `ignore` (ids or names) defaults to the classes called 'unlabeled'; `encoding` defaults to
    label PNGs storing the id, uint8 when every id fits and uint16 otherwise.
    """
    if not classes:
        raise LabeltreeError("no classes found", path)
    enc = dict(encoding or {})
    enc.setdefault("format", "png-ids")
    if "dtype" not in enc:
        top = max(c["id"] for c in classes if isinstance(c.get("id"), int)) + int(enc.get("offset", 0))
        enc["dtype"] = "uint8" if top <= DTYPE_MAX["uint8"] else "uint16"
    enc.setdefault("offset", 0)
    if ignore is None:
        ignore_ids = [c["id"] for c in classes
                      if normalise_name(str(c.get("name", ""))) in UNLABELED_NAMES
                      or normalise_name(str(c.get("readable") or "")) in UNLABELED_NAMES]
    else:
        ignore_ids = []
        for ref in ignore:
            hit = [c["id"] for c in classes if str(ref) in (str(c["id"]), c.get("name"), c.get("readable"))]
            if not hit:
                raise LabeltreeError(f"--ignore '{ref}' is not the id or name of any class in the table", path)
            ignore_ids.extend(hit)
    data = {"name": name, "version": version, "description": description, "annotation": annotation,
            "encoding": enc, "ignore_ids": ignore_ids, "classes": classes}
    return _validate(data, path, lines)


# -- sources -------------------------------------------------------------------------------------

def _table_rows(path: Path) -> tuple[str, list[tuple[int, list[str]]]]:
    """The delimiter and the (line, cells) rows of a CSV/TSV table, blank lines and '#' comments left out.
    Parsed as one CSV stream, so a quoted cell holding a line break is found (and refused) as such."""
    text = read_text_file(path, "label table")
    delim = "\t" if path.suffix.lower() == ".tsv" or ("\t" in text and path.suffix.lower() != ".csv") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delim)
    rows: list[tuple[int, list[str]]] = []
    try:
        while True:
            line = reader.line_num + 1
            try:
                row = next(reader)
            except StopIteration:
                break
            if reader.line_num != line:
                raise LabeltreeError("a quoted cell holds a line break (the row runs over lines "
                                     f"{line}-{reader.line_num}); every cell of a label table is one line", path, line)
            if not any(c.strip() for c in row) or row[0].lstrip().startswith("#"):
                continue
            rows.append((line, row))
    except csv.Error as e:
        raise LabeltreeError(f"not a readable CSV ({e})", path, reader.line_num) from None
    if not rows:
        raise LabeltreeError("label table has no header line", path)
    return delim, rows


def _claim_columns(header: list[str], columns: dict[str, str] | None, path: Path,
                   header_line: int) -> tuple[list[str | None], int | None]:
    """The field each column gives (None: unused), after `--column FIELD=COLUMN` choices, and the column
    that keeps each row's own name when --column name takes another one (None without)."""
    fields: list[str | None] = [COLUMNS.get(_key(h)) for h in header]
    fine_col: int | None = None
    claimed: dict[int, str] = {}  # column index -> the --column field read from it
    known = set(COLUMNS.values()) - {"color_r", "color_g", "color_b"}
    for field, col in (columns or {}).items():
        if field not in known:
            raise LabeltreeError(f"--column {field}={col}: '{field}' is no class field (use one of "
                                 f"{', '.join(sorted(known))})", path, header_line)
        hits = [i for i, h in enumerate(header) if _key(h) == _key(col)]
        if not hits:
            raise LabeltreeError(f"--column {field}={col}: the table has no column '{col}' (header: {header})", path,
                                 header_line)
        if hits[0] in claimed:
            raise LabeltreeError(f"--column {field}={col}: column '{col}' is already read as "
                                 f"{claimed[hits[0]]} (--column {claimed[hits[0]]}={col}); a column gives one field",
                                 path, header_line)
        claimed[hits[0]] = field
        lost = fields[hits[0]]
        if lost in ("id", "name") and lost != field and lost not in (columns or {}):
            raise LabeltreeError(f"--column {field}={col}: column '{col}' is the table's {lost} column; name "
                                 f"another one for {lost} too (--column {lost}=COLUMN)", path, header_line)
        for i, f in enumerate(fields):
            if f == field and i != hits[0]:
                if field == "name":
                    fine_col = i  # the row's own label name: kept as what its class includes
                fields[i] = None
        fields[hits[0]] = field
    return fields, fine_col


def _check_header(fields: list[str | None], header: list[str], palette: str | None, path: Path,
                  header_line: int) -> bool:
    """Refuse a table without id, name or colours (unless --palette auto); True when colours are r/g/b columns."""
    if "id" not in fields:
        raise LabeltreeError(f"label table has no id column (header: {header}); name one 'id'", path, header_line)
    if "name" not in fields and "readable" not in fields:
        raise LabeltreeError(f"label table has no name column (header: {header}); name one 'name'", path,
                             header_line)
    has_rgb = {"color_r", "color_g", "color_b"} <= set(fields)
    if "color" not in fields and not has_rgb and palette != "auto":
        raise LabeltreeError("label table has no colour column: add 'color' (r,g,b) or color_r/color_g/color_b, "
                             "or pass --palette auto for generated colours", path, header_line)
    return has_rgb


def _cell(c: dict[str, Any], rgb: dict[str, int], f: str, raw: str) -> None:
    """Read one cell of field `f` into the class dict `c` (colour parts into `rgb`); ValueError when bad."""
    if f in INT_FIELDS:
        c[f] = _int(raw)
    elif f in BOOL_FIELDS:
        c[f] = _bool(raw)
    elif f == "color":
        c["color"] = _colour(raw)
    elif f.startswith("color_"):
        rgb[f] = int(raw)
    elif f in ("synonyms", "includes"):
        c[f] = [s.strip() for s in raw.split("|") if s.strip()]
    elif raw != "":
        c[f] = raw


def _row_class(row: list[str], fields: list[str | None], header: list[str], fine_col: int | None, path: Path,
               line: int) -> dict[str, Any]:
    """One table row as a ClassDef dict."""
    if len(row) != len(header):
        raise LabeltreeError(f"row has {len(row)} columns, the header has {len(header)}", path, line)
    c: dict[str, Any] = {}
    rgb: dict[str, int] = {}
    label = row[fields.index("name")] if "name" in fields else row[fields.index("readable")]
    for f, raw in zip(fields, row, strict=True):
        if f is None or (raw.strip() == "" and f not in ("id", "name")):
            continue  # unused column or empty optional cell
        try:
            _cell(c, rgb, f, raw)
        except ValueError as e:
            raise LabeltreeError(f"class '{label}': column '{header[fields.index(f)]}': {e}", path, line) from None
    if "train_id" in c and not -1 <= c["train_id"] <= TRAIN_ID_MAX:
        raise LabeltreeError(f"class '{label}': column '{header[fields.index('train_id')]}': train id "
                             f"{c['train_id']} is out of range: -1..{TRAIN_ID_MAX} (-1 or 255: not trained)",
                             path, line)
    if rgb:
        c["color"] = [rgb.get("color_r"), rgb.get("color_g"), rgb.get("color_b")]
    if "evaluate" in c:
        c["ignore_in_eval"] = not c.pop("evaluate")
    if "name" not in c:
        c["name"] = c.get("readable", "")
    if "category" not in fields and "--" in c["name"]:
        c["category"] = c["name"].split("--")[0]  # Mapillary machine names: category--group--class
    if fine_col is not None:
        c["_row_name"] = row[fine_col]
    return c


def read_table(path: str | Path, palette: str | None = None, columns: dict[str, str] | None = None
               ) -> tuple[list[dict[str, Any]], list[int | None]]:
    """Rows of a CSV/TSV label table as ClassDef dicts, and each row's line in the file.

    Columns (case and punctuation ignored): id, name, colour as 'r,g,b' / '#rrggbb' or color_r/g/b,
    optional readable, category (else the first part of a Mapillary-style 'a--b--c' name),
    categoryId, trainId, hasInstances/instances, ignoreInEval or evaluate, shape, synonyms and
    includes ('|'-separated). Lines starting with '#' are comments. Without a colour column,
    `palette='auto'` gives each class a distinct colour.

    `columns` ({field: column}) reads a field from another column, for tables with one row per
    fine label and several id columns (IDD: `{'id': 'level3Id', 'name': 'level3Name'}`): rows that
    share the id then become one class (see `group_rows`).
    """
    path = Path(path)
    _, rows = _table_rows(path)
    header_line, header = rows[0]
    fields, fine_col = _claim_columns(header, columns, path, header_line)
    has_rgb = _check_header(fields, header, palette, path, header_line)
    classes = [_row_class(row, fields, header, fine_col, path, line) for line, row in rows[1:]]
    lines: list[int | None] = [line for line, _ in rows[1:]]
    if columns and "id" in columns:
        classes, lines = group_rows(classes, lines, path, columns["id"])
    if palette == "auto" and "color" not in fields and not has_rgb:
        for c, col in zip(classes, auto_colours(len(classes)), strict=True):
            c["color"] = col
    return classes, lines


GROUP_AGREE = ("name", "readable", "category", "category_id", "train_id", "shape")


def group_rows(rows: list[dict[str, Any]], lines: list[int | None], path: Path,
               id_column: str) -> tuple[list[dict[str, Any]], list[int | None]]:
    """Rows that share an id (read from `id_column`) as one class each, in order of first appearance.

    The rows must agree on name, category and the other per-class fields (an error names the row
    that does not); the class takes the colour of the row named like it (else of its first row),
    has instances if any row has, is ignored in evaluation only if every row is, and `includes`
    the other rows' own names (what the coarser level folds in, for `labeltree merge`).
    """
    groups: dict[int, list[int]] = {}
    for k, r in enumerate(rows):
        groups.setdefault(r["id"], []).append(k)
    out, out_lines = [], []
    for cid, members in groups.items():
        first = rows[members[0]]
        for k in members[1:]:
            for f in GROUP_AGREE:
                if rows[k].get(f) != first.get(f):
                    raise LabeltreeError(f"rows with {id_column} {cid} disagree on {f}: {first.get(f)!r} (line "
                                         f"{lines[members[0]]}) and {rows[k].get(f)!r}", path, lines[k])
        own = [rows[k].get("_row_name", rows[k]["name"]) for k in members]
        rep = rows[members[own.index(first["name"])]] if first["name"] in own else first
        c = {f: v for f, v in first.items() if not f.startswith("_")}
        c["color"] = rep["color"]
        c["has_instances"] = any(rows[k].get("has_instances", False) for k in members)
        if any("ignore_in_eval" in rows[k] for k in members):
            c["ignore_in_eval"] = all(rows[k].get("ignore_in_eval", False) for k in members)
        folded = [n for n in own if n != first["name"]]
        if folded:
            c["includes"] = list(dict.fromkeys([*first.get("includes", []), *folded]))
        out.append(c)
        out_lines.append(lines[members[0]])
    return out, out_lines


def import_table(path: str | Path, *, name: str | None = None, palette: str | None = None,
                 columns: dict[str, str] | None = None, **kwargs: Any) -> Taxonomy:
    """A taxonomy from a CSV/TSV label table (see `read_table`; `columns` remaps and groups)."""
    path = Path(path)
    classes, lines = read_table(path, palette, columns)
    if columns and "id" in columns:
        kwargs["encoding"] = {**(kwargs.get("encoding") or {}), "column": columns["id"]}
    tax = build_taxonomy(classes, path, lines, name=name or path.stem, **kwargs)
    if all("ignore_in_eval" not in c for c in classes) and tax.ignore_ids:
        for c in tax.classes:
            c.ignore_in_eval = c.id in tax.ignore_ids
    return tax


def import_vistas_config(path: str | Path, *, name: str | None = None, **kwargs: Any) -> Taxonomy:
    """A taxonomy from a Mapillary Vistas `config.json`: class id = position in `labels`."""
    path = Path(path)
    text = read_text_file(path, "Vistas config")
    try:
        cfg = json.loads(text)
    except json.JSONDecodeError as e:
        raise LabeltreeError(f"not valid JSON: {e.msg}", path, e.lineno) from None
    labels = cfg.get("labels") if isinstance(cfg, dict) else None
    if not isinstance(labels, list) or not labels:
        raise LabeltreeError("a Vistas config needs a non-empty 'labels' list", path)
    classes = []
    for i, lab in enumerate(labels):
        if not isinstance(lab, dict) or "name" not in lab or "color" not in lab:
            raise LabeltreeError(f"labels[{i}]: each label needs 'name' and 'color', got {lab!r}", path)
        c: dict[str, Any] = {"id": i, "name": lab["name"], "color": lab["color"]}
        if lab.get("readable"):
            c["readable"] = lab["readable"]
        c["category"] = str(lab["name"]).split("--")[0]
        c["has_instances"] = bool(lab.get("instances", False))
        c["ignore_in_eval"] = not bool(lab.get("evaluate", True))
        classes.append(c)
    kwargs.setdefault("encoding", {"format": "png-palette-index", "dtype": "uint8", "offset": 0})
    kwargs.setdefault("version", str(cfg.get("version", "")))
    return build_taxonomy(classes, path, [None] * len(classes), name=name or "vistas", **kwargs)


def import_cityscapes_scripts(*, name: str = "cityscapes", **kwargs: Any) -> Taxonomy:
    """A taxonomy from `cityscapesscripts.helpers.labels.labels` (the official Cityscapes table)."""
    try:
        from cityscapesscripts.helpers import labels as cs_labels  # type: ignore[import-not-found]
    except ImportError:
        raise LabeltreeError("cityscapesscripts is not installed: `pip install cityscapesscripts` "
                             "(or import its table with `labeltree import table`)") from None
    src = Path(getattr(cs_labels, "__file__", "cityscapesscripts/helpers/labels.py"))
    classes = []
    for lab in cs_labels.labels:
        classes.append({"id": int(lab.id), "name": str(lab.name), "color": [int(v) for v in lab.color],
                        "category": str(lab.category), "category_id": int(lab.categoryId),
                        "train_id": int(lab.trainId), "has_instances": bool(lab.hasInstances),
                        "ignore_in_eval": bool(lab.ignoreInEval)})
    kwargs.setdefault("encoding", {"format": "png-ids", "dtype": "uint8", "offset": 0})
    kwargs.setdefault("description", "label table of cityscapesScripts helpers/labels.py")
    return build_taxonomy(classes, src, [None] * len(classes), name=name, **kwargs)


# -- output --------------------------------------------------------------------------------------

class _NoAliases(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:  # noqa: ARG002 - shared colour lists must not become anchors
        return True


def _flow(obj: Any) -> str:
    return yaml.dump(obj, Dumper=_NoAliases, default_flow_style=True, sort_keys=False, width=10_000,
                     allow_unicode=True).strip().removesuffix("...").strip()


def taxonomy_to_dict(tax: Taxonomy) -> dict[str, Any]:
    """The taxonomy as the dict a taxonomy file holds (unset optional fields and empty lists left out)."""
    data = tax.model_dump(exclude_none=True)
    for c in data["classes"]:
        c["color"] = list(c["color"])
        for k in ("synonyms", "includes"):
            if not c.get(k):
                c.pop(k, None)
    return data


def dump_taxonomy(data: dict[str, Any]) -> str:
    """Taxonomy file text with one class per line: readable in a diff and in an editor."""
    head = {k: v for k, v in data.items() if k not in ("encoding", "classes", "ignore_ids")}
    text = yaml.dump(head, Dumper=_NoAliases, sort_keys=False, allow_unicode=True, width=120)
    text += f"ignore_ids: {_flow(data.get('ignore_ids', []))}\n"
    text += "encoding:\n" + "".join(f"  {k}: {_flow(v)}\n" for k, v in data["encoding"].items())
    text += "classes:\n" + "".join(f"- {_flow(c)}\n" for c in data["classes"])
    return text


def write_taxonomy(tax: Taxonomy | dict[str, Any], target: str | Path) -> Path:
    """Write a taxonomy file atomically."""
    data = taxonomy_to_dict(tax) if isinstance(tax, Taxonomy) else tax
    write_text(target, dump_taxonomy(data))
    return Path(target)


def table_text(tax: Taxonomy, delimiter: str = "\t") -> str:
    """The taxonomy's classes as a CSV/TSV table that `import_table` reads back to the same classes."""
    cols = ["id", "name", "readable", "color_r", "color_g", "color_b", "category", "category_id", "train_id",
            "has_instances", "ignore_in_eval", "shape", "synonyms", "includes"]
    used = [k for k in cols if k in ("id", "name", "color_r", "color_g", "color_b")
            or any(getattr(c, k) not in (None, [], False) for c in tax.classes)]
    if "ignore_in_eval" not in used and tax.ignore_ids:
        used.append("ignore_in_eval")
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=delimiter, lineterminator="\n")
    w.writerow(used)
    for c in tax.classes:
        vals = []
        for k in used:
            if k.startswith("color_"):
                v: Any = c.color["rgb".index(k[-1])]
            else:
                v = getattr(c, k)
            vals.append("|".join(v) if isinstance(v, list) else "" if v is None else str(v))
        w.writerow(vals)
    return buf.getvalue()
