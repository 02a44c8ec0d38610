"""Checkpoints: written atomically, loaded with `weights_only=True` (no pickled code runs on load).

Everything needed to continue exactly is stored as tensors and plain Python values: model,
optimiser, scheduler, step, RNG states (torch, CUDA, numpy, python) and sampler state, plus the
resolved config so that `predict` can rebuild the network from the file alone, and the tree's
signature (`tree`: name, sha256, nodes, dataset maps) so that a changed tree file is refused on load.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from labeltree.core.hierarchy import Hierarchy, tree_change, tree_hash, tree_signature
from labeltree.errors import LabeltreeError
from labeltree.fsutil import MAX_MODEL_BYTES, atomic_path, check_input

if TYPE_CHECKING:
    from labeltree.train.config import Config

FORMAT = "labeltree-checkpoint-1"


def rng_state() -> dict[str, Any]:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    st: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": _py_state(random.getstate()),
    }
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def _py_state(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def set_rng_state(st: dict[str, Any]) -> None:
    torch.set_rng_state(st["torch"])
    n = st["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    version, internal, gauss = st["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """torch.save to a temp file in the same folder, then rename: a kill never leaves half a file."""
    state = {"format": FORMAT, **state}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    p = Path(path)
    if not p.exists():
        raise LabeltreeError("checkpoint not found", p)
    try:
        state = torch.load(check_input(p, "checkpoint", MAX_MODEL_BYTES), map_location=map_location,
                           weights_only=True)
    except LabeltreeError:
        raise
    except Exception as e:  # noqa: BLE001 - corrupt or foreign file
        first = str(e).split(". ")[0].splitlines()[0][:120] if str(e).strip() else "empty or cut short"
        raise LabeltreeError(f"cannot read checkpoint ({type(e).__name__}: {first}); the file is damaged or no "
                             "torch checkpoint: give one written by `labeltree train`", p) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise LabeltreeError("not a labeltree checkpoint (written by `labeltree train`)", p)
    return state


def checkpoint_config(state: dict[str, Any], path: str | Path) -> Config:
    """The checkpoint's training config, validated: a hand-made or damaged file is one line naming it."""
    from labeltree.train.config import config_from_dict

    cfg = state.get("config")
    if not isinstance(cfg, dict):
        raise LabeltreeError("the checkpoint has no training config; give one written by `labeltree train`", path)
    try:
        return config_from_dict(cfg)
    except LabeltreeError as e:
        raise LabeltreeError(f"the checkpoint's config: {e.message}; give one written by `labeltree train`",
                             path) from None


def weights_mismatch(expected: dict[str, torch.Tensor], weights: Any) -> str | None:
    """Why `weights` (a checkpoint's state dict) does not load into a network with state dict `expected`:
    a missing or extra key, a value that is no tensor, or another shape; None when it loads."""
    if not isinstance(weights, dict):
        return "no state dict of weights"
    for k in sorted(set(expected) | set(weights), key=str):
        if k not in weights or k not in expected:
            return f"'{k}' is {'missing' if k not in weights else 'not in the network its config builds'}"
        v = weights[k]
        if not isinstance(v, torch.Tensor) or tuple(v.shape) != tuple(expected[k].shape):
            what = list(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
            return f"'{k}' is {what}, the network has {list(expected[k].shape)}"
    return None


def tree_entry(h: Hierarchy) -> dict[str, Any]:
    """What a checkpoint keeps of its tree: name, content hash (the one ONNX exports carry), nodes, dataset maps."""
    return {"name": h.name, "sha256": tree_hash(h), **tree_signature(h)}


def check_tree(state: dict[str, Any], h: Hierarchy, path: str | Path, context: str = "",
               advice: str = "use the tree file it was trained with (or train again)") -> None:
    """Refuse a checkpoint whose tree differs from `h` (a logit would mean another node), naming what changed.

    A checkpoint written before trees were hashed has no `tree` entry: it is accepted when its classifier
    names and sizes match (checked by the caller), as before.
    """
    saved = state.get("tree")
    if not isinstance(saved, dict) or saved.get("sha256") == tree_hash(h):
        return
    change = tree_change(saved, h) or "its content differs"
    was = saved.get("name", "?")
    what = f"tree '{was}'" if was == h.name else f"tree '{was}', not '{h.name}'"
    raise LabeltreeError(f"{context}the checkpoint was trained with {what} as it was then: {change}; {advice}", path)
