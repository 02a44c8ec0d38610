"""What an exported model carries besides its graph (ONNX metadata_props), and its validation on load.

`labeltree export` (labeltree.export.graph) writes these keys; `OnnxModel` reads them through
`read_metadata`, which checks them as a taxonomy file is checked: a table shorter than the node ids, a
training scale of 0x0 or 40000x40000, a layout that does not fit the graph or an output the graph lacks
is one line naming the file and the key (exit 2), never an IndexError or an ONNX Runtime error later.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labeltree.errors import LabeltreeError

FORMAT = "labeltree-onnx-1"
INPUT = "images"
INSTALL_HINT = "pip install 'labeltree[deploy]'"
LAYOUTS = ("nchw", "nhwc")
MAX_SIDE = 8192  # the largest image side a model runs at (a training scale or a fixed export --size)
MAX_BATCH = 256  # the largest fixed batch (export --batch)
DTYPES = ("uint8", "uint16")

# metadata_props keys (written by labeltree.export.graph, read here)
K_FORMAT = "labeltree.format"
K_VERSION = "labeltree.version"
K_TREE = "labeltree.tree"
K_TREE_HASH = "labeltree.tree_sha256"
K_MODEL = "labeltree.model"
K_OUTPUT = "labeltree.output"
K_OUTPUTS = "labeltree.outputs"
K_MEAN = "labeltree.mean"
K_STD = "labeltree.std"
K_LAYOUT = "labeltree.layout"
K_INPUT = "labeltree.input"
K_RESIZE = "labeltree.resize"
K_TABLES = "labeltree.tables"
K_SOURCE = "labeltree.source"
K_CONFIDENCE = "labeltree.confidence"  # {"min_confidence": T, "temperatures": [...] | null}; absent: T = 0


@dataclass
class OnnxMeta:
    """The validated metadata of one exported model."""

    tree: str
    tree_sha256: str
    output: str  # --output as given to export (leaves, levels, scores, dataset:NAME)
    outputs: list[dict[str, Any]]  # per graph output: name, kind (nodes / level / dataset / scores), ...
    model_info: dict[str, Any]
    layout: str
    size: tuple[int, int] | None  # a fixed network size, or None (any size)
    batch: int | None
    resize: dict[str, tuple[int, int]]  # dataset -> training scale (H, W)
    tables: dict[str, Any]  # labeltree.train.predict.model_tables


class _Check:
    """One line naming the file and the key for whatever is wrong."""

    def __init__(self, path: Path):
        self.path = path

    def fail(self, key: str, what: str) -> LabeltreeError:
        return LabeltreeError(f"labeltree metadata is incomplete or wrong: {key}: {what}; re-export the model "
                              "with `labeltree export`", self.path)

    def json(self, meta: dict[str, str], key: str, kind: type) -> Any:
        try:
            value = json.loads(meta[key])
        except KeyError:
            raise self.fail(key, "missing") from None
        except ValueError:
            raise self.fail(key, "not JSON") from None
        if not isinstance(value, kind):
            raise self.fail(key, f"expected a JSON {kind.__name__}, got {type(value).__name__}")
        return value

    def ints(self, key: str, what: str, values: Any, lo: int, hi: int, n: int | None = None) -> list[int]:
        """`values`: a list (of length n) of integers in [lo, hi)."""
        if not isinstance(values, list) or (n is not None and len(values) != n):
            have = len(values) if isinstance(values, list) else type(values).__name__
            raise self.fail(key, f"{what} has {have} entries, expected " + (f"{n} (one per node)" if n else "a list"))
        bad = [v for v in values if type(v) is not int or not lo <= v < hi]
        if bad:
            bad = bad[0]
            raise self.fail(key, f"{what} holds {bad!r}, expected integers in {lo}..{hi - 1}")
        return values

    def size(self, key: str, what: str, value: Any) -> tuple[int, int]:
        if not (isinstance(value, list) and len(value) == 2 and all(type(v) is int for v in value)):
            raise self.fail(key, f"{what}: expected [height, width], got {value!r}")
        if not all(1 <= v <= MAX_SIDE for v in value):
            raise self.fail(key, f"{what}: {value[0]}x{value[1]} is outside 1..{MAX_SIDE} pixels per side")
        return value[0], value[1]


def _tables(c: _Check, t: dict[str, Any]) -> dict[str, Any]:
    nodes = t.get("nodes")
    if not isinstance(nodes, list) or not nodes or not all(isinstance(x, str) for x in nodes):
        raise c.fail(K_TABLES, "nodes: expected a list of node names")
    n = len(nodes)
    colors = t.get("colors")
    if not isinstance(colors, list) or len(colors) != n:
        raise c.fail(K_TABLES, f"colors has {len(colors) if isinstance(colors, list) else 0} entries for {n} nodes")
    for rgb in colors:
        c.ints(K_TABLES, "a colour", rgb, 0, 256, 3)
    if not isinstance(t.get("levels"), list):
        raise c.fail(K_TABLES, "levels: expected a list of node tables")
    for k, lut in enumerate(t["levels"], start=1):
        c.ints(K_TABLES, f"level {k} table", lut, 0, n, n)
    if not isinstance(t.get("classifiers"), list):
        raise c.fail(K_TABLES, "classifiers: expected a list")
    for cl in t["classifiers"]:
        if not isinstance(cl, dict):
            raise c.fail(K_TABLES, "classifiers: expected {node, name, children} entries")
        c.ints(K_TABLES, "a classifier's node", [cl.get("node")], 0, n)
        c.ints(K_TABLES, f"classifier {cl.get('name')!r} children", cl.get("children"), 0, n)
    if t.get("flat_nodes") is not None:
        c.ints(K_TABLES, "flat_nodes", t["flat_nodes"], -1, n)
    if not isinstance(t.get("datasets"), dict):
        raise c.fail(K_TABLES, "datasets: expected a mapping")
    for key, d in t["datasets"].items():
        if not isinstance(d, dict) or d.get("dtype") not in DTYPES or not isinstance(d.get("name"), str):
            raise c.fail(K_TABLES, f"dataset '{key}': expected name, values, fill and dtype (uint8 or uint16)")
        top = 256 if d["dtype"] == "uint8" else 65536
        c.ints(K_TABLES, f"dataset '{key}' values", d.get("values"), 0, top, n)
        c.ints(K_TABLES, f"dataset '{key}' fill", [d.get("fill")], 0, top)
    return t


def _outputs(c: _Check, outputs: list[Any], tables: dict[str, Any], graph_outputs: dict[str, list[Any]],
             ) -> list[dict[str, Any]]:
    if not outputs:
        raise c.fail(K_OUTPUTS, "no outputs")
    n_levels, flat = len(tables["levels"]), tables.get("flat_nodes") is not None
    for o in outputs:
        if not isinstance(o, dict) or o.get("kind") not in ("nodes", "level", "dataset", "scores", "confidence"):
            raise c.fail(K_OUTPUTS, f"{o!r} is no output entry (kind nodes, level, dataset, scores or confidence)")
        if o.get("name") not in graph_outputs:
            raise c.fail(K_OUTPUTS, f"output {o.get('name')!r} is not in the graph (it has {', '.join(graph_outputs)})")
        if o["kind"] == "level" and o.get("level") not in range(1, n_levels + 1):
            raise c.fail(K_OUTPUTS, f"output '{o['name']}': level {o.get('level')!r} is outside 1..{n_levels}")
        if o["kind"] == "dataset" and o.get("dataset") not in tables["datasets"]:
            raise c.fail(K_OUTPUTS, f"output '{o['name']}': dataset {o.get('dataset')!r} has no table")
    scores = [o for o in outputs if o["kind"] == "scores"]
    classes = [len(tables["flat_nodes"])] if flat else [len(cl["children"]) for cl in tables["classifiers"]]
    if scores and len(scores) != len(classes):
        raise c.fail(K_OUTPUTS, f"{len(scores)} score outputs for {len(classes)} classifier(s)")
    for o, n in zip(scores, classes if scores else [], strict=True):
        shape = graph_outputs[o["name"]]  # [B, C, H, W]; C where the graph fixes it, else the output's class names
        have = shape[1] if len(shape) == 4 and isinstance(shape[1], int) else len(o.get("classes") or [])
        if have != n:
            raise c.fail(K_TABLES, f"output '{o['name']}' has {have} classes, its classifier's table {n}")
    return outputs


def _input(c: _Check, meta: dict[str, str], layout: str, shape: list[Any]) -> tuple[tuple[int, int] | None, int | None]:
    """The fixed size / batch of the input, checked against the graph's input shape (channels where the layout
    says)."""
    inp = c.json(meta, K_INPUT, dict)
    size = c.size(K_INPUT, "size", inp["size"]) if inp.get("size") is not None else None
    batch = inp.get("batch")
    if batch is not None and (type(batch) is not int or not 1 <= batch <= MAX_BATCH):
        raise c.fail(K_INPUT, f"batch {batch!r} is outside 1..{MAX_BATCH}")
    if len(shape) != 4:
        raise c.fail(K_LAYOUT, f"the graph's input has {len(shape)} axes, not 4")
    hw, ch = ((1, 2), 3) if layout == "nhwc" else ((2, 3), 1)
    if shape[ch] != 3:  # an exported graph fixes its channel axis
        raise c.fail(K_LAYOUT, f"{layout} does not fit the graph's input shape {shape} (3 colour channels at "
                               f"axis {ch})")
    fixed = [shape[i] for i in hw]
    static = all(isinstance(v, int) for v in fixed)  # an export with --size fixes both sides, else neither
    if (list(size) if size else None) != (fixed if static else None):
        raise c.fail(K_INPUT, f"size {size} does not fit the graph's input shape {shape} ({layout})")
    if isinstance(shape[0], int) and batch != shape[0]:
        raise c.fail(K_INPUT, f"batch {batch} does not fit the graph's input shape {shape}")
    return size, batch


def read_metadata(meta: dict[str, str], path: Path, inputs: list[tuple[str, list[Any]]],
                  graph_outputs: dict[str, list[Any]]) -> OnnxMeta:
    """Validated metadata of the model at `path`; `inputs` / `graph_outputs`: the session's names and shapes."""
    c = _Check(path)
    if meta.get(K_FORMAT) != FORMAT:
        raise LabeltreeError(f"an ONNX model without labeltree metadata ({K_FORMAT} = {FORMAT}); export one "
                             "with `labeltree export CHECKPOINT OUT.onnx`", path)
    layout = meta.get(K_LAYOUT, "nchw")
    if layout not in LAYOUTS:
        raise c.fail(K_LAYOUT, f"{layout!r} is neither nchw nor nhwc")
    if [name for name, _ in inputs] != [INPUT]:
        raise c.fail(K_INPUT, f"the graph's inputs are {[name for name, _ in inputs]}, expected ['{INPUT}']")
    size, batch = _input(c, meta, layout, list(inputs[0][1]))
    tables = _tables(c, c.json(meta, K_TABLES, dict))
    outputs = _outputs(c, c.json(meta, K_OUTPUTS, list), tables, graph_outputs)
    resize = {str(k): c.size(K_RESIZE, f"dataset '{k}'", v) for k, v in c.json(meta, K_RESIZE, dict).items()}
    return OnnxMeta(tree=meta.get(K_TREE, ""), tree_sha256=meta.get(K_TREE_HASH, ""), output=meta.get(K_OUTPUT, ""),
                    outputs=outputs, model_info=c.json(meta, K_MODEL, dict), layout=layout, size=size, batch=batch,
                    resize=resize, tables=tables)


def read_back_off(meta: dict[str, str], path: Path) -> float:
    """The back-off threshold the graph was exported with (`export --min-confidence`; 0 for older exports)."""
    if K_CONFIDENCE not in meta:
        return 0.0
    c = _Check(path)
    value = c.json(meta, K_CONFIDENCE, dict).get("min_confidence", 0.0)
    if not isinstance(value, int | float) or not 0 <= value <= 1:
        raise c.fail(K_CONFIDENCE, f"min_confidence {value!r} is no probability in 0..1")
    return float(value)
