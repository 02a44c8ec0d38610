"""Run a model written by `labeltree export` with ONNX Runtime: no torch, only numpy, PIL and onnxruntime.

The .onnx file is self-contained: besides the graph (uint8 images in, labels or scores out), its
metadata_props carry what `labeltree predict` / `evaluate --checkpoint` need to write the same files
as a .pt checkpoint: node names and colours, the per-level and per-dataset tables, the classifiers'
children (to run the cascade on a `scores` model) and each dataset's training scale.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from labeltree.datasets.decode import read_rgb
from labeltree.errors import LabeltreeError
from labeltree.fsutil import check_output, input_sparing_png_writer

FORMAT = "labeltree-onnx-1"
INPUT = "images"
INSTALL_HINT = "pip install 'labeltree[deploy]'"

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


def import_ort() -> Any:
    """onnxruntime, or one line saying how to install it (it is the optional `deploy` extra)."""
    try:
        import onnxruntime
    except ImportError:
        raise LabeltreeError(f"ONNX Runtime is not installed; install it with: {INSTALL_HINT}") from None
    return onnxruntime


def tree_hash(h: Any) -> str:
    """sha256 of what inference depends on: the nodes (name, parent) and every dataset's class -> node map.

    Two tree files that differ only in comments, order of keys or supervision rules hash the same.
    """
    import hashlib

    nodes = [[n.name, h.nodes[n.parent].name if n.parent >= 0 else None] for n in h.nodes]
    datasets = {m.taxonomy.name: [[m.taxonomy.stored_value(c), h.nodes[n].name if n is not None else None]
                                  for c, n in sorted(m.to_node.items()) if c >= 0]
                for m in h.mappings.values()}
    text = json.dumps({"nodes": nodes, "datasets": datasets}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


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


def _json(meta: dict[str, str], key: str, path: Path) -> Any:
    try:
        return json.loads(meta[key])
    except (KeyError, ValueError):
        raise LabeltreeError(f"ONNX metadata '{key}' is missing or not JSON; re-export the model with "
                             "`labeltree export`", path) from None


def nearest_resize(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of the last two axes with torch's F.interpolate(mode='nearest') indices
    (src = floor(dst * in / out) in float32), so that label maps match the PyTorch path pixel for pixel."""
    h, w = a.shape[-2:]
    H, W = size
    if (h, w) == (H, W):
        return a

    def idx(n_in: int, n_out: int) -> np.ndarray:
        scale = np.float32(n_in) / np.float32(n_out)
        return np.minimum(np.floor(np.arange(n_out, dtype=np.float32) * scale).astype(np.int64), n_in - 1)

    return a[..., idx(h, H)[:, None], idx(w, W)[None, :]]


def resize_image(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear (PIL, antialiased) to (H, W): the same resize the trainer applies to photos."""
    h, w = size
    return np.asarray(Image.fromarray(img).resize((w, h), Image.BILINEAR))


@dataclass
class Prediction:
    """One image's outputs at the image's size (maps) or the network's (scores); None = not in the model."""

    nodes: np.ndarray | None  # tree node per pixel (-1: the flat model's 'unlabeled')
    values: dict[str, np.ndarray]  # dataset key -> the dataset's stored values
    levels: list[np.ndarray] | None  # cascade stopped at level 1..depth
    scores: list[np.ndarray] | None  # per classifier [C, h, w] probabilities


class OnnxModel:
    """An exported labeltree model in an ONNX Runtime session, with the tree tables from its metadata."""

    def __init__(self, path: str | Path, device: str | None = None):
        ort = import_ort()
        self.path = Path(path)
        if not self.path.exists():
            raise LabeltreeError("ONNX model not found", self.path)
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(self.path), opts, providers=providers_for(device))
        except LabeltreeError:
            raise
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own types for a corrupt file
            msg = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
            raise LabeltreeError(f"cannot load the ONNX model ({msg}); the file is truncated or no ONNX model",
                                 self.path) from None
        meta = dict(self.session.get_modelmeta().custom_metadata_map)
        if meta.get(K_FORMAT) != FORMAT:
            raise LabeltreeError(f"an ONNX model without labeltree metadata ({K_FORMAT} = {FORMAT}); export one "
                                 "with `labeltree export CHECKPOINT OUT.onnx`", self.path)
        try:  # a file edited by hand: one line, not a KeyError
            self.meta = meta
            self.tree = meta.get(K_TREE, "")
            self.tree_sha256 = meta.get(K_TREE_HASH, "")
            self.output = meta.get(K_OUTPUT, "")
            self.outputs: list[dict[str, Any]] = _json(meta, K_OUTPUTS, self.path)
            self.model_info: dict[str, Any] = _json(meta, K_MODEL, self.path)
            self.layout = meta.get(K_LAYOUT, "nchw")
            inp = _json(meta, K_INPUT, self.path)
            self.size: tuple[int, int] | None = tuple(inp["size"]) if inp.get("size") else None
            self.batch: int | None = inp.get("batch")
            self.resize: dict[str, list[int]] = _json(meta, K_RESIZE, self.path)
            t = _json(meta, K_TABLES, self.path)
            self.node_names: list[str] = t["nodes"]
            colors = np.asarray(t["colors"], dtype=np.uint8).reshape(-1, 3)
            self.colors = np.vstack([colors, np.zeros((1, 3), np.uint8)])  # -1 -> black
            self.level_tables = [np.asarray(x, dtype=np.int64) for x in t["levels"]]
            self.classifiers: list[dict[str, Any]] = t["classifiers"]
            self.flat_nodes = np.asarray(t["flat_nodes"], dtype=np.int64) if t.get("flat_nodes") is not None else None
            self.datasets: dict[str, dict[str, Any]] = t["datasets"]
            self.by_kind: dict[str, list[dict[str, Any]]] = {}
            for o in self.outputs:
                self.by_kind.setdefault(o["kind"], []).append(o)
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise LabeltreeError(f"labeltree metadata is incomplete ({type(e).__name__}: {e}); re-export the model "
                                 "with `labeltree export`", self.path) from None

    # -- what the model can answer -----------------------------------------------------------
    @property
    def is_flat(self) -> bool:
        return self.flat_nodes is not None

    @property
    def has_nodes(self) -> bool:
        return any(k in self.by_kind for k in ("nodes", "level", "scores"))

    def dataset_key(self, dataset: str) -> str:
        """The tree's key for a dataset given by key or taxonomy name (as Hierarchy.mapping accepts)."""
        if dataset in self.datasets:
            return dataset
        for k, d in self.datasets.items():
            if d["name"] == dataset:
                return k
        raise LabeltreeError(f"the model's tree '{self.tree}' has no mapping for dataset '{dataset}' (it maps "
                             f"{', '.join(self.datasets)})", self.path)

    def check_dataset(self, dataset: str | None) -> str | None:
        """Fail early where the model cannot give `dataset`'s ids (a dataset:NAME model gives only NAME's)."""
        if dataset is None:
            return None
        key = self.dataset_key(dataset)
        if not self.has_nodes and not any(o["dataset"] == key for o in self.by_kind.get("dataset", [])):
            have = ", ".join(o["dataset"] for o in self.by_kind.get("dataset", []))
            raise LabeltreeError(f"this model was exported with --output {self.output}: it gives {have} ids only, "
                                 f"not {dataset}; export it again with --output dataset:{dataset} or leaves",
                                 self.path)
        return key

    def net_size(self, dataset: str | None, image_size: tuple[int, int]) -> tuple[int, int]:
        """Where the network runs: the model's fixed size, else the dataset's training scale, else the image's."""
        if self.size is not None:
            return self.size
        if dataset is not None:
            r = self.resize.get(dataset) or self.resize.get(self.datasets[dataset]["name"])
            if r:
                return int(r[0]), int(r[1])
        return image_size

    # -- running -------------------------------------------------------------------------------
    def run(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """uint8 [B, H, W, 3] (always NHWC here; transposed for an NCHW model) -> raw outputs by name."""
        x = np.ascontiguousarray(images if self.layout == "nhwc" else images.transpose(0, 3, 1, 2))
        names = [o.name for o in self.session.get_outputs()]
        return dict(zip(names, self.session.run(names, {INPUT: x}), strict=True))

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

    def cascade(self, scores: list[np.ndarray]) -> np.ndarray:
        """Hard top-down argmax cascade on numpy scores (as Hierarchy.cascade), for a `scores` model."""
        if self.flat_nodes is not None:
            return self.flat_nodes[np.argmax(scores[0], axis=-3)]
        cur = np.zeros(scores[0].shape[:-3] + scores[0].shape[-2:], dtype=np.int64)
        for c, s in zip(self.classifiers, scores, strict=True):
            cand = np.asarray(c["children"], dtype=np.int64)[np.argmax(s, axis=-3)]
            cur = np.where(cur == c["node"], cand, cur)
        return cur

    def interpret(self, raw: dict[str, np.ndarray], size: tuple[int, int]) -> Prediction:
        """One image's raw outputs -> Prediction, maps brought to `size` (nearest, as the PyTorch path)."""
        nodes = levels = scores = None
        values: dict[str, np.ndarray] = {}
        if "scores" in self.by_kind:
            scores = [raw[o["name"]] for o in self.by_kind["scores"]]
            nodes = self.cascade(scores)
        if "level" in self.by_kind:
            levels = [raw[o["name"]].astype(np.int64) for o in self.by_kind["level"]]
            nodes = levels[-1]
        if "nodes" in self.by_kind:
            nodes = raw[self.by_kind["nodes"][0]["name"]].astype(np.int64)
        for o in self.by_kind.get("dataset", []):
            values[o["dataset"]] = nearest_resize(raw[o["name"]], size)
        if nodes is not None:
            nodes = nearest_resize(nodes, size)
        if levels is not None:
            levels = [nearest_resize(lv, size) for lv in levels]
        return Prediction(nodes, values, levels, scores)

    def predict_array(self, img: np.ndarray, dataset: str | None = None) -> Prediction:
        """One HxWx3 uint8 image -> its Prediction at the image's size (network at `net_size`)."""
        H, W = img.shape[:2]
        size = self.net_size(dataset, (H, W))
        x = resize_image(img, size) if size != (H, W) else img
        return self.interpret(self.run_images([x])[0], (H, W))

    # -- derived maps, as labeltree.train.predict.Predictor ----------------------------------------------
    def dataset_values(self, p: Prediction, dataset: str) -> np.ndarray:
        key = self.dataset_key(dataset)
        if key in p.values:
            return p.values[key]
        if p.nodes is None:
            raise LabeltreeError(f"this model gives no {dataset} ids (--output {self.output})", self.path)
        d = self.datasets[key]
        table = np.asarray(d["values"] + [d["fill"]], dtype=np.uint16 if d["dtype"] == "uint16" else np.uint8)
        return table[p.nodes]  # index -1 (the flat model's 'unlabeled') -> the fill value

    def level_maps(self, p: Prediction) -> list[np.ndarray]:
        if p.levels is not None:
            return p.levels
        if p.nodes is None:
            return []
        return [t[p.nodes] for t in self.level_tables]

    def colour(self, nodes: np.ndarray) -> np.ndarray:
        return self.colors[nodes]  # -1 -> black (the last row)


def predict_files(model: str | Path | OnnxModel, inputs: list[str | Path], out_dir: str | Path,
                  dataset: str | None = None, overlay: bool = False, sliding: bool = False, levels: bool = False,
                  colour: bool = True, device: str | None = None, progress: bool = True,
                  log: Callable[[str], None] | None = None) -> list[Path]:
    """`labeltree predict MODEL.onnx`: the files labeltree.train.predict.predict_files writes for a .pt, same names."""
    from tqdm import tqdm

    from labeltree.datasets.images import collect_images

    m = model if isinstance(model, OnnxModel) else OnnxModel(model, device)
    if sliding:
        raise LabeltreeError("--sliding-window needs the PyTorch checkpoint (.pt); an .onnx model runs whole "
                             "images or its fixed --size", m.path)
    key = m.check_dataset(dataset)
    if key is None and not m.has_nodes:
        key = m.by_kind["dataset"][0]["dataset"]  # a dataset:NAME model: its ids are all it has
    if not m.has_nodes:
        if overlay or levels:
            raise LabeltreeError(f"--overlay / --levels need tree nodes; this model gives {key} ids only "
                                 "(export with --output leaves, levels or scores)", m.path)
        if colour and log is not None:
            log(f"note: {m.path.name} gives {key} ids only: no {{stem}}_tree.png written")
        colour = False
    out = Path(out_dir)
    written: list[Path] = []
    images = collect_images(inputs)
    check_output(out, "-o", folder=True)
    write_png = input_sparing_png_writer([*images, m.path])  # OUT is a prediction folder: never over an input

    for path in tqdm(images, desc="predict", unit="img", disable=not progress):
        img = read_rgb(path)
        p = m.predict_array(img, key)
        stem = path.stem
        if p.nodes is not None and (colour or not key):
            written.append(out / f"{stem}_tree.png")
            write_png(written[-1], m.colour(p.nodes))
        if key:
            written.append(out / key / f"{stem}.png")
            write_png(written[-1], m.dataset_values(p, key))
        if overlay:
            blend = (0.5 * img + 0.5 * m.colour(p.nodes)).astype(np.uint8)
            written.append(out / f"{stem}_overlay.png")
            write_png(written[-1], blend)
        if levels and not m.is_flat:
            for lvl, lv in enumerate(m.level_maps(p), start=1):
                written.append(out / f"{stem}_L{lvl}.png")
                write_png(written[-1], m.colour(lv))
    return written


def checkpoint_predict(model: str | Path, dataset: str, pred_space: str = "dataset", sliding: bool = False,
                       hierarchy_ref: str | None = None) -> Callable[[Any], np.ndarray]:
    """`labeltree evaluate DATASET GT --checkpoint MODEL.onnx`: `sample -> prediction`, as
    labeltree.train.predict.checkpoint_predict for a .pt (dataset values, or tree nodes)."""
    m = OnnxModel(model)
    if sliding:
        raise LabeltreeError("--sliding-window needs the PyTorch checkpoint (.pt)", m.path)
    key = m.check_dataset(dataset)
    assert key is not None
    tree_space = pred_space == "tree" and not m.is_flat
    tree = None
    if tree_space:  # node ids mean something only in the model's own tree (dataset ids in any)
        if not m.has_nodes:
            raise LabeltreeError(f"--pred-space tree needs tree nodes; this model gives {key} ids only", m.path)
        tree = _model_tree(m, hierarchy_ref)

    def predict(sample: Any) -> np.ndarray:
        if sample.image is None:
            raise LabeltreeError("image not found (the sample has a label but no photo)")
        p = m.predict_array(read_rgb(sample.image), key)
        return p.nodes if tree_space else m.dataset_values(p, key)

    predict.hierarchy = tree  # type: ignore[attr-defined] # the tree evaluate projects with, as for a .pt
    return predict


def _model_tree(m: OnnxModel, ref: str | None) -> Any:
    """The tree `evaluate` projects node ids with: `--tree`, else the model's own (by its bundled name),
    and in either case the one it was exported from (same content hash)."""
    from labeltree.core.tree_file import load_hierarchy

    try:
        h = load_hierarchy(ref or m.tree)
    except LabeltreeError:
        if ref is not None:
            raise
        raise LabeltreeError(f"the model was exported from tree '{m.tree}', which is no bundled tree; pass --tree "
                             "with the model's tree file", m.path) from None
    if tree_hash(h) != m.tree_sha256:
        raise LabeltreeError(f"the model was exported from tree '{m.tree}' (sha256 {m.tree_sha256[:12]}), but "
                             f"evaluation uses '{h.name}' (sha256 {tree_hash(h)[:12]}); pass --tree with the "
                             "model's tree file", m.path)
    return h
