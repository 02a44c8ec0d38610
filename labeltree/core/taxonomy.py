"""Dataset taxonomies: one YAML file per dataset version, validated with pydantic on load.

A taxonomy says which classes a dataset has (id, name, colour, ...), whether it is annotated
densely or with boxes, how ids are stored on disk and which ids carry no class. Everything else
(lookup tables, classifiers, evaluation sets) is derived from these files and the tree file.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from labeltree.core.yamlio import line_in, load_any, load_yaml, model_error, read_text_file
from labeltree.errors import LabeltreeError
from labeltree.resources import is_path_ref, taxonomy_dir

if TYPE_CHECKING:  # numpy only where a palette is built: naming and loading taxonomies need none
    import numpy as np

Shape = Literal["circle", "triangle", "inverted-triangle", "octagon", "diamond"]
DTYPE_MAX = {"uint8": 255, "uint16": 65535}


def normalise_name(name: str) -> str:
    """'Traffic Sign (Front)', 'traffic-sign--front' -> 'traffic sign front' (for cross-dataset matching)."""
    return re.sub(r"[^a-z0-9]+", " ", name.lower()).strip()


class ClassDef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: int
    name: str = Field(min_length=1)
    color: tuple[int, int, int]
    readable: str | None = None
    category: str | None = None
    category_id: int | None = None
    train_id: int | None = None
    has_instances: bool = False
    ignore_in_eval: bool = False
    shape: Shape | None = None
    synonyms: list[str] = Field(default_factory=list)
    # What the dataset's annotation guide folds into this class (Cityscapes 'road' includes the
    # markings): `labeltree merge` flags other datasets' classes with these names as level-of-detail
    # conflicts.
    includes: list[str] = Field(default_factory=list)

    @field_validator("color", mode="before")
    @classmethod
    def _rgb(cls, v: object) -> object:
        if not isinstance(v, (list, tuple)) or len(v) != 3:
            raise ValueError(f"colour must be an RGB triple like [128, 64, 128], got {v!r}")
        if not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in v):
            raise ValueError(f"colour components must be integers 0..255, got {v!r}")
        return v

    @property
    def display(self) -> str:
        return self.readable or self.name


class InstanceEncoding(BaseModel):
    """How an instance file stores objects: class value * factor + k on instance classes, value * stuff_factor
    elsewhere (Cityscapes id*1000+k / id; Vistas class*256+k / class*256)."""

    model_config = ConfigDict(extra="forbid")

    factor: int = Field(gt=1, le=65536)
    stuff_factor: int = Field(default=1, ge=1, le=65536)
    file: str = ""


class Encoding(BaseModel):
    """How a class id is stored on disk: value = id + offset in a `dtype` image (or gt.txt for boxes)."""

    model_config = ConfigDict(extra="forbid")  # a misspelt `ofset` is an error, not a silent offset 0

    format: Literal["png-ids", "png-palette-index", "gtsdb-gt-txt"]
    # the file layout (reader) when it is not the format's usual one: a png-ids dataset may be laid
    # out as Cityscapes (the default), BDD100K or IDD; names from `datasets.registry.LAYOUTS`
    layout: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9_-]*$")
    dtype: Literal["uint8", "uint16"] = "uint8"
    # the label table column the files store, where the table has several (IDD: level3Id, its tools'
    # *_gtFine_labellevel3Ids.png); set by `labeltree import table --column id=COLUMN`
    column: str | None = Field(default=None, pattern=r"^[A-Za-z][A-Za-z0-9_]*$")
    offset: int = 0
    unlabeled: int | None = None  # stored value that means "no label" and is no class id
    instances: InstanceEncoding | None = None  # the dataset's instance files, where it has them
    file: str | None = None  # documentation only: where the label files are
    masks: str | None = None  # documentation only: where per-pixel masks of a box dataset are


class Taxonomy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    version: str = ""
    description: str = ""
    annotation: Literal["dense", "boxes"]
    encoding: Encoding
    ignore_ids: list[int] = Field(default_factory=list)
    classes: list[ClassDef] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> Taxonomy:
        seen_ids: dict[int, str] = {}
        seen_names: dict[str, int] = {}
        vmax = DTYPE_MAX[self.encoding.dtype]
        for i, c in enumerate(self.classes):
            if c.id in seen_ids:
                raise ValueError(f"classes[{i}] '{c.name}': duplicate id {c.id} (also '{seen_ids[c.id]}')")
            if c.name in seen_names:
                raise ValueError(f"classes[{i}] '{c.name}': duplicate name (also id {seen_names[c.name]})")
            seen_ids[c.id] = c.name
            seen_names[c.name] = c.id
            value = c.id + self.encoding.offset
            # Negative ids (Cityscapes' license plate, -1) exist only in tables, never in label files.
            if c.id >= 0 and not 0 <= value <= vmax:
                raise ValueError(
                    f"classes[{i}] '{c.name}': id {c.id} is stored as {value}, which does not fit "
                    f"{self.encoding.dtype} (0..{vmax}); use "
                    f"{'dtype uint16 or ' if self.encoding.dtype == 'uint8' else ''}a smaller id")
            if self.encoding.unlabeled is not None and c.id >= 0 and value == self.encoding.unlabeled:
                raise ValueError(f"classes[{i}] '{c.name}': stored value {value} is the 'unlabeled' value")
        for i in self.ignore_ids:
            if i not in seen_ids:
                raise ValueError(f"ignore_ids: {i} is not the id of any class")
        return self

    # -- lookups ---------------------------------------------------------------------------
    def by_id(self, cid: int) -> ClassDef:
        for c in self.classes:
            if c.id == cid:
                return c
        raise KeyError(cid)

    def find(self, ref: int | str) -> ClassDef | None:
        """A class by id, exact name, readable name or normalised name/synonym."""
        if isinstance(ref, int) or (isinstance(ref, str) and re.fullmatch(r"-?\d+", ref)):
            cid = int(ref)
            return next((c for c in self.classes if c.id == cid), None)
        for c in self.classes:
            if ref in (c.name, c.readable):
                return c
        key = normalise_name(ref)
        for c in self.classes:
            if key in {normalise_name(n) for n in (c.name, c.display, *c.synonyms)}:
                return c
        return None

    @property
    def ids(self) -> list[int]:
        return [c.id for c in self.classes]

    def stored_value(self, cid: int) -> int:
        return cid + self.encoding.offset

    def palette(self) -> np.ndarray:
        """(256, 3) uint8: the class colour at each 8-bit stored value, black elsewhere: a palette PNG's
        palette (Vistas labels, BDD100K colour maps) or a preview's colours."""
        import numpy as np

        pal = np.zeros((256, 3), dtype=np.uint8)
        for c in self.classes:
            v = self.stored_value(c.id)
            if c.id >= 0 and 0 <= v < 256:
                pal[v] = c.color
        return pal

    @property
    def lut_size(self) -> int:
        """Size of a lookup table indexed by stored label value."""
        top = max(self.stored_value(c.id) for c in self.classes if c.id >= 0)
        if self.encoding.unlabeled is not None:
            top = max(top, self.encoding.unlabeled)
        return top + 1


# -- loading -------------------------------------------------------------------------------

def _format_validation(e: ValidationError, path: Path, text: str, what: str, data: object = None) -> LabeltreeError:
    """A class's error names the class and the line of its entry; any other names its key and line."""
    err = e.errors()[0]
    loc = list(err["loc"])
    msg = err["msg"].removeprefix("Value error, ")
    if len(loc) >= 2 and loc[0] == "classes" and isinstance(loc[1], int):
        idx = loc[1]
        try:  # name the class, not only its position
            c = data["classes"][loc[1]]  # type: ignore[index]
            msg = f"class '{c['name']}' (id {c.get('id')}): {msg}"
        except (KeyError, IndexError, TypeError):
            pass
    elif msg.startswith("classes[") and "]" in msg:
        idx = int(msg[len("classes["): msg.index("]")])
    else:
        return model_error(e, Taxonomy, data, path, what, text=text or None)
    line = line_in(text, ("classes", idx)) if text else None
    where = ".".join(str(p) for p in loc)
    extra = f" ({len(e.errors())} problems; first shown)" if len(e.errors()) > 1 else ""
    return LabeltreeError(f"invalid {what}: {where + ': ' if where else ''}{msg}{extra}", path, line)


def taxonomy_from_dict(data: object, path: Path, text: str = "") -> Taxonomy:
    if not isinstance(data, dict):
        raise LabeltreeError("a taxonomy file must be a YAML mapping with 'name', 'annotation', "
                             "'encoding' and 'classes'", path)
    try:
        return Taxonomy.model_validate(data)
    except ValidationError as e:
        raise _format_validation(e, path, text, "taxonomy", data) from None


def bundled_taxonomies() -> dict[str, Path]:
    """CLI name -> bundled file. Names are file stems and each file's own `name` (vistas = v1.2)."""
    out: dict[str, Path] = {}
    for p in sorted(taxonomy_dir().glob("*.yaml")):
        out.setdefault(p.stem, p)
        out.setdefault(_own_name(str(p), p.stat().st_mtime_ns), p)
    return out


_NAME_LINE = re.compile(r"^name:[ \t]*(.*?)[ \t]*$", re.MULTILINE)
_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


@cache
def _own_name(path: str, mtime_ns: int) -> str:  # noqa: ARG001 - mtime keys the cache
    """A taxonomy file's own `name`, from its top-level `name:` line: every command that takes a
    dataset name needs all bundled names, and parsing every bundled file to learn them was most of
    the command line's start-up. A value that is not a plain word is read by the YAML parser."""
    text = Path(path).read_text(encoding="utf-8")
    m = _NAME_LINE.search(text)
    if m and _PLAIN.fullmatch(m.group(1)):
        return m.group(1)
    data = load_yaml(path, "taxonomy")
    return str(data.get("name", Path(path).stem)) if isinstance(data, dict) else Path(path).stem


def resolve_taxonomy_path(ref: str | Path) -> Path:
    """The taxonomy file `ref` names: a path when it has a slash or a .yaml suffix (`./mine.yaml`),
    else a bundled name; a folder or file in the working directory never shadows a bundled name."""
    if is_path_ref(ref):
        return Path(ref)
    known = bundled_taxonomies()
    if str(ref) in known:
        return known[str(ref)]
    hint = f"; for the file '{ref}' here, write ./{ref}" if Path(ref).is_file() else ""
    raise LabeltreeError(f"unknown dataset '{ref}': use one of {', '.join(sorted(known))} "
                         f"or a path to a taxonomy .yaml file{hint} (searched {taxonomy_dir()})")


@cache
def _load_cached(path: str, mtime: float) -> Taxonomy:  # noqa: ARG001 - mtime keys the cache
    p = Path(path)
    text = read_text_file(p, "taxonomy")
    data = load_any(p, "taxonomy")
    return taxonomy_from_dict(data, p, text)


def load_taxonomy(ref: str | Path) -> Taxonomy:
    """Load a taxonomy by CLI name (`cityscapes`, `vistas`, `vistas-v2.0`, `gtsdb`, ...) or path."""
    p = resolve_taxonomy_path(ref)
    if not p.exists():
        raise LabeltreeError(f"taxonomy file not found (searched {p.resolve()})", p)
    return _load_cached(str(p.resolve()), p.stat().st_mtime)
