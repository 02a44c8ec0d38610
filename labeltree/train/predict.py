"""Inference: hard top-down cascade (docs/design.md §2.5) -> leaf map, per-level maps, dataset ids, colours.

Also the bridge for `labeltree evaluate --checkpoint`: `predict_dataset` yields each sample of a
dataset split with the prediction in that dataset's own stored values.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from labeltree.core.hierarchy import Hierarchy
from labeltree.core.tree_file import load_hierarchy
from labeltree.datasets.base import Sample
from labeltree.datasets.decode import read_rgb as decode_rgb
from labeltree.datasets.images import collect_images
from labeltree.datasets.registry import open_dataset
from labeltree.errors import LabeltreeError
from labeltree.fsutil import check_output, input_sparing_png_writer
from labeltree.train.checkpoint import load_checkpoint
from labeltree.train.config import Config, check_device, config_from_dict
from labeltree.train.data import normalise, resize_pair
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
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp and self.device.type == "cuda"):
            return [o.float() for o in self.model(x)]

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

    # -- outputs ---------------------------------------------------------------------------
    def dataset_values(self, nodes: np.ndarray, dataset: str) -> np.ndarray:
        """Node map -> the dataset's stored values; nodes it has no class for -> its 'no label' value."""
        t = self.h.tables(dataset)
        tax = self.h.mapping(dataset).taxonomy
        fill = no_label_value(self.h, dataset)
        n2v = np.append(t.node_to_value, fill)  # index -1 -> fill
        vals = n2v[nodes]
        vals = np.where(vals < 0, fill, vals)
        return vals.astype(np.uint16 if tax.encoding.dtype == "uint16" else np.uint8)

    def colour(self, nodes: np.ndarray) -> np.ndarray:
        colors = np.vstack([self.h.colors(), np.zeros((1, 3), np.uint8)])  # -1 -> black
        return colors[nodes]

    def predict_array(self, img: np.ndarray, resize: tuple[int, int] | None = None, sliding: bool = False,
                      resize_mode: str = "fixed", skip: dict[int, int] | None = None,
                      ) -> tuple[np.ndarray, list[torch.Tensor]]:
        """One HxWx3 uint8 image -> (node map at the image's size, scores at network scale)."""
        H, W = img.shape[:2]
        size = scaled_size((H, W), resize, resize_mode)
        if size != (H, W):
            img, _ = resize_pair(img, np.zeros((H, W), np.uint8), size)
        x = torch.from_numpy(np.array(img)).permute(2, 0, 1)[None]
        sc = self.scores(x, sliding)
        nodes = self.nodes(sc, skip=skip)
        if nodes.shape[-2:] != (H, W):
            nodes = F.interpolate(nodes[None].float(), size=(H, W), mode="nearest")[0].long()
        return nodes[0].cpu().numpy(), sc


def read_rgb(path: str | Path | None) -> np.ndarray:
    """labeltree.decode.read_rgb for a sample whose photo may be missing (path None)."""
    if path is None:
        raise LabeltreeError("image not found (the sample has a label but no photo)")
    return decode_rgb(path)


def no_label_value(h: Hierarchy, dataset: str) -> int:
    """The stored value that means 'no class' in a dataset (its unlabeled value or first ignored id)."""
    from labeltree.datasets.base import no_class_value

    m = h.mapping(dataset)
    return no_class_value(m.taxonomy, m.to_node)  # one rule: the paper protocol drops exactly this value


def load_predictor(checkpoint: str | Path, device: str | torch.device | None = None, weights: str = "ema") -> Predictor:
    """A trained checkpoint ready to predict; `weights`: its moving average of the weights (`train.ema_decay`) when
    it has one (else its raw weights), or its raw weights."""
    if isinstance(device, str) and device != "auto":  # checked before torch sees it (a RuntimeError otherwise)
        check_device(device)
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise LabeltreeError(f"--device {device}: no CUDA device is available; use --device cpu")
    state = load_checkpoint(checkpoint)
    cfg = config_from_dict(state["config"])
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
    auto = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device) if device and device != "auto" else auto
    model = build_model(cfg.model, sizes)
    try:
        chosen, _ = model_weights(state, weights)
    except ValueError as e:
        raise LabeltreeError(str(e)) from None
    model.load_state_dict(chosen)
    model.to(dev).eval()
    if dev.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    return Predictor(model, cfg, h, flat, dev, amp=cfg.train.amp)


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


def checkpoint_predict(checkpoint: str | Path, dataset: str, sliding: bool = False, weights: str = "ema"):
    """`sample, rules -> prediction` from a trained checkpoint (`labeltree evaluate --checkpoint`).

    A hierarchical model gives tree nodes (the evaluator projects them, and the
    paper protocol can then tell a node the dataset lacks from the dataset's own classes). A flat model gives
    the dataset's ids (its extra 'unlabeled' classes are no tree node), with the second-choice sign rule when
    the rules ask for it. The function's `pred_space` and `hierarchy` attributes tell the evaluator.
    """
    pred = load_predictor(checkpoint, weights=weights)
    name = pred.h.mapping(dataset).dataset
    resize, mode = dataset_resize(pred.cfg, name), dataset_resize_mode(pred.cfg, name)
    rule = flat_sign_rule(pred)

    def predict(sample: Sample, rules: Any = None) -> np.ndarray:
        from labeltree.evaluate.classes import decision_skips

        img = read_rgb(sample.image)
        net, net_mode = resize, mode
        size = getattr(rules, "eval_size", None)
        if size is not None:  # the rules' evaluation size: the network runs and answers at it (as the authors)
            img, _ = resize_pair(img, np.zeros(img.shape[:2], np.uint8), size)
            net, net_mode = None, "fixed"
        if pred.flat is None:
            nodes, _ = pred.predict_array(img, net, sliding, net_mode, skip=decision_skips(rules, pred.h, name))
            return nodes
        if rule is None or rules is None or not rules.sign_rule:
            nodes, _ = pred.predict_array(img, net, sliding, net_mode)
            return pred.dataset_values(nodes, name)
        H, W = img.shape[:2]
        scaled = scaled_size((H, W), net, net_mode)
        if scaled != (H, W):
            img, _ = resize_pair(img, np.zeros((H, W), np.uint8), scaled)
        sc = pred.scores(torch.from_numpy(np.array(img)).permute(2, 0, 1)[None], sliding)
        nodes = flat_sign_nodes(pred, sc, rule)[0]
        if nodes.shape != (H, W):
            t = torch.from_numpy(nodes)[None, None].float()
            nodes = F.interpolate(t, size=(H, W), mode="nearest")[0, 0].long().numpy()
        return pred.dataset_values(nodes, name)

    predict.pred_space = "tree" if pred.flat is None else "dataset"  # type: ignore[attr-defined]
    predict.hierarchy = pred.h  # type: ignore[attr-defined]
    predict.takes_rules = True  # type: ignore[attr-defined]
    return predict


def predict_dataset(checkpoint: str | Path | Predictor, dataset: str, root: str | Path, split: str,
                    sliding: bool = False, device: str | None = None,
                    ) -> Iterator[tuple[Sample, np.ndarray]]:
    """Yield (sample, prediction in the dataset's stored values at the label's native size).

    Images are run at the training scale of that dataset in the checkpoint's config (if any).
    """
    pred = checkpoint if isinstance(checkpoint, Predictor) else load_predictor(checkpoint, device)
    tax = pred.h.mapping(dataset).taxonomy
    reader = open_dataset(tax, root)
    key = dataset if dataset_resize(pred.cfg, dataset) else pred.h.mapping(dataset).dataset
    resize, mode = dataset_resize(pred.cfg, key), dataset_resize_mode(pred.cfg, key)
    for s in reader.samples(split):
        nodes, _ = pred.predict_array(read_rgb(s.image), resize, sliding, mode)
        yield s, pred.dataset_values(nodes, pred.h.mapping(dataset).dataset)


def predict_files(checkpoint: str | Path, inputs: list[str | Path], out_dir: str | Path, dataset: str | None = None,
                  overlay: bool = False, sliding: bool = False, levels: bool = False, colour: bool = True,
                  device: str | None = None, progress: bool = True, weights: str = "ema") -> list[Path]:
    """Write per image: `{stem}_tree.png` (tree colours), `{dataset}/{stem}.png` (the dataset's ids),
    `{stem}_overlay.png`, `{stem}_L{k}.png` (colour map of the cascade stopped at level k).

    The dataset ids get a folder of their own, named as `labeltree evaluate` matches predictions
    (same stem as the image, nothing else in it), so `evaluate DATASET GT OUT/{dataset}` reads them.
    """
    from tqdm import tqdm

    if Path(checkpoint).suffix.lower() == ".onnx":  # a `labeltree export` model
        from labeltree.export.runtime import predict_files as predict_onnx

        return predict_onnx(checkpoint, inputs, out_dir, dataset, overlay, sliding, levels, colour, device, progress)
    pred = load_predictor(checkpoint, device, weights)
    out = Path(out_dir)
    resize = dataset_resize(pred.cfg, dataset) if dataset else None
    mode = dataset_resize_mode(pred.cfg, dataset) if dataset else "fixed"
    if dataset:
        pred.h.mapping(dataset)  # fail early on an unknown dataset
    written: list[Path] = []
    images = collect_images(inputs)
    check_output(out, "-o", folder=True)
    write_png = input_sparing_png_writer([*images, checkpoint])  # OUT is a prediction folder: never over an input

    for path in tqdm(images, desc="predict", unit="img", disable=not progress):
        img = read_rgb(path)
        nodes, sc = pred.predict_array(img, resize, sliding, mode)
        stem = path.stem
        if colour or not dataset:
            written.append(out / f"{stem}_tree.png")
            write_png(written[-1], pred.colour(nodes))
        if dataset:
            written.append(out / pred.h.mapping(dataset).dataset / f"{stem}.png")
            write_png(written[-1], pred.dataset_values(nodes, dataset))
        if overlay:
            blend = (0.5 * img + 0.5 * pred.colour(nodes)).astype(np.uint8)
            written.append(out / f"{stem}_overlay.png")
            write_png(written[-1], blend)
        if levels and pred.flat is None:
            for lvl in range(1, pred.h.depth + 1):
                lv = pred.nodes(sc, stop_level=lvl)
                if lv.shape[-2:] != nodes.shape:
                    lv = F.interpolate(lv[None].float(), size=nodes.shape, mode="nearest")[0].long()
                written.append(out / f"{stem}_L{lvl}.png")
                write_png(written[-1], pred.colour(lv[0].cpu().numpy()))
    return written
