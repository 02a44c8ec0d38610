"""The trained network at inference (torch): softmax scores, sliding windows, the cascade (docs/design.md
§2.5), node -> dataset id tables; used by evaluation while training, the demo, `labeltree export` and
`labeltree.infer.TorchModel` (predict / evaluate --checkpoint on a `.pt`).

`load_predictor` rebuilds the network from a checkpoint and refuses one whose tree changed since.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from labeltree.core.confidence import PathConfidence
from labeltree.core.hierarchy import Hierarchy
from labeltree.core.tree_file import load_hierarchy
from labeltree.datasets.resize import nearest_resize, resize_photo
from labeltree.errors import LabeltreeError
from labeltree.train.checkpoint import check_tree, checkpoint_config, load_checkpoint, weights_mismatch
from labeltree.train.config import Config, check_device
from labeltree.train.data import normalise
from labeltree.train.ema import model_weights
from labeltree.train.loss import FlatSpace, flat_space
from labeltree.train.model import SegNet, build_model
from labeltree.train.scaling import scaled_size


@dataclass
class Predictor:
    model: SegNet
    cfg: Config
    h: Hierarchy
    flat: FlatSpace | None
    device: torch.device
    amp: bool = False
    temperatures: list[float] | None = None  # per head, from `labeltree calibrate` (logits / T before softmax)

    # -- network ---------------------------------------------------------------------------
    @torch.no_grad()
    def scores(self, images: torch.Tensor, sliding: bool = False) -> list[torch.Tensor]:
        """uint8 [B,3,H,W] -> per-head softmax probabilities [B,C,H,W] (float32)."""
        x = normalise(images.to(self.device, non_blocking=True), self.cfg.model.normalise)
        if self.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        if not sliding:
            return [p.softmax(1) for p in self._forward(x)]
        return self._sliding(x)

    def _forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Logits [B,C,H,W] per head, divided by the head's calibrated temperature where there is one."""
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp and self.device.type == "cuda"):
            out = [o.float() for o in self.model(x)]
        if self.temperatures is None:
            return out
        return [o / t for o, t in zip(out, self.temperatures, strict=True)]

    def _sliding(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Crop-sized windows with 1/3 overlap; probabilities averaged where windows overlap."""
        ch, cw = self.cfg.train.crop
        b, _, H, W = x.shape
        if H <= ch and W <= cw:
            return [p.softmax(1) for p in self._forward(x)]

        def starts(total: int, win: int) -> list[int]:
            if total <= win:
                return [0]
            step = max(1, win * 2 // 3)
            s = list(range(0, total - win, step)) + [total - win]
            return sorted(set(s))

        acc: list[torch.Tensor] | None = None
        count = torch.zeros(1, 1, H, W, device=x.device)
        for y0 in starts(H, ch):
            for x0 in starts(W, cw):
                win = x[:, :, y0:y0 + ch, x0:x0 + cw]
                probs = [p.softmax(1) for p in self._forward(win)]
                if acc is None:
                    acc = [torch.zeros(b, p.shape[1], H, W, device=x.device) for p in probs]
                for a, p in zip(acc, probs, strict=True):
                    a[:, :, y0:y0 + win.shape[2], x0:x0 + win.shape[3]] += p
                count[:, :, y0:y0 + win.shape[2], x0:x0 + win.shape[3]] += 1
        assert acc is not None
        return [a / count for a in acc]

    def nodes(self, scores: list[torch.Tensor], stop_level: int | None = None,
              skip: dict[int, int] | None = None) -> torch.Tensor:
        """Tree node per pixel [B,H,W] (the flat model: -1 for its extra 'unlabeled' classes); `skip`:
        classifiers not asked (the paper protocol's decision path, `Hierarchy.direct_skips`)."""
        if self.flat is None:
            return self.h.cascade(scores, stop_level=stop_level, skip=skip)
        table = torch.as_tensor(self.flat.class_to_node(), device=scores[0].device)
        return table[scores[0].argmax(1)]

    def confident_nodes(self, scores: list[torch.Tensor], min_confidence: float = 0.0,
                        skip: dict[int, int] | None = None) -> PathConfidence:
        """The cascade with its path confidence, backing off below `min_confidence` (labeltree.core.confidence).

        The flat model has no ancestors to back off to: its one decision's probability is its confidence."""
        if self.flat is None:
            return self.h.confident_cascade(scores, min_confidence, skip)
        table = torch.as_tensor(self.flat.class_to_node(), device=scores[0].device)
        conf = scores[0].amax(1)
        return PathConfidence(table[scores[0].argmax(1)], conf, [conf])

    # -- outputs ---------------------------------------------------------------------------
    def dataset_values(self, nodes: np.ndarray, dataset: str) -> np.ndarray:
        """Node map -> the dataset's stored values; nodes it has no class for -> its 'no label' value."""
        d = dataset_table(self.h, dataset)
        table = np.asarray(d["values"] + [d["fill"]], dtype=np.uint16 if d["dtype"] == "uint16" else np.uint8)
        return table[nodes]  # index -1 (the flat model's 'unlabeled') -> the fill value

    def predict_array(self, img: np.ndarray, resize: tuple[int, int] | None = None, sliding: bool = False,
                      resize_mode: str = "fixed", skip: dict[int, int] | None = None,
                      ) -> tuple[np.ndarray, list[torch.Tensor]]:
        """One HxWx3 uint8 image -> (node map at the image's size, scores at network scale)."""
        sc = self.scores(self.input(img, resize, resize_mode), sliding)
        return nearest_resize(self.nodes(sc, skip=skip)[0].cpu().numpy(), img.shape[:2]), sc

    @staticmethod
    def input(img: np.ndarray, resize: tuple[int, int] | None = None, resize_mode: str = "fixed") -> torch.Tensor:
        """One HxWx3 uint8 photo -> the network's uint8 [1,3,h,w] input at the (training) scale."""
        size = scaled_size(img.shape[:2], resize, resize_mode)
        if size != tuple(img.shape[:2]):
            img = resize_photo(img, size)
        return torch.from_numpy(np.array(img)).permute(2, 0, 1)[None]


def no_label_value(h: Hierarchy, dataset: str) -> int:
    """The stored value that means 'no class' in a dataset (its unlabeled value or first ignored id)."""
    from labeltree.datasets.base import no_class_value

    m = h.mapping(dataset)
    return no_class_value(m.taxonomy, m.to_node)  # one rule: the paper protocol drops exactly this value


def dataset_table(h: Hierarchy, key: str) -> dict[str, Any]:
    """A dataset's node -> stored value table, its 'no label' fill where it has no class for a node (as an ONNX
    export's metadata stores it)."""
    m = h.mapping(key)
    fill = no_label_value(h, key)
    n2v = h.tables(key).node_to_value
    values = np.where(n2v < 0, fill, n2v).astype(np.int64)
    return {"name": m.taxonomy.name, "values": values.tolist(), "fill": int(fill), "dtype": m.taxonomy.encoding.dtype}


def model_tables(h: Hierarchy, flat: FlatSpace | None) -> dict[str, Any]:
    """What running a model needs besides the network: names, colours, level / dataset tables, classifiers.

    `labeltree export` writes them into the ONNX metadata; `labeltree.infer` reads them from there or builds
    them here, so that a `.pt` and an `.onnx` turn decisions into files through the same tables."""
    n = len(h.nodes)
    return {
        "nodes": [nd.name for nd in h.nodes],
        "colors": h.colors().tolist(),
        "levels": [h.node_at_level(np.arange(n), k).tolist() for k in range(1, h.depth + 1)],
        "classifiers": [{"node": c.node, "name": c.name, "children": list(c.children)} for c in h.classifiers],
        "flat_nodes": flat.class_to_node().tolist() if flat is not None else None,
        "datasets": {key: dataset_table(h, key) for key in h.mappings},
    }


def load_predictor(checkpoint: str | Path, device: str | torch.device | None = None, weights: str = "ema") -> Predictor:
    """The checkpoint's network on `device`, refused (one line) when its tree changed since training; `weights`: its
    moving average of the weights (`train.ema_decay`) when it has one (else its raw weights), or its raw weights."""
    return load_predictor_state(checkpoint, device, weights)[0]


def load_predictor_state(checkpoint: str | Path, device: str | torch.device | None = None,
                         weights: str = "ema") -> tuple[Predictor, dict[str, Any]]:
    """`load_predictor` and the checkpoint's state it read: a caller that writes a copy reads the file once."""
    if isinstance(device, str) and device != "auto":  # checked before torch sees it (a RuntimeError otherwise)
        check_device(device)
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise LabeltreeError(f"--device {device}: no CUDA device is available; use --device cpu")
    state = load_checkpoint(checkpoint)
    cfg = checkpoint_config(state, checkpoint)
    cfg.model.pretrained = None  # the weights are in the checkpoint
    h = load_hierarchy(cfg.hierarchy)
    names = [d.name for d in cfg.datasets]
    flat = flat_space(h, names) if cfg.model.kind == "flat" else None
    sizes = [flat.n_classes] if flat else [len(c.children) for c in h.classifiers]
    if state.get("head_sizes") and list(state["head_sizes"]) != sizes:
        raise LabeltreeError(f"checkpoint heads {state['head_sizes']} do not match the tree '{cfg.hierarchy}' "
                             f"({sizes}); was the tree file changed after training?", checkpoint)
    heads = ["flat"] if flat else [c.name for c in h.classifiers]
    if state.get("head_names") and list(state["head_names"]) != heads:
        raise LabeltreeError(f"checkpoint classifiers {state['head_names']} are not those of the tree "
                             f"'{cfg.hierarchy}' ({heads}); was the tree file changed after training?", checkpoint)
    check_tree(state, h, checkpoint)
    auto = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device) if device and device != "auto" else auto
    model = build_model(cfg.model, sizes)
    chosen, _ = model_weights(state, weights, checkpoint)
    why = weights_mismatch(model.state_dict(), chosen)
    if why:
        raise LabeltreeError(f"the checkpoint's weights do not fit the network of its own config ({why}); give a "
                             "checkpoint written by `labeltree train`", checkpoint)
    model.load_state_dict(chosen)
    model.to(dev).eval()
    if dev.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    return Predictor(model, cfg, h, flat, dev, amp=cfg.train.amp,
                     temperatures=checked_temperatures(state.get("temperatures"), len(sizes), checkpoint)), state


def checked_temperatures(value: Any, n: int, path: str | Path) -> list[float] | None:
    """A checkpoint's calibrated temperatures (`labeltree calibrate`): one positive number per head, or None."""
    if value is None:
        return None
    ok = isinstance(value, list | tuple) and len(value) == n and all(
        isinstance(t, int | float) and 1e-3 <= t <= 1e3 for t in value)
    if not ok:
        raise LabeltreeError(f"'temperatures' should be {n} numbers in 0.001..1000 (one per classifier), got "
                             f"{value!r}; calibrate the checkpoint again with `labeltree calibrate`", path)
    return [float(t) for t in value]


def dataset_resize(cfg: Config, dataset: str) -> tuple[int, int] | None:
    for d in list(cfg.datasets) + list(cfg.eval_datasets):
        if d.name == dataset and d.resize:
            return tuple(d.resize)
    return None


def dataset_resize_mode(cfg: Config, dataset: str) -> str:
    """How `dataset_resize` is applied: fixed size, or aspect-preserving (train.scaling)."""
    for d in list(cfg.datasets) + list(cfg.eval_datasets):
        if d.name == dataset and d.resize:
            return d.resize_mode
    return "fixed"


def flat_sign_rule(pred: Predictor) -> tuple[int, list[int]] | None:
    """The flat model's (generic sign class, sign subclasses) in its own class indices, or None."""
    from labeltree.evaluate.signs import sign_rule_nodes

    rule = sign_rule_nodes(pred.h)
    if rule is None or pred.flat is None:
        return None
    index = {n: i for i, n in enumerate(pred.flat.nodes)}
    if rule[0] not in index:
        return None
    return index[rule[0]], [index[n] for n in rule[1] if n in index]


def flat_sign_nodes(pred: Predictor, scores: list[torch.Tensor], rule: tuple[int, list[int]]) -> np.ndarray:
    """Tree nodes [B,H,W] of a flat model with the paper's second-choice sign rule (-1 = its extra classes).

    The one implementation of the rule for models: `evaluate --checkpoint` (paper protocol), evaluation
    during training and the demo all call this.
    """
    from labeltree.evaluate.signs import second_choice

    assert pred.flat is not None
    decisions = second_choice(scores[0].cpu().numpy(), rule[0], rule[1], axis=-3)
    return pred.flat.class_to_node()[decisions]
