"""`labeltree export`: a checkpoint -> one ONNX file that takes uint8 images and ends in labels.

The graph holds everything between a photo and an answer, so that a deployment needs nothing of
labeltree: the ImageNet normalisation, the network, each classifier's argmax and the hard top-down
cascade of DESIGN §2.5 as gathers through tables compiled from the tree, then the chosen output
(tree nodes, one map per level, a dataset's own ids, or each classifier's probabilities). Names,
colours and tables ride along in metadata_props (labeltree.infer.onnx_meta; run by labeltree.infer.onnx).

The TorchScript exporter is used (`dynamo=False`): it exports this network in about a second, the
torch.export one takes ~20 s for the tiny backbone and needs onnxscript besides.
"""

from __future__ import annotations

import io
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from labeltree import __version__
from labeltree.core.confidence import check_min_confidence, confident_cascade
from labeltree.core.hierarchy import cascade, tree_hash
from labeltree.errors import LabeltreeError
from labeltree.fsutil import atomic_path
from labeltree.infer import onnx_meta
from labeltree.train.predict import model_tables

KINDS = ("leaves", "levels", "scores")  # and dataset:NAME
LAYOUTS = onnx_meta.LAYOUTS
MIN_OPSET = 13  # Softmax / ArgMax on one axis, Gather as used here
DEFAULT_OPSET = 17
MIN_SIZE = 8  # the network runs at 1/8 of the input
MAX_SIDE = onnx_meta.MAX_SIDE  # pixels of a fixed input side (as a training crop's); what a model may carry
MAX_BATCH = onnx_meta.MAX_BATCH
MAX_TRACE_PIXELS = 16 << 20  # batch x height x width the export traces at: activations must fit in memory
TRACE_SIZE = (32, 48)  # dummy image for tracing a dynamic-size graph (any size traces the same graph)


def max_opset() -> int:
    """The newest opset torch's TorchScript exporter writes."""
    from torch.onnx import _constants

    return int(getattr(_constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", 20))


def parse_output(text: str) -> tuple[str, str | None]:
    """`leaves` | `levels` | `scores` | `dataset:NAME` -> (kind, dataset)."""
    t = text.strip()
    if t in KINDS:
        return t, None
    if t.startswith("dataset:") and t[len("dataset:"):].strip():
        return "dataset", t[len("dataset:"):].strip()
    raise LabeltreeError(f"--output: expected leaves, levels, scores or dataset:NAME (e.g. dataset:cityscapes), "
                         f"got {text!r}")


def parse_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise LabeltreeError(f"--size: expected HxW like 512x706, got {text!r}") from None
    return h, w


@dataclass
class ExportResult:
    path: Path
    outputs: list[dict[str, Any]]
    input_shape: list[int | str]
    opset: int


class DeployGraph(nn.Module):
    """uint8 images -> normalise -> network -> argmax + cascade (or softmax) -> gathers into the output ids.

    `owners[j]` / `children[j]`: the node owning classifier j and its logit -> node table (None: the flat
    model, whose one classifier's argmax is the class). `tables[i]`: output i = tables[i][decision] (None:
    the decision itself). Everything is a buffer, so it becomes a constant of the graph.
    """

    def __init__(self, net: nn.Module, mean: torch.Tensor, std: torch.Tensor, owners: list[int] | None,
                 children: list[np.ndarray], tables: list[np.ndarray | None], dtypes: list[torch.dtype],
                 scores: bool, nhwc: bool, back_off: BackOff | None = None):
        super().__init__()
        self.back_off = back_off or BackOff()
        self.net = net
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.owners = owners
        self.n_children = len(children)
        for j, ch in enumerate(children):
            self.register_buffer(f"children{j}", torch.as_tensor(ch, dtype=torch.int64))
        self.has_table = [t is not None for t in tables]
        for i, t in enumerate(tables):
            if t is not None:
                self.register_buffer(f"table{i}", torch.as_tensor(t, dtype=torch.int64))
        self.dtypes = dtypes
        self.scores = scores
        self.nhwc = nhwc

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = images.permute(0, 3, 1, 2) if self.nhwc else images
        x = (x.float() - self.mean) / self.std  # as labeltree.train.data.normalise
        logits = self.net(x)
        b = self.back_off
        probs_needed = self.scores or b.confidence or b.min_confidence > 0
        if b.temperatures is not None and probs_needed:  # an argmax alone is the same without them
            logits = [lg / t for lg, t in zip(logits, b.temperatures, strict=True)]
        if self.scores:
            return tuple(lg.softmax(1) for lg in logits)
        children = [getattr(self, f"children{j}") for j in range(self.n_children)]
        conf = None
        if self.owners is None:
            cur = logits[0].argmax(1)
            conf = logits[0].softmax(1).amax(1) if b.confidence else None
        elif probs_needed:  # path confidence and back-off (labeltree.core.confidence), from the probabilities
            pc = confident_cascade([lg.softmax(1) for lg in logits], self.owners, children, b.levels, b.min_confidence)
            cur, conf = pc.nodes, pc.confidence
        else:  # the cascade, with the argmax of the logits (the softmax's decisions, without the exps)
            cur = cascade(logits, self.owners, children)
        outs = []
        for i, dt in enumerate(self.dtypes):
            v = getattr(self, f"table{i}")[cur] if self.has_table[i] else cur
            outs.append(v.to(dt))
        if b.confidence:
            assert conf is not None
            outs.append(conf)
        return tuple(outs)


@dataclass
class BackOff:
    """What the graph does besides the argmax (issue 28): calibrated temperatures per classifier, back-off below
    `min_confidence`, and a `confidence` output (float32 path confidence per pixel)."""

    min_confidence: float = 0.0
    confidence: bool = False
    temperatures: list[float] | None = None
    levels: list[int] | None = None  # each classifier's level (1 = the root's)


def _value_names(pred: Any, key: str, values: set[int], fill: int) -> dict[str, str]:
    tax = pred.h.mapping(key).taxonomy
    names = {tax.stored_value(c.id): c.name for c in tax.classes if c.id >= 0}
    return {str(v): names.get(v, "unlabeled" if v == fill else f"value {v}") for v in sorted(values)}


def plan_outputs(pred: Any, kind: str, dataset: str | None, tables: dict[str, Any],
                 ) -> tuple[list[dict[str, Any]], list[np.ndarray | None], list[torch.dtype]]:
    """Per graph output: its metadata entry, its gather table (None = the decision) and dtype."""
    h, flat = pred.h, pred.flat
    if kind == "scores":
        if flat is not None:
            return [{"name": "scores_0", "kind": "scores", "classifier": "flat", "dtype": "float32",
                     "classes": flat.names(h)}], [], []
        return ([{"name": f"scores_{j}", "kind": "scores", "classifier": c.name, "dtype": "float32",
                  "classes": [h.nodes[k].name for k in c.children]} for j, c in enumerate(h.classifiers)], [], [])
    # what the decision is (a tree node, or the flat model's class) and which nodes it can reach
    to_node = tables["flat_nodes"]
    reach = sorted(set(to_node)) if flat is not None else list(h.leaves)

    def through(node_table: np.ndarray, fill: int) -> np.ndarray:  # node table -> decision table
        if flat is None:
            return node_table
        return np.append(node_table, fill)[np.asarray(to_node)]  # class of no node (-1) -> fill

    def names(ids: list[int]) -> dict[str, str]:
        return {str(i): (h.nodes[i].name if i >= 0 else "unlabeled") for i in ids}

    if kind == "leaves":
        table = None if flat is None else np.asarray(to_node, dtype=np.int64)
        return [{"name": "leaves", "kind": "nodes", "dtype": "int32", "ids": names(reach)}], [table], [torch.int32]
    if kind == "levels":
        if flat is not None:
            raise LabeltreeError("--output levels: the flat model has no cascade levels; export leaves, "
                                 "dataset:NAME or scores")
        outs, tabs = [], []
        for k, lut in enumerate(tables["levels"], start=1):
            lut_a = np.asarray(lut, dtype=np.int64)
            outs.append({"name": f"level{k}", "kind": "level", "level": k, "dtype": "int32",
                         "ids": names(sorted(set(lut_a[reach].tolist())))})
            tabs.append(lut_a)
        return outs, tabs, [torch.int32] * len(outs)
    assert dataset is not None
    key = h.mapping(dataset).dataset  # unknown dataset -> one line naming the tree
    d = tables["datasets"][key]
    values = np.asarray(d["values"], dtype=np.int64)
    table = through(values, d["fill"])
    reached = set(table.tolist()) if flat is not None else set(values[reach].tolist())
    entry = {"name": key, "kind": "dataset", "dataset": key, "dtype": d["dtype"],
             "ids": _value_names(pred, key, reached, d["fill"])}
    # uint16 has no TorchScript-exporter dtype: int32 in the traced graph, one Cast appended after export
    return [entry], [table], [torch.uint8 if d["dtype"] == "uint8" else torch.int32]


def _cast_outputs(model: Any, outputs: list[dict[str, Any]]) -> None:
    """Append a Cast to UINT16 for each uint16 dataset output (ONNX: rename, cast back to the name)."""
    from onnx import TensorProto, helper

    for o in outputs:
        if o["dtype"] != "uint16":
            continue
        name, raw = o["name"], o["name"] + "_int32"
        for node in model.graph.node:
            node.output[:] = [raw if x == name else x for x in node.output]
        model.graph.node.append(helper.make_node("Cast", [raw], [name], to=TensorProto.UINT16, name=f"{name}_cast"))
        for vi in model.graph.output:
            if vi.name == name:
                vi.type.tensor_type.elem_type = TensorProto.UINT16


def build_graph(pred: Any, output: str = "leaves", layout: str = "nchw", min_confidence: float = 0.0,
                confidence: bool = False) -> tuple[DeployGraph, list[dict[str, Any]], dict[str, Any]]:
    """A Predictor's network wrapped for export: (graph in eval mode, its outputs' metadata, the tables)."""
    from labeltree.train.data import mean_std

    kind, dataset = parse_output(output)
    h, flat = pred.h, pred.flat
    if dataset is not None:
        h.mapping(dataset)
    tables = model_tables(h, flat)
    outs, gather, dtypes = plan_outputs(pred, kind, dataset, tables)
    if min_confidence > 0 and flat is not None:
        raise LabeltreeError("--min-confidence: a flat model has no ancestors to back off to; export it without")
    if confidence and kind == "scores":
        raise LabeltreeError("--confidence: an --output scores model gives the probabilities themselves; predict "
                             "computes the confidence from them (export leaves, levels or dataset:NAME with it)")
    if confidence:
        outs.append({"name": "confidence", "kind": "confidence", "dtype": "float32",
                     "meaning": "path confidence: product of the chosen probabilities from the root to the output"})
    back_off = BackOff(min_confidence, confidence, pred.temperatures, [c.level for c in h.classifiers])
    m, s = mean_std(pred.cfg.model.normalise)
    mean = torch.tensor(m).view(1, 3, 1, 1) * 255
    std = torch.tensor(s).view(1, 3, 1, 1) * 255
    graph = DeployGraph(pred.model, mean, std, None if flat is not None else [c.node for c in h.classifiers],
                        [] if flat is not None else h.child_table, gather, dtypes, kind == "scores",
                        layout == "nhwc", back_off).eval()
    return graph, outs, tables


def _check_options(out: Path, checkpoint: Path, output: str, layout: str, opset: int,
                   size: tuple[int, int] | None, batch: int | None, force: bool, min_confidence: float) -> float:
    """Every export option checked before the checkpoint is read: one line each (exit 2)."""
    parse_output(output)
    min_confidence = check_min_confidence(min_confidence)
    if out.suffix.lower() != ".onnx":
        raise LabeltreeError("the output file must end in .onnx (predict and evaluate recognise models by it)", out)
    if layout not in LAYOUTS:
        raise LabeltreeError(f"--layout: expected nchw or nhwc, got {layout!r}")
    if not MIN_OPSET <= opset <= max_opset():
        raise LabeltreeError(f"--opset: {opset} is outside {MIN_OPSET}..{max_opset()} (what this torch exports)")
    if size is not None and (min(size) < MIN_SIZE or max(size) > MAX_SIDE):
        raise LabeltreeError(f"--size: {size[1]}x{size[0]}: each side must be at least {MIN_SIZE} pixels and at most "
                             f"{MAX_SIDE}")
    if batch is not None and not 1 <= batch <= MAX_BATCH:
        raise LabeltreeError(f"--batch: must be at least 1 and at most {MAX_BATCH}, got {batch}")
    if size is not None and (batch or 1) * size[0] * size[1] > MAX_TRACE_PIXELS:
        raise LabeltreeError(f"--batch {batch} x --size {size[1]}x{size[0]} is over {MAX_TRACE_PIXELS} pixels: the "
                             "export runs the network once at that shape; export a smaller fixed shape or --dynamic")
    if out.exists() and out.resolve() == checkpoint.resolve():
        raise LabeltreeError("the output would overwrite the checkpoint; choose another file name", out)
    if out.exists() and not force:
        raise LabeltreeError("exists; pass --force to replace it", out)
    return min_confidence


def _metadata(pred: Any, output: str, outs: list[dict[str, Any]], layout: str, input_shape: list[int | str],
              size: tuple[int, int] | None, batch: int | None, tables: dict[str, Any], checkpoint: Path,
              min_confidence: float) -> dict[str, str]:
    """The model's metadata_props (docs/deploy.md): what a runtime needs to read the outputs, validated on load."""
    from labeltree.train.data import mean_std

    cfg, h, flat = pred.cfg, pred.h, pred.flat
    resize = {d.name: list(d.resize) for d in list(cfg.datasets) + list(cfg.eval_datasets) if d.resize}
    return {
        onnx_meta.K_FORMAT: onnx_meta.FORMAT,
        onnx_meta.K_VERSION: __version__,
        onnx_meta.K_TREE: h.name,
        onnx_meta.K_TREE_HASH: tree_hash(h),
        onnx_meta.K_MODEL: json.dumps({"kind": cfg.model.kind, "backbone": cfg.model.backbone,
                                "classifiers": [c.name for c in h.classifiers] if flat is None else ["flat"]}),
        onnx_meta.K_OUTPUT: output.strip(),
        onnx_meta.K_OUTPUTS: json.dumps(outs),
        onnx_meta.K_MEAN: json.dumps(list(mean_std(cfg.model.normalise)[0])),
        onnx_meta.K_STD: json.dumps(list(mean_std(cfg.model.normalise)[1])),
        onnx_meta.K_LAYOUT: layout,
        onnx_meta.K_INPUT: json.dumps({"name": onnx_meta.INPUT, "dtype": "uint8", "shape": input_shape,
                                "size": list(size) if size else None, "batch": batch,
                                "normalise": "(x - 255 * mean) / (255 * std), RGB, per channel"}),
        onnx_meta.K_RESIZE: json.dumps(resize),
        onnx_meta.K_TABLES: json.dumps(tables, separators=(",", ":")),
        onnx_meta.K_SOURCE: json.dumps({"checkpoint": checkpoint.name}),
        onnx_meta.K_CONFIDENCE: json.dumps({"min_confidence": min_confidence, "temperatures": pred.temperatures}),
    }


def export_onnx(checkpoint: str | Path, out: str | Path, output: str = "leaves", size: tuple[int, int] | None = None,
                batch: int | None = None, opset: int = DEFAULT_OPSET, layout: str = "nchw",
                force: bool = False, weights: str = "ema", min_confidence: float = 0.0,
                confidence: bool = False) -> ExportResult:
    """Write `out` (atomically; an existing file only with `force`). size / batch None = dynamic.

    `min_confidence`: the graph backs off to the deepest node whose path confidence is at least this;
    `confidence`: a float32 `confidence` output. Calibrated temperatures of the checkpoint are in the graph."""
    try:
        import onnx
    except ImportError:
        raise LabeltreeError(f"the onnx package is not installed; install it with: {onnx_meta.INSTALL_HINT}") from None
    from labeltree.train.predict import load_predictor

    out, checkpoint = Path(out), Path(checkpoint)
    min_confidence = _check_options(out, checkpoint, output, layout, opset, size, batch, force, min_confidence)

    with warnings.catch_warnings():  # the backbone's "no model.pretrained" notice: the weights are in the checkpoint
        warnings.simplefilter("ignore", UserWarning)
        pred = load_predictor(checkpoint, "cpu", weights)  # another tree's checkpoint: one line (heads differ)
    graph, outs, tables = build_graph(pred, output, layout, min_confidence, confidence)
    h = pred.h

    H, W = size or TRACE_SIZE
    shape = (batch or 1, H, W, 3) if layout == "nhwc" else (batch or 1, 3, H, W)
    dummy = torch.zeros(shape, dtype=torch.uint8)
    dyn: dict[int, str] = {}
    if batch is None:
        dyn[0] = "batch"
    if size is None:
        dyn.update({1: "height", 2: "width"} if layout == "nhwc" else {2: "height", 3: "width"})
    axes: dict[str, dict[int, str]] = {}
    if dyn:
        axes[onnx_meta.INPUT] = dyn
        for o in outs:
            hw = {2: "height", 3: "width"} if o["kind"] == "scores" else {1: "height", 2: "width"}
            axes[o["name"]] = ({0: "batch"} if batch is None else {}) | (hw if size is None else {})
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation notice and tracer remarks
        with torch.no_grad():
            torch.onnx.export(graph, (dummy,), buf, dynamo=False, input_names=[onnx_meta.INPUT],
                              output_names=[o["name"] for o in outs], dynamic_axes=axes or None,
                              opset_version=opset, do_constant_folding=True)
    model = onnx.load_from_string(buf.getvalue())
    _cast_outputs(model, outs)

    cfg = pred.cfg
    input_shape: list[int | str] = [dyn.get(i, s) for i, s in enumerate(shape)]
    meta = _metadata(pred, output, outs, layout, input_shape, size, batch, tables, checkpoint, min_confidence)
    del model.metadata_props[:]
    for k, v in meta.items():
        model.metadata_props.add(key=k, value=v)
    model.producer_name, model.producer_version = "labeltree", __version__
    model.doc_string = (f"labeltree {cfg.model.kind} segmentation network, tree '{h.name}': uint8 {layout.upper()} "
                        f"RGB images -> {output.strip()} (see metadata_props labeltree.*)")
    onnx.checker.check_model(model, full_check=True)
    with atomic_path(out) as tmp:
        onnx.save(model, str(tmp))
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # the temp file is 0600; the model gets the mode any new file would
    return ExportResult(out, outs, input_shape, opset)
