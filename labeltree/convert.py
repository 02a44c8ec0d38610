"""`labeltree convert`: one dataset's labels in another label space, through the semantic tree.

The tree decides every class: a source class at node n becomes the target class whose node is the
deepest ancestor-or-self of n that the target maps; a source class coarser than target classes
below it (Cityscapes `rider` -> Vistas' Bicyclist / Motorcyclist / Other Rider) becomes the target's
ignore value, and so does a class outside the target's part of the tree. A small YAML overrides
single classes. The result is one lookup table per stored source value, applied per pixel; each
image's source values are counted with np.bincount, which gives the report of what was lost.

Targets: `DATASET` (its stored values and layout), `DATASET:trainids` (contiguous train ids, 255 =
ignore; Cityscapes' `*_gtFine_labelTrainIds.png` as csCreateTrainIdLabelImgs writes it), `tree` /
`tree:LEVEL` (16-bit tree-node indices, cut at a depth, 65535 = ignore).
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from labeltree.convert_out import MANIFEST, adopt_out, check_out_paths, inside, output_path
from labeltree.core.hierarchy import DatasetMapping, Hierarchy
from labeltree.core.taxonomy import DTYPE_MAX, Taxonomy, load_taxonomy
from labeltree.core.tree_file import DEFAULT_TREE, bundled_for, load_hierarchy
from labeltree.core.yamlio import line_of, load_yaml
from labeltree.datasets import Sample, open_dataset, read_label
from labeltree.datasets import idd as idd_layout
from labeltree.datasets.base import DatasetReader, Unknown, check_split_name, no_class_value
from labeltree.datasets.boxmask import DEFAULT_MASK_MODE, MODES
from labeltree.datasets.registry import reader_for
from labeltree.datasets.split_list import list_line
from labeltree.errors import LabeltreeError
from labeltree.fsutil import check_input, locked_output, write_json, write_png, write_text
from labeltree.parallel import check_workers, pmap

TRAIN_IGNORE = 255  # train-id ignore value (Cityscapes, mmsegmentation, detectron2)
TREE_IGNORE = 65535  # 16-bit tree-node maps: no node
KINDS = ("native", "trainids", "tree")

# rules, as the report names them
SAME = "same class"
EXACT = "same node"
ANCESTOR = "ancestor"
COARSER = "coarser than target"
OUTSIDE = "outside target tree"
SOURCE_IGNORE = "ignored in source"
OVERRIDE = "override"
LOSSY = (COARSER, OUTSIDE)


@dataclass(frozen=True)
class Target:
    """Where labels go: a dataset's stored values, its train ids, or tree nodes (cut at `level`)."""

    kind: str  # one of KINDS
    dataset: str | None = None  # taxonomy name (None for 'tree')
    level: int | None = None  # tree:LEVEL

    @property
    def spec(self) -> str:
        if self.kind == "tree":
            return "tree" if self.level is None else f"tree:{self.level}"
        return self.dataset + (":trainids" if self.kind == "trainids" else "")  # type: ignore[operator]


def parse_target(spec: str, h: Hierarchy) -> Target:
    """`cityscapes`, `vistas:trainids`, `tree`, `tree:2` -> Target (checked against the tree)."""
    name, _, suffix = spec.partition(":")
    if name == "tree":
        if not suffix:
            return Target("tree")
        if not re.fullmatch(r"\d+", suffix) or not 1 <= int(suffix) <= max(n.level for n in h.nodes):
            raise LabeltreeError(f"--to {spec}: the level must be a whole number 1..{max(n.level for n in h.nodes)} "
                                 f"(the depth of tree '{h.name}')")
        return Target("tree", level=int(suffix))
    if suffix not in ("", "trainids"):
        raise LabeltreeError(f"--to {spec}: unknown suffix ':{suffix}'; use DATASET, DATASET:trainids, tree or "
                             "tree:LEVEL")
    m = find_mapping(h, name)
    if m is None:
        raise LabeltreeError(f"--to {spec}: tree '{h.name}' maps no dataset '{name}'; use one of "
                             f"{', '.join(_names(h))}, DATASET:trainids, tree or tree:LEVEL")
    return Target("trainids" if suffix else "native", m.taxonomy.name)


def _names(h: Hierarchy) -> list[str]:
    return [m.taxonomy.name for m in h.mappings.values()]


def find_mapping(h: Hierarchy, ref: str) -> DatasetMapping | None:
    """The tree's mapping of a dataset given by mapping key, taxonomy name or taxonomy file."""
    for m in h.mappings.values():
        if ref in (m.dataset, m.taxonomy.name):
            return m
    if ref.endswith((".yaml", ".yml")) and Path(ref).is_file():
        name = load_taxonomy(ref).name
        return next((m for m in h.mappings.values() if m.taxonomy.name == name), None)
    return None


@dataclass
class ClassRule:
    """What one source class becomes."""

    source_id: int
    source_name: str
    source_value: int
    target_value: int
    target_name: str  # 'ignore' for the target's ignore value
    rule: str


@dataclass
class Conversion:
    """The compiled conversion: rules per source class and the LUT over stored source values."""

    source: str  # taxonomy name
    target: Target
    hierarchy: str
    rules: list[ClassRule]
    lut: np.ndarray  # stored source value -> stored target value (target dtype)
    ignore: int  # the target's ignore value
    dtype: str  # 'uint8' | 'uint16'
    layout: str = "tree"  # the target's layout: 'cityscapes' | 'vistas' | 'gtsdb' | 'bdd100k' | 'idd' | 'tree'
    palette: np.ndarray | None = None  # target colours (Vistas labels are palette images)
    overrides: str | None = None  # the override file, for the record
    column: str | None = None  # IDD targets: the label table column the files store (their name's level)
    source_layout: str = ""  # the source's layout: an IDD source keeps its sequence and frame names in an IDD target

    def apply(self, labels: np.ndarray) -> np.ndarray:
        return self.lut[labels]

    def signature(self) -> dict[str, Any]:
        """What a rerun must agree with before it may keep existing outputs."""
        return {"source": self.source, "target": self.target.spec, "hierarchy": self.hierarchy,
                "classes": {str(r.source_value): r.target_value for r in self.rules},
                "lut_sha256": hashlib.sha256(self.lut.tobytes()).hexdigest()}


def _target_classes(h: Hierarchy, dataset: str) -> dict[int, int]:
    """Node -> lowest target class id mapped to it (classes with negative ids are never stored)."""
    out: dict[int, int] = {}
    for cid, node in sorted(h.mapping(dataset).to_node.items()):
        if node is not None and cid >= 0:
            out.setdefault(node, cid)
    return out


def train_ids(tax: Taxonomy) -> dict[int, int]:
    """Class id -> train id: the taxonomy's `train_id`s where it has them (negative or >= 255 -> 255),
    else contiguous ranks over the stored classes that are no ignore class, in id order."""
    stored = sorted((c for c in tax.classes if c.id >= 0), key=lambda c: c.id)
    if any(c.train_id is not None for c in stored):
        return {c.id: c.train_id if c.train_id is not None and 0 <= c.train_id < TRAIN_IGNORE else TRAIN_IGNORE
                for c in stored}
    kept = [c for c in stored if c.id not in tax.ignore_ids]
    if len(kept) > TRAIN_IGNORE:
        raise LabeltreeError(f"taxonomy '{tax.name}' has {len(kept)} classes: too many for 8-bit train ids")
    ranks = {c.id: i for i, c in enumerate(kept)}
    return {c.id: ranks.get(c.id, TRAIN_IGNORE) for c in stored}


def _node_rule(h: Hierarchy, node: int, mapped: dict[int, int]) -> tuple[int | None, str]:
    """The rule through the tree: (target class id or None, rule name) for a source class at `node`."""
    if node in mapped:
        return mapped[node], EXACT
    below = set(h.descendants(node)) - {node}
    if below & mapped.keys():
        return None, COARSER
    for anc in h.ancestors(node)[1:]:
        if anc in mapped:
            return mapped[anc], ANCESTOR
    return None, OUTSIDE


def load_overrides(path: str | Path, source: Taxonomy, resolve_target: Any) -> dict[int, int | None]:
    """Override YAML: a mapping `source class: target class | ignore` (names or ids), safely loaded."""
    path = Path(path)
    data = load_yaml(path, "override")
    if not isinstance(data, dict):
        raise LabeltreeError("an override file is a YAML mapping 'source class: target class' (or 'ignore'), "
                             f"not a {type(data).__name__}", path)
    out: dict[int, int | None] = {}
    for key, value in data.items():
        line = line_of(path, str(key))
        c = source.find(key) if isinstance(key, (int, str)) and not isinstance(key, bool) else None
        if c is None or c.id < 0:
            raise LabeltreeError(f"'{key}' is no class of source dataset '{source.name}' (use its class name or id)",
                                 path, line)
        if value is None or (isinstance(value, str) and value.strip().lower() == "ignore"):
            out[c.id] = None
            continue
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise LabeltreeError(f"'{key}': the target must be a class name, an id or 'ignore', not {value!r}",
                                 path, line)
        out[c.id] = resolve_target(value, path, line)
    return out


def build_conversion(source: str, target: str | Target, hierarchy: str | Path | Hierarchy = "cityscapes+vistas+gtsdb",
                     overrides: str | Path | None = None) -> Conversion:
    """Compile the conversion of dataset `source`'s stored values to `target` (see module doc)."""
    h = hierarchy if isinstance(hierarchy, Hierarchy) else load_hierarchy(hierarchy)
    sm = find_mapping(h, source)
    if sm is None:
        raise LabeltreeError(f"tree '{h.name}' maps no dataset '{source}' (it maps {', '.join(_names(h))}); "
                             "pass --tree with a tree that maps it", h.path)
    t = target if isinstance(target, Target) else parse_target(target, h)
    stax = sm.taxonomy
    tm = h.mapping(t.dataset) if t.dataset else None
    ttax = tm.taxonomy if tm else None
    same = tm is not None and tm.taxonomy.name == stax.name

    # target class (or node) -> stored target value and name
    if t.kind == "tree":
        cut = np.arange(len(h.nodes))
        if t.level is not None:
            cut = np.array([next((a for a in h.ancestors(i) if h.nodes[a].level == t.level), i)
                            for i in range(len(h.nodes))])
        ignore, dtype = TREE_IGNORE, "uint16"

        def value_of(ref: int) -> tuple[int, str]:
            n = int(cut[ref])
            return n, h.nodes[n].name
    else:
        assert ttax is not None
        trains = train_ids(ttax) if t.kind == "trainids" else {}
        ignore = TRAIN_IGNORE if t.kind == "trainids" else no_class_value(ttax)
        dtype = "uint8" if t.kind == "trainids" else ttax.encoding.dtype

        def value_of(ref: int) -> tuple[int, str]:
            c = ttax.by_id(ref)  # type: ignore[union-attr]
            v = trains[ref] if t.kind == "trainids" else ttax.stored_value(ref)  # type: ignore[union-attr]
            return v, ("ignore" if v == ignore else c.display)

    def resolve_target(ref: Any, path: Path, line: int | None) -> int:
        if t.kind == "tree":
            if str(ref) not in h.index:
                raise LabeltreeError(f"'{ref}' is no node of tree '{h.name}'", path, line)
            return h.index[str(ref)]
        c = ttax.find(ref)  # type: ignore[union-attr]
        if c is None or c.id < 0:
            raise LabeltreeError(f"'{ref}' is no class of target dataset '{ttax.name}' (use a class name, an id "  # type: ignore[union-attr]
                                 "or 'ignore')", path, line)
        return c.id

    forced = load_overrides(overrides, stax, resolve_target) if overrides is not None else {}
    mapped = _target_classes(h, t.dataset) if tm is not None else {}
    size = max(DTYPE_MAX[stax.encoding.dtype] + 1, stax.lut_size)
    lut = np.full(size, ignore, dtype=dtype)
    rules: list[ClassRule] = []
    for c in sorted(stax.classes, key=lambda c: c.id):
        if c.id < 0:
            continue  # exists only in tables (Cityscapes' license plate), never in label files
        node = sm.to_node.get(c.id)
        ref: int | None
        if c.id in forced:
            ref, rule = forced[c.id], OVERRIDE
        elif same:
            ref, rule = c.id, SAME
        elif node is None:
            ref, rule = None, SOURCE_IGNORE
        elif t.kind == "tree":
            ref, rule = node, EXACT
        else:
            ref, rule = _node_rule(h, node, mapped)
        value, name = value_of(ref) if ref is not None else (ignore, "ignore")
        sv = stax.stored_value(c.id)
        lut[sv] = value
        rules.append(ClassRule(c.id, c.display, sv, int(value), name, rule))
    palette = None
    if t.kind == "native" and ttax is not None and ttax.encoding.format == "png-palette-index":
        palette = ttax.palette()
    layout = reader_for(ttax).layout if ttax is not None else "tree"
    return Conversion(stax.name, t, h.name, rules, lut, ignore, dtype, layout, palette,
                      str(overrides) if overrides is not None else None,
                      idd_layout.column_of(ttax) if layout == "idd" and ttax is not None else None,
                      reader_for(stax).layout)


# -- where the outputs go (the target layout's own path functions) ----------------------------------

def conversion_tree(dataset: str, to: str) -> str:
    """The tree a conversion uses when none is named: the smallest bundled tree mapping source and target.

    A target `tree:LEVEL` needs only the source; a taxonomy file no bundled tree maps gets the default tree.
    """
    target = to.partition(":")[0]
    wanted = list(dict.fromkeys([dataset] + ([target] if target != "tree" else [])))
    try:
        found = bundled_for(wanted)
    except LabeltreeError:  # a taxonomy file that no bundled tree maps
        found = None
    if found is None and len(wanted) > 1:
        raise LabeltreeError(f"no bundled tree maps both {wanted[0]} and {wanted[1]}: pass --tree with a "
                             f"tree file that does (e.g. from `labeltree merge {wanted[0]} {wanted[1]}`)")
    return found[0] if found is not None else DEFAULT_TREE


# -- running it -----------------------------------------------------------------------------------

@dataclass
class ConvertReport:
    """What a conversion did: per source class, its pixels and what they became."""

    source: str
    target: str
    hierarchy: str
    out: str
    images: int = 0
    written: int = 0
    skipped: int = 0  # complete outputs from an earlier run (not re-read: not counted below)
    classes: list[dict[str, Any]] = field(default_factory=list)
    targets: list[dict[str, Any]] = field(default_factory=list)
    lists: dict[str, str] = field(default_factory=dict)
    without_image: int = 0

    @property
    def pixels(self) -> int:
        return sum(c["pixels"] for c in self.classes)

    @property
    def lost_pixels(self) -> int:
        """Pixels of a source class that the target could not take (coarser / outside): what was lost."""
        return sum(c["pixels"] for c in self.classes if c["target_value"] is None and c["rule"] in LOSSY)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(pixels=self.pixels, lost_pixels=self.lost_pixels)
        return d


def _convert_one(job: tuple[Sample, str, bool], conv: Conversion, taxonomy: Taxonomy, mask_mode: str,
                 unknown: Unknown, known: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Read one label, write its conversion, return its (stored values, pixel counts)."""
    sample, out, write = job
    labels = read_label(sample, taxonomy, mask_mode, unknown, known)
    if labels.dtype == np.uint8 and conv.dtype == "uint8":
        # 8 bit -> 8 bit: PIL's C histogram and point LUT are ~10x faster than np.bincount / fancy indexing
        im = Image.fromarray(labels)
        counts = np.asarray(im.histogram(), dtype=np.int64)
        converted = np.asarray(im.point(conv.lut[:256].tolist())) if write else None
    else:
        counts = np.bincount(labels.ravel())
        converted = conv.apply(labels) if write else None
    if converted is not None:
        write_png(out, converted, conv.palette)
    values = np.flatnonzero(counts)
    return values, counts[values]


def convert_dataset(dataset: str, root: str | Path, out: str | Path, to: str,
                    hierarchy: str | Path = "cityscapes+vistas+gtsdb", splits: list[str] | None = None,
                    overrides: str | Path | None = None, workers: int | None = None, force: bool = False,
                    mask_mode: str = DEFAULT_MASK_MODE, unknown: Unknown = "error", progress: bool = True,
                    gt: str | Path | None = None) -> ConvertReport:
    """Convert every label of `splits` under `root` into `out` in the target's layout, with split lists.

    Never writes under `root` or onto an input file; each file is written atomically; outputs already
    there are kept (a rerun resumes) unless `force`, and only when `out` was written with the same
    conversion; `out` is locked while this runs (a second convert into it is refused).
    """
    root, out = Path(root), Path(out)
    for split in splits or ():
        check_split_name(split)
    if workers is not None:
        check_workers(workers)  # before OUT is touched
    if inside(out, root) or (out.exists() and inside(root, out)):
        raise LabeltreeError(f"OUT must lie outside the dataset root {root.resolve()} (convert never writes into "
                             "its input): pick another folder", out)
    if mask_mode not in MODES:
        raise LabeltreeError(f"--mask-mode must be one of {', '.join(MODES)}, not '{mask_mode}'")
    h = load_hierarchy(hierarchy)
    conv = build_conversion(dataset, to, h, overrides)
    stax = h.mapping(conv.source).taxonomy  # by taxonomy name
    options: dict[str, Any] = {"gt": gt} if stax.annotation == "boxes" and gt is not None else {}
    reader = open_dataset(stax, root, unknown, **options)
    if stax.annotation == "boxes":
        reader.mask_mode = mask_mode
    adopt_out(out, conv.signature(), force)
    with locked_output(out, "OUT"):
        adopt_out(out, conv.signature(), force)  # again under the lock: another convert may have just finished there
        inputs = [Path(p) for p in (overrides, gt, h.path, dataset) if p is not None and Path(p).is_file()]
        return _convert(reader, conv, out, splits, inputs, force, workers, progress)


def _convert(reader: DatasetReader, conv: Conversion, out: Path, splits: list[str] | None, inputs: list[Path],
             force: bool, workers: int | None, progress: bool) -> ConvertReport:
    """The conversion itself, OUT locked: list the samples, check where they go, write labels and lists."""
    root, stax = reader.root, reader.taxonomy
    chosen = list(dict.fromkeys(splits)) if splits else reader.splits()  # a split named twice is converted once
    samples: list[Sample] = []
    for split in chosen:
        samples.extend(reader.samples(split))
    if not samples:
        raise LabeltreeError(f"no labelled samples in split(s) {', '.join(chosen)} under {root.resolve()}", root)
    for s in samples:  # a FIFO, device or giant among the inputs: refused before OUT is touched (a stat each)
        for f in (s.label, s.image):
            if f is not None:
                check_input(f, "label" if f == s.label else "image")
    paths = [output_path(out, conv, s, i) for i, s in enumerate(samples)]
    manifest = out / MANIFEST
    lists = [out / f"{split}.txt" for split in dict.fromkeys(s.split for s in samples)]
    check_out_paths(out, paths + lists + [manifest], inputs)
    report = ConvertReport(conv.source, conv.target.spec, conv.hierarchy, str(out), images=len(samples))
    lines = _list_lines(report, out, samples, paths)
    out.mkdir(parents=True, exist_ok=True)
    write_json(manifest, conv.signature())
    jobs = [(s, str(p), force or not p.exists()) for s, p in zip(samples, paths, strict=True)]
    todo = [j for j in jobs if j[2]]
    report.skipped = len(jobs) - len(todo)
    size = len(conv.lut)
    pixels = np.zeros(size, dtype=np.int64)
    images = np.zeros(size, dtype=np.int64)
    fn = functools.partial(_convert_one, conv=conv, taxonomy=stax, mask_mode=reader.mask_mode,
                           unknown=reader.unknown, known=reader.known)
    for values, counts in pmap(fn, todo, workers, desc=f"convert {conv.source} -> {conv.target.spec}",
                               progress=progress, chunksize=4):
        pixels[values] += counts
        images[values] += 1
        report.written += 1
    _fill_report(report, conv, pixels, images)
    _write_lists(report, out, lines)
    return report


def _fill_report(report: ConvertReport, conv: Conversion, pixels: np.ndarray, images: np.ndarray) -> None:
    by_target: dict[int, dict[str, Any]] = {}
    for r in conv.rules:
        px, n = int(pixels[r.source_value]), int(images[r.source_value])
        ignored = r.target_value == conv.ignore
        report.classes.append({"source_id": r.source_id, "source_name": r.source_name, "pixels": px, "images": n,
                               "target_value": None if ignored else r.target_value, "target_name": r.target_name,
                               "rule": r.rule})
        t = by_target.setdefault(r.target_value, {"target_value": None if ignored else r.target_value,
                                                  "target_name": r.target_name, "pixels": 0, "sources": []})
        t["pixels"] += px
        if px:
            t["sources"].append(r.source_name)
    report.targets = [by_target[k] for k in sorted(by_target)]


def _list_lines(report: ConvertReport, out: Path, samples: list[Sample], paths: list[Path]) -> dict[str, list[str]]:
    """The split lists' lines ('IMAGE LABEL', relative to OUT, quoted where needed), made before any label is
    written so that a name no list can hold is refused first; samples without a photo are counted."""
    lines: dict[str, list[str]] = {}
    for s, p in zip(samples, paths, strict=True):
        if s.image is None:
            report.without_image += 1
            continue
        lines.setdefault(s.split, []).append(list_line(s.image, p, out))
    return lines


def _write_lists(report: ConvertReport, out: Path, lines: dict[str, list[str]]) -> None:
    """`{split}.txt` per split (see labeltree.datasets.split_list)."""
    for split, rows in lines.items():
        target = out / f"{split}.txt"
        write_text(target, "\n".join(rows) + "\n")
        report.lists[split] = str(target)


def render_report(report: ConvertReport, all_classes: bool = False) -> str:
    """The terminal table: per source class, its pixels and where they went."""
    rows = [c for c in report.classes if all_classes or c["pixels"]]
    w = max([len(c["source_name"]) for c in rows] + [12])
    tw = max([len(c["target_name"]) for c in rows] + [6])
    total = max(report.pixels, 1)
    out = [f"{report.source} -> {report.target} (tree {report.hierarchy}): {report.written} written, "
           f"{report.skipped} kept from an earlier run, in {report.out}",
           f"{'id':>5}  {'source class':<{w}}  {'pixels':>12}  {'share':>6}  {'-> target':<{tw + 3}}  rule"]
    for c in rows:
        out.append(f"{c['source_id']:>5}  {c['source_name']:<{w}}  {c['pixels']:>12}  {c['pixels'] / total:>6.1%}  "
                   f"-> {c['target_name']:<{tw}}  {c['rule']}")
    out.append(f"lost (coarser than target or outside its tree): {report.lost_pixels} px "
               f"({report.lost_pixels / total:.2%}) of {report.pixels} counted")
    if report.skipped:
        out.append(f"({report.skipped} outputs kept from an earlier run were not re-read: not counted above)")
    if report.without_image:
        out.append(f"{report.without_image} labels without their photo are left out of the split lists")
    return "\n".join(out)
