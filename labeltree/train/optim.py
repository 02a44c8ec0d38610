"""The optimiser: SGD with momentum (the paper) or AdamW, over parameter groups.

Groups: one with `weight_decay`, or with `no_decay_norm_bias` two (weights decayed, the rest not); a fine-tuning
run (`train --init`, train/finetune.py) splits each group once more, the new classifiers' parameters getting
`optim.new_head_lr_mult` times the learning rate. The first group is always the base one (its lr is the logged lr).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import torch

from labeltree.train.config import OptimCfg


def param_groups(o: OptimCfg, model: torch.nn.Module, new: Collection[int] = (),
                 lr_mult: float = 1.0) -> list[dict[str, Any]]:
    """One group with `weight_decay`, or with `no_decay_norm_bias` two: conv / linear weights decayed, the rest
    (normalisation layers' scale and shift, biases: every parameter of < 2 dimensions) with decay 0.

    `new`: ids of parameters that get `lr_mult` x the learning rate (in groups of their own, after the others)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not o.no_decay_norm_bias:
        groups = [{"params": params, "weight_decay": o.weight_decay}]
    else:
        groups = [{"params": [p for p in params if p.ndim > 1], "weight_decay": o.weight_decay},
                  {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}]
    if not new:
        return groups
    old = [{**g, "params": [p for p in g["params"] if id(p) not in new], "lr": o.lr} for g in groups]
    fresh = [{**g, "params": [p for p in g["params"] if id(p) in new], "lr": o.lr * lr_mult} for g in groups]
    return [g for g in old + fresh if g["params"]]


def make_optimizer(o: OptimCfg, model: torch.nn.Module, new: Collection[int] = (),
                   lr_mult: float = 1.0) -> torch.optim.Optimizer:
    """SGD with momentum (the paper) or AdamW, whose first-moment decay is `momentum`."""
    groups = param_groups(o, model, new, lr_mult)
    if o.name == "adamw":
        return torch.optim.AdamW(groups, lr=o.lr, betas=(o.momentum, 0.999), weight_decay=o.weight_decay)
    return torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
