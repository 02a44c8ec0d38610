"""An exponential moving average of the weights (`train.ema_decay`), as the paper trains and evaluates.

The authors keep `tf.train.ExponentialMovingAverage(0.9, num_updates=global_step)` of every model variable
(weights and BatchNorm statistics; their define_estimator.py:91-99) and evaluate and predict with the
averages (`--restore_emas`). Here, after optimiser step k (k = 1, 2, ...):

    d_k = min(decay, (1 + k) / (10 + k))        (TensorFlow's num_updates rule: short memory at the start)
    shadow = d_k * shadow + (1 - d_k) * w_k

for every floating-point parameter and buffer (BatchNorm running mean and variance); integer buffers
(`num_batches_tracked`) are copied. The shadow starts as the weights before the first step. (Their
UPDATE_OPS run before the gradient is applied, so their average trails the weights by one step; ours
averages the weights each step produced.) The averages live in the checkpoint beside the raw weights
(`state["ema"]`), so resuming continues them exactly.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

#: checkpoint key of the averaged weights, and the `--weights` choices of predict / evaluate / export
KEY = "ema"
WEIGHTS = ("ema", "raw")


class WeightEMA:
    """The shadow copy of one model's state dict (on the model's device)."""

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.updates = 0
        self.shadow = {k: v.detach().clone() for k, v in _unwrap(model).state_dict().items()}

    def rate(self, k: int) -> float:
        """d_k of step k (1-based)."""
        return min(self.decay, (1.0 + k) / (10.0 + k))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold in the weights after one more optimiser step."""
        self.updates += 1
        d = self.rate(self.updates)
        for k, v in _unwrap(model).state_dict().items():
            s = self.shadow[k]
            if s.is_floating_point():
                s.mul_(d).add_(v.detach().to(s.dtype), alpha=1.0 - d)
            else:
                s.copy_(v)

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "updates": self.updates, "state": self.shadow}

    def load_state_dict(self, st: dict[str, Any]) -> None:
        if set(st["state"]) != set(self.shadow):
            raise ValueError("the checkpoint's averaged weights do not match the model")
        self.decay = float(st["decay"])
        self.updates = int(st["updates"])
        for k, v in st["state"].items():
            self.shadow[k].copy_(v)

    def copy_to(self, model: nn.Module) -> None:
        """Load the averages into `model` (for evaluation)."""
        _unwrap(model).load_state_dict(self.shadow)

    @contextmanager
    def applied(self, model: nn.Module) -> Iterator[None]:
        """`model` runs with the averages inside the block and gets its own weights back, bit for bit, after it."""
        raw = {k: v.detach().clone() for k, v in _unwrap(model).state_dict().items()}
        self.copy_to(model)
        try:
            yield
        finally:
            _unwrap(model).load_state_dict(raw)


def _unwrap(model: nn.Module) -> nn.Module:
    """The module under DDP / torch.compile wrappers (their state-dict keys carry prefixes)."""
    inner = getattr(model, "module", model)
    return getattr(inner, "_orig_mod", inner)


def model_weights(state: dict[str, Any], weights: str = "ema", path: Any = None) -> tuple[dict[str, Any], str]:
    """The state dict to run from a checkpoint: the averages when asked for and present, else the raw weights.

    Returns (state dict, which one: "ema" | "raw")."""
    if weights not in WEIGHTS:
        from labeltree.errors import LabeltreeError

        raise LabeltreeError(f"--weights {weights!r}: give one of {', '.join(WEIGHTS)}")
    if weights == "ema" and isinstance(state.get(KEY), dict):
        return _state_dict(state[KEY].get("state"), "averaged weights ('ema')", path), "ema"
    return _state_dict(state.get("model"), "weights ('model')", path), "raw"


def _state_dict(sd: Any, what: str, path: Any) -> dict[str, Any]:
    """A checkpoint's state dict: names -> tensors (a hand-made or damaged file is one line, not a KeyError)."""
    if not isinstance(sd, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in sd.items()):
        from labeltree.errors import LabeltreeError

        raise LabeltreeError(f"the checkpoint's {what} are no state dict of tensors; give a checkpoint written by "
                             "`labeltree train`", path)
    return sd
