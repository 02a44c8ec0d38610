"""A trained model as `image -> tree node per pixel` (labeltree.infer's `open_model`: a PyTorch checkpoint
or an exported ONNX model). Placement needs only the hard cascade's node map, which both formats give,
and reads it in the tree it places in (by node name, so an extension of the model's tree works too)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from labeltree.core.hierarchy import Hierarchy
from labeltree.errors import LabeltreeError


@dataclass
class NodeModel:
    """What placement needs of a model: its tree's node names and a node map per image."""

    path: Path
    node_names: list[str]
    predict: Callable[[np.ndarray], np.ndarray]  # HxWx3 uint8 -> HxW node indices (-1 = none)
    config: dict[str, Any] | None = None  # the training config of a .pt (its datasets and roots)
    remap: np.ndarray | None = None  # model node id -> the tree's (set by check_tree)

    def check_tree(self, h: Hierarchy) -> None:
        """The model's node ids mean something only in its own tree: a tree that lacks one of its nodes is
        another tree (refused); an extension of the model's tree (audit of an add-on) is read by name."""
        extra = [n for n in self.node_names if n not in h.index and n != h.nodes[0].name]
        if extra:
            raise LabeltreeError(f"the model was trained on another tree than '{h.name}' (nodes only in the model: "
                                 f"{', '.join(extra[:3])}); pass the model's own tree (or an extension of it) with "
                                 "--tree", self.path)
        self.remap = np.array([h.index.get(n, 0) for n in self.node_names] + [-1], dtype=np.int64)

    def nodes(self, img: np.ndarray) -> np.ndarray:
        """The tree's node per pixel (-1 = none)."""
        out = self.predict(img)
        return self.remap[out] if self.remap is not None else out


def open_node_model(path: str | Path) -> NodeModel:
    """A .pt checkpoint (torch) or .onnx model (ONNX Runtime) opened by labeltree.infer, as a NodeModel."""
    p = Path(path)
    if not p.is_file():
        what = "a folder, not a model file (.pt or .onnx)" if p.is_dir() else "model file not found"
        raise LabeltreeError(f"--checkpoint: {what}", p)
    if p.suffix.lower() not in (".pt", ".onnx"):
        raise LabeltreeError("--checkpoint: give a PyTorch checkpoint (.pt) or an exported model (.onnx)", p)
    from labeltree.infer import open_model

    m = open_model(p, "cpu")
    if m.is_flat or not m.has_nodes:
        raise LabeltreeError("--checkpoint: placement needs a hierarchical model that gives tree nodes (a .pt, or "
                             "an .onnx exported with --output leaves, levels or scores)", p)

    net = getattr(m, "net", None)  # a .pt: torch's Predictor
    if net is not None and net.flat is None:
        return NodeModel(p, list(m.node_names), _torch_nodes(net), getattr(m, "config", None))

    def predict(img: np.ndarray) -> np.ndarray:
        out = m.predict_array(img).nodes
        assert out is not None  # has_nodes
        return out

    return NodeModel(p, list(m.node_names), predict, getattr(m, "config", None))


def _torch_nodes(net: Any) -> Callable[[np.ndarray], np.ndarray]:
    """The cascade over the logits (the argmax of a softmax is the logits' own) on one torch thread: placement
    runs many small images, and on a shared machine torch's default of a thread per core spends most of its
    time waiting for cores (measured 0.45 s per 256x128 frame on 2 busy cores, 0.055 s on one thread)."""
    import torch

    def predict(img: np.ndarray) -> np.ndarray:
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with torch.no_grad():
                x = normalise(net.input(img).to(net.device), net.cfg.model.normalise)
                logits = [o[0].cpu().numpy() for o in net._forward(x)]  # noqa: SLF001 - logits: no softmax
        finally:
            torch.set_num_threads(before)
        return nearest_resize(cascade_where_needed(net.h, logits), img.shape[:2])

    from labeltree.datasets.resize import nearest_resize
    from labeltree.train.data import normalise

    return predict


def _argmax0(s: np.ndarray) -> np.ndarray:
    """argmax over axis 0 (first maximum on ties, as np.argmax) as one pass per class: 4x faster than
    np.argmax / torch.argmax over the class axis of a [C, H, W] map, which stride across memory."""
    best = s[0].copy()
    idx = np.zeros(s.shape[1:], np.int64)
    for c in range(1, s.shape[0]):
        idx[s[c] > best] = c
        np.maximum(best, s[c], out=best)
    return idx


def cascade_where_needed(h: Hierarchy, logits: list[np.ndarray]) -> np.ndarray:
    """Hierarchy.cascade over per-classifier [C, H, W] logits, each classifier asked only at the pixels that
    reach its node (the 43 sign types only on the sign pixels)."""
    shape = logits[0].shape[1:]
    cur = np.zeros(int(np.prod(shape)), np.int64)
    for j, c in enumerate(h.classifiers):
        s = logits[j].reshape(logits[j].shape[0], -1)
        at = cur == c.node
        if at.all():
            cur = h.child_table[j][_argmax0(s)]
        elif at.any():
            cur[at] = h.child_table[j][_argmax0(s[:, at])]
    return cur.reshape(shape)
