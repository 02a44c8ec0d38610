"""An exported model (`labeltree export`) in ONNX Runtime: no torch, only numpy, PIL and onnxruntime.

The .onnx file is self-contained: besides the graph (uint8 images in, labels or scores out), its
metadata (labeltree.infer.onnx_meta, validated on load) carries what `predict` / `evaluate
--checkpoint` need to write the same files as a `.pt`: node names and colours, the per-level and
per-dataset tables, the classifiers' children (to run the cascade on a `scores` model) and each
dataset's training scale.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from labeltree.core.confidence import confident_cascade
from labeltree.core.hierarchy import Hierarchy, cascade, tree_hash
from labeltree.datasets.resize import nearest_resize, resize_photo
from labeltree.errors import LabeltreeError
from labeltree.infer.base import Model, Prediction
from labeltree.infer.onnx_meta import INPUT, INSTALL_HINT, read_back_off, read_metadata


def import_ort() -> Any:
    """onnxruntime, or one line saying how to install it (it is the optional `deploy` extra)."""
    try:
        import onnxruntime
    except ImportError:
        raise LabeltreeError(f"ONNX Runtime is not installed; install it with: {INSTALL_HINT}") from None
    return onnxruntime


def providers_for(device: str | None) -> list[Any]:
    """ONNX Runtime execution providers: CUDA where present (or asked for: cuda, cuda:N), else CPU."""
    ort = import_ort()
    have = ort.get_available_providers()
    if device is None or device == "auto":
        return (["CUDAExecutionProvider"] if "CUDAExecutionProvider" in have else []) + ["CPUExecutionProvider"]
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device == "cuda" or device.startswith("cuda:"):
        if "CUDAExecutionProvider" not in have:
            raise LabeltreeError(f"--device {device}: this onnxruntime has no CUDA execution provider (it has "
                                 f"{', '.join(have)}); install onnxruntime-gpu or use --device cpu")
        idx = device.split(":", 1)[1] if ":" in device else "0"
        if not idx.isdigit():
            raise LabeltreeError(f"--device {device}: expected cuda or cuda:N")
        return [("CUDAExecutionProvider", {"device_id": int(idx)}), "CPUExecutionProvider"]
    raise LabeltreeError(f"--device {device}: expected cpu, cuda or cuda:N")


class OnnxModel(Model):
    """An exported labeltree model in an ONNX Runtime session, with the tree tables from its metadata."""

    def __init__(self, path: str | Path, device: str | None = None):
        ort = import_ort()
        path = Path(path)
        if not path.exists():
            raise LabeltreeError("ONNX model not found", path)
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=providers_for(device))
        except LabeltreeError:
            raise
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own types for a corrupt file
            msg = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
            raise LabeltreeError(f"cannot load the ONNX model ({msg}); the file is truncated or no ONNX model",
                                 path) from None
        meta = dict(self.session.get_modelmeta().custom_metadata_map)
        info = read_metadata(meta, path, [(i.name, list(i.shape)) for i in self.session.get_inputs()],
                             {o.name: list(o.shape) for o in self.session.get_outputs()})
        super().__init__(path, info.tree, info.tree_sha256, info.tables)
        self.meta = meta
        self.output, self.outputs, self.model_info = info.output, info.outputs, info.model_info
        self.layout, self.size, self.batch, self.resize = info.layout, info.size, info.batch, info.resize
        self.by_kind: dict[str, list[dict[str, Any]]] = {}
        for o in self.outputs:
            self.by_kind.setdefault(o["kind"], []).append(o)
        self.min_confidence = self.graph_min_confidence = read_back_off(meta, path)

    def set_confidence(self, min_confidence: float | None = None, confidence: bool = False) -> OnnxModel:
        """A `scores` export backs off at any threshold (the cascade runs here); any other graph decided at
        export time: its own threshold (None: that one), and a confidence output where one is asked."""
        T = self.graph_min_confidence if min_confidence is None else min_confidence
        super().set_confidence(T, confidence)
        if "scores" in self.by_kind or self.is_flat and not confidence:
            return self
        if T != self.graph_min_confidence:
            raise LabeltreeError(f"--min-confidence {T:g}: this model was exported with --min-confidence "
                                 f"{self.graph_min_confidence:g}, its graph backs off there; export it again with "
                                 f"--min-confidence {T:g}, or with --output scores", self.path)
        if confidence and "confidence" not in self.by_kind:
            raise LabeltreeError("--confidence: this model has no confidence output; export it again with "
                                 "--confidence, or with --output scores", self.path)
        return self

    # -- what the model can answer -----------------------------------------------------------
    @property
    def has_nodes(self) -> bool:
        return any(k in self.by_kind for k in ("nodes", "level", "scores"))

    def check_dataset(self, dataset: str | None) -> str | None:
        """Fail early where the model cannot give `dataset`'s ids (a dataset:NAME model gives only NAME's);
        None: that dataset of a dataset:NAME model (its ids are all it has), else None."""
        if dataset is None:
            return None if self.has_nodes else self.by_kind["dataset"][0]["dataset"]
        key = self.dataset_key(dataset)
        if not self.has_nodes and not any(o["dataset"] == key for o in self.by_kind.get("dataset", [])):
            have = ", ".join(o["dataset"] for o in self.by_kind.get("dataset", []))
            raise LabeltreeError(f"this model was exported with --output {self.output}: it gives {have} ids only, "
                                 f"not {dataset}; export it again with --output dataset:{dataset} or leaves",
                                 self.path)
        return key

    def check_sliding(self, sliding: bool) -> None:
        if sliding:
            raise LabeltreeError("--sliding-window needs the PyTorch checkpoint (.pt); an .onnx model runs whole "
                                 "images or its fixed --size", self.path)

    def pred_space(self, requested: str, hierarchy_ref: str | None) -> tuple[str, Hierarchy | None]:
        """Node ids mean something only in the model's own tree: 'tree' needs nodes and that tree, `--tree` or
        else the model's by its bundled name, checked by content hash; the evaluator projects with it."""
        if requested != "tree" or self.is_flat:
            return "dataset", None
        if not self.has_nodes:
            key = self.by_kind["dataset"][0]["dataset"]
            raise LabeltreeError(f"--pred-space tree needs tree nodes; this model gives {key} ids only", self.path)
        from labeltree.core.tree_file import load_hierarchy

        try:
            h = load_hierarchy(hierarchy_ref or self.tree)
        except LabeltreeError:
            if hierarchy_ref is not None:
                raise
            raise LabeltreeError(f"the model was exported from tree '{self.tree}', which is no bundled tree; pass "
                                 "--tree with the model's tree file", self.path) from None
        if tree_hash(h) != self.tree_sha256:
            raise LabeltreeError(f"the model was exported from tree '{self.tree}' (sha256 {self.tree_sha256[:12]}), "
                                 f"but evaluation uses '{h.name}' (sha256 {tree_hash(h)[:12]}); pass --tree "
                                 "with the model's tree file", self.path)
        return "tree", h

    def net_size(self, dataset: str | None, image_size: tuple[int, int]) -> tuple[int, int]:
        """Where the network runs: the model's fixed size, else the dataset's training scale, else the image's."""
        if self.size is not None:
            return self.size
        if dataset is not None:
            r = self.resize.get(dataset) or self.resize.get(self.datasets[dataset]["name"])
            if r:
                return r
        return image_size

    # -- running -------------------------------------------------------------------------------
    def run(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """uint8 [B, H, W, 3] (always NHWC here; transposed for an NCHW model) -> raw outputs by name."""
        x = np.ascontiguousarray(images if self.layout == "nhwc" else images.transpose(0, 3, 1, 2))
        names = [o.name for o in self.session.get_outputs()]
        try:
            return dict(zip(names, self.session.run(names, {INPUT: x}), strict=True))
        except Exception as e:  # noqa: BLE001 - a graph that does not fit its metadata: one line, not ORT's trace
            msg = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
            raise LabeltreeError(f"ONNX Runtime cannot run this model on a {x.shape} input ({msg})", self.path) \
                from None

    def run_images(self, images: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        """Same-sized HxWx3 images -> per image its raw outputs; a fixed batch is filled by repeating the last."""
        step = self.batch or len(images)
        res: list[dict[str, np.ndarray]] = []
        for i in range(0, len(images), step):
            chunk = images[i:i + step]
            pad = chunk + [chunk[-1]] * (step - len(chunk))
            out = self.run(np.stack(pad))
            res.extend({k: v[j] for k, v in out.items()} for j in range(len(chunk)))
        return res

    def _check_scores(self, scores: list[np.ndarray]) -> None:
        """A `scores` model's probabilities against its metadata (an edited graph: one line)."""
        for s, c in zip(scores, self.classifiers if self.flat_nodes is None else [None], strict=True):
            want = len(self.flat_nodes) if c is None else len(c["children"])  # type: ignore[arg-type]
            if s.ndim != 3 or s.shape[0] != want:
                raise LabeltreeError(f"a score output has shape {s.shape}, its metadata {want} classes; re-export "
                                     "the model with `labeltree export`", self.path)

    def cascade(self, scores: list[np.ndarray]) -> np.ndarray:
        """Tree nodes from a `scores` model's probabilities (labeltree.core.hierarchy.cascade; flat: its table)."""
        self._check_scores(scores)
        if self.flat_nodes is not None:
            return self.flat_nodes[np.argmax(scores[0], axis=-3)]
        return cascade(scores, [c["node"] for c in self.classifiers], [c["children"] for c in self.classifiers])

    def interpret(self, raw: dict[str, np.ndarray], size: tuple[int, int]) -> Prediction:
        """One image's raw outputs -> Prediction, maps brought to `size` (nearest, as the PyTorch path)."""
        nodes = levels = scores = None
        values: dict[str, np.ndarray] = {}
        confidence = raw[self.by_kind["confidence"][0]["name"]] if "confidence" in self.by_kind else None
        if "scores" in self.by_kind:
            scores = [raw[o["name"]] for o in self.by_kind["scores"]]
            if self.confidence or self.min_confidence > 0:  # the cascade with its confidences, not again without
                nodes, confidence = self.confident(scores)
            else:
                nodes = self.cascade(scores)
        if "level" in self.by_kind:
            levels = [self._nodes(raw[o["name"]]) for o in self.by_kind["level"]]
            nodes = levels[-1]
        if "nodes" in self.by_kind:
            nodes = self._nodes(raw[self.by_kind["nodes"][0]["name"]])
        for o in self.by_kind.get("dataset", []):
            values[o["dataset"]] = nearest_resize(raw[o["name"]], size)
        if nodes is not None:
            nodes = nearest_resize(nodes, size)
        if levels is not None:
            levels = [nearest_resize(lv, size) for lv in levels]
        if confidence is not None:
            confidence = nearest_resize(confidence, size)
        return Prediction(nodes, values, levels, scores, confidence)

    def confident(self, scores: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(nodes, path confidence) from a `scores` model's probabilities, backing off below `min_confidence`."""
        self._check_scores(scores)
        if self.flat_nodes is not None:
            return self.flat_nodes[np.argmax(scores[0], axis=-3)], np.max(scores[0], axis=-3).astype(np.float32)
        owners = [c["node"] for c in self.classifiers]
        level = [1 + sum(int(t[o] != o) for t in self.level_tables) + (o != 0) for o in owners]
        pc = confident_cascade(scores, owners, [c["children"] for c in self.classifiers], level, self.min_confidence)
        return pc.nodes, pc.confidence

    def _nodes(self, a: np.ndarray) -> np.ndarray:
        """A node map from the graph, checked against the node tables (an edited graph: one line)."""
        a = a.astype(np.int64)
        if a.size and (int(a.min()) < -1 or int(a.max()) >= len(self.node_names)):
            raise LabeltreeError(f"the model gives node ids up to {int(a.max())}, its metadata names "
                                 f"{len(self.node_names)} nodes; re-export the model with `labeltree export`",
                                 self.path)
        return a

    def predict_array(self, img: np.ndarray, dataset: str | None = None, sliding: bool = False,
                      rules: Any = None, scale: bool = True) -> Prediction:  # noqa: ARG002 - the graph decides
        """One HxWx3 uint8 image -> its Prediction at the image's size (network at `net_size`)."""
        self.check_sliding(sliding)
        H, W = img.shape[:2]
        size = self.net_size(dataset if scale else None, (H, W))
        x = resize_photo(img, size) if size != (H, W) else img
        return self.interpret(self.run_images([x])[0], (H, W))
