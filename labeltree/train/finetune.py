"""Fine-tuning (`train --init CKPT`): start from a checkpoint's weights, optionally with the backbone frozen for the
first steps (`train.freeze_backbone_steps`) and a larger learning rate for what `labeltree migrate` added
(`optim.new_head_lr_mult`).

- **Init.** Only the weights are taken, never the optimiser, the step, the schedule or the random state: the run
  is a fresh run of its own config that starts from other weights. The checkpoint must be of the config's tree
  (`checkpoint.check_tree`). `--init-weights ema` (the default, as predict's) takes its moving average of the
  weights when it has one, else its raw weights; `raw` its raw weights. The run's own moving average
  (`train.ema_decay`) starts from the weights taken. The init is applied at step 0 only: every checkpoint of the
  run keeps what it was started from (`state["init"]`: file, weights, the migration record), and `--resume`
  continues from last.pt exactly, with the same new-parameter learning rates.
- **Frozen backbone.** For steps 1..N the backbone's parameters get no update (no gradient, so no weight decay
  and no momentum either) and its BatchNorm layers run in eval mode: they normalise with the running statistics
  the checkpoint brought and do not update them, so the backbone is the checkpoint's, bit for bit, and computes
  the features the old heads were trained on. The shared 1x1 reduction and the heads train from step 1.
- **New parameters' learning rate.** The checkpoint's `migration` record (written by `labeltree migrate`) names
  the classifiers it created (`new_heads`) and the rows it added to existing classifiers (`new_rows`). A new head
  is a parameter group of its own with `new_head_lr_mult` x the learning rate (scheduled with the others). A new
  row cannot be a group (it is a slice of its classifier's tensors), so its update is scaled instead: after each
  optimiser step, `row = before + mult * (after - before)` on the rows (the 1x1 logits' weight and bias rows, and
  the transposed upsampler's row and column of that class). SGD (with momentum and weight decay) and AdamW move a
  parameter by an amount proportional to its learning rate, and their state does not depend on it, so this is
  the same as a learning rate of mult x lr for those rows, up to float rounding. Without a migration record the
  multiplier applies to nothing, and the log says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from labeltree.core.hierarchy import Hierarchy
from labeltree.errors import LabeltreeError
from labeltree.train.checkpoint import check_tree, load_checkpoint
from labeltree.train.config import Config
from labeltree.train.ema import WEIGHTS, model_weights

#: checkpoint key of what a fine-tuning run started from (kept in each of its checkpoints, read on --resume)
KEY = "init"
#: checkpoint key of `labeltree migrate`'s record of what it added
MIGRATION_KEY = "migration"


@dataclass
class Init:
    """What a run starts from: `record` goes into each of its checkpoints; `weights` only at step 0 (None on
    resume: last.pt holds the weights then)."""

    record: dict[str, Any]
    weights: dict[str, torch.Tensor] | None = None


def read_init(path: str | Path, h: Hierarchy, weights: str = "ema") -> Init:
    """The weights of checkpoint `path` to start from, refused unless it is of tree `h`."""
    if weights not in WEIGHTS:
        raise LabeltreeError(f"--init-weights {weights!r}: expected one of {', '.join(WEIGHTS)}")
    path = Path(path)
    state = load_checkpoint(path)
    check_tree(state, h, path, "--init: ", advice=f"map it onto this tree first (labeltree migrate {path.name} "
               f"--tree {h.path or h.name} -o NEW.pt) and --init from NEW.pt")
    sd, which = model_weights(state, weights, path)
    migration = state.get(MIGRATION_KEY)
    if migration is not None:
        _check_migration(migration, h, path)
    record = {"checkpoint": str(path.resolve()), "weights": which, "migration": migration}
    return Init(record, dict(sd))


def start_from(path: str | Path | None, weights: str, resumed: dict[str, Any] | None, h: Hierarchy) -> Init | None:
    """What the run starts from: checkpoint `path` (--init), or on resume the record in the checkpoint resumed
    from (`resumed`; the weights are its own then); None: neither."""
    if path is not None:
        return read_init(path, h, weights)
    rec = resumed.get(KEY) if resumed is not None else None
    return Init(rec) if isinstance(rec, dict) else None


def _check_migration(m: Any, h: Hierarchy, path: Path) -> None:
    """A migration record names classifiers of the tree and, for new rows, children of those classifiers."""
    where = "--init: the checkpoint's migration record"
    if not isinstance(m, dict) or not isinstance(m.get("new_heads", []), list) or \
            not isinstance(m.get("new_rows", {}), dict):
        raise LabeltreeError(f"{where} is not a mapping with new_heads (a list) and new_rows (a mapping); "
                             "write it again with labeltree migrate", path)
    classifiers = {c.name: c for c in h.classifiers}
    for name in [*m.get("new_heads", []), *m.get("new_rows", {})]:
        if not isinstance(name, str) or name not in classifiers:
            raise LabeltreeError(f"{where} names classifier {name!r}, which tree '{h.name}' does not have; "
                                 "write it again with labeltree migrate", path)
    for name, rows in m.get("new_rows", {}).items():
        children = {h.nodes[i].name for i in classifiers[name].children}
        if not isinstance(rows, list):
            raise LabeltreeError(f"{where}: new_rows of {name!r} is not a list of node names; write it again with "
                                 "labeltree migrate", path)
        bad = [r for r in rows if not isinstance(r, str) or r not in children]
        if bad:
            raise LabeltreeError(f"{where} names {bad[0]!r} as a new child of {name!r}, which it is not in tree "
                                 f"'{h.name}'; write it again with labeltree migrate", path)


def check_init_fits(init: Init | None, cfg: Config, sizes: list[int]) -> None:
    """The init weights fit the config's network, checked before the run folder is touched: a refusal after
    `--force` had cleared it lost the old run's last.pt for nothing."""
    if init is None or init.weights is None:
        return
    import warnings

    from labeltree.train.model import build_model

    # on the meta device: shapes only, no memory or initialisation (1.7 s for the paper's network)
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings(), torch.device("meta"):
        warnings.simplefilter("ignore")  # 'no model.pretrained': the init weights replace them
        net = build_model(cfg.model.model_copy(update={"pretrained": None}), sizes)
    _check_fits(net.state_dict(), init)


def load_init_weights(model: nn.Module, init: Init) -> None:
    """The checkpoint's weights into `model`, refused (one line) when the networks differ."""
    assert init.weights is not None
    _check_fits(model.state_dict(), init)
    model.load_state_dict(init.weights)


def _check_fits(own: dict[str, torch.Tensor], init: Init) -> None:
    assert init.weights is not None
    path = init.record["checkpoint"]
    for k in sorted(set(own) | set(init.weights)):
        if k not in own or k not in init.weights:
            side = "only in the checkpoint" if k in init.weights else "missing from the checkpoint"
            raise LabeltreeError(f"--init: the checkpoint's network differs from the config's model section ({k} "
                                 f"{side}); fine-tune with the model settings it was trained with", path)
        if tuple(own[k].shape) != tuple(init.weights[k].shape):
            raise LabeltreeError(f"--init: the checkpoint's network differs from the config's model section ({k}: "
                                 f"{list(init.weights[k].shape)} in the checkpoint, {list(own[k].shape)} in the "
                                 "config's); fine-tune with the model settings it was trained with", path)


@dataclass
class NewParams:
    """What the migration added, as model parts: head indices, and per other head the rows (logit indices)."""

    heads: list[int]
    rows: dict[int, list[int]]

    def describe(self, h: Hierarchy) -> str:
        parts = [f"new heads {', '.join(h.classifiers[i].name for i in self.heads)}"] if self.heads else []
        parts += [f"{h.classifiers[i].name}: {len(r)} new row(s) ("
                  f"{', '.join(h.nodes[h.classifiers[i].children[j]].name for j in r)})" for i, r in self.rows.items()]
        return "; ".join(parts) or "nothing (the migration added no classifier and no row)"


def new_params(h: Hierarchy, init: Init | None) -> NewParams | None:
    """The heads and rows the init checkpoint's migration record marks as new (None: no record)."""
    m = init.record.get("migration") if init is not None else None
    if not isinstance(m, dict):
        return None
    index = {c.name: i for i, c in enumerate(h.classifiers)}
    heads = sorted(index[n] for n in m.get("new_heads", []))
    rows: dict[int, list[int]] = {}
    for name, children in m.get("new_rows", {}).items():
        i = index[name]
        if i not in heads and children:
            names = [h.nodes[c].name for c in h.classifiers[i].children]
            rows[i] = sorted(names.index(c) for c in children)
    return NewParams(heads, rows)


def _row_masks(model: nn.Module, rows: dict[int, list[int]]) -> list[tuple[nn.Parameter, torch.Tensor]]:
    """(parameter, mask of its new entries) for each head's new logit rows: the 1x1 logits' weight and bias rows,
    the upsampler's input and output channel of that class, its bias entry."""
    out = []
    for i, r in rows.items():
        head = model.heads[i]
        idx = torch.as_tensor(r, dtype=torch.long)
        for p, dims in ((head.logits.weight, (0,)), (head.logits.bias, (0,)), (head.up.weight, (0, 1)),
                        (head.up.bias, (0,))):
            if p is None:
                continue
            mask = torch.zeros_like(p, dtype=torch.bool)
            for d in dims:
                mask.index_fill_(d, idx.to(p.device), True)
            out.append((p, mask))
    return out


def new_head_param_ids(model: nn.Module, new: NewParams | None, lr_mult: float) -> set[int]:
    """Ids of the parameters of the new heads: their own optimiser groups, with `lr_mult` x the learning rate."""
    if new is None or lr_mult == 1.0:
        return set()
    return {id(p) for i in new.heads for p in model.heads[i].parameters()}


class Tuning:
    """The per-step part of fine-tuning: the frozen backbone and the new rows' scaled updates (no-ops without)."""

    def __init__(self, model: nn.Module, freeze_steps: int, new: NewParams | None, lr_mult: float,
                 toggle_grad: bool):
        self.backbone: nn.Module = model.backbone
        self.freeze_steps = freeze_steps
        self.lr_mult = lr_mult
        self.toggle_grad = toggle_grad  # one process: no gradient computed at all while frozen (DDP: dropped)
        self.new = new
        self.rows = _row_masks(model, new.rows) if new is not None and lr_mult != 1.0 else []
        self.frozen = False
        self._before: list[torch.Tensor] = []

    def before_step(self, done: int) -> None:
        """Before the step after `done` steps: the backbone frozen (eval mode, no gradient) while done < N."""
        frozen = done < self.freeze_steps
        if frozen:
            self.backbone.eval()  # every step: an evaluation puts the whole model back in train mode
        elif self.frozen:
            self.backbone.train()
        if self.toggle_grad and frozen != self.frozen:
            for p in self.backbone.parameters():
                p.requires_grad_(not frozen)
        self.frozen = frozen

    def before_update(self) -> None:
        """After backward: frozen parameters lose their gradient (the optimiser skips them); new rows remembered."""
        if self.frozen:
            for p in self.backbone.parameters():
                p.grad = None
        self._before = [p.detach().clone() for p, _ in self.rows]

    @torch.no_grad()
    def after_update(self) -> None:
        """New rows moved `lr_mult` times as far as the optimiser moved them."""
        for (p, mask), old in zip(self.rows, self._before, strict=True):
            p.copy_(torch.where(mask, old + self.lr_mult * (p - old), p))
        self._before = []


def setup_log(cfg: Config, h: Hierarchy, init: Init | None, new: NewParams | None) -> list[str]:
    """What the run says about its fine-tuning settings (one line each)."""
    lr_mult, freeze_steps = cfg.optim.new_head_lr_mult, cfg.train.freeze_backbone_steps
    lines = []
    if init is not None and init.weights is not None:
        lines.append(f"init: the {init.record['weights']} weights of {init.record['checkpoint']} (optimiser, step "
                     "and random state start fresh)")
    if freeze_steps:
        lines.append(f"train.freeze_backbone_steps {freeze_steps}: the backbone (BatchNorm in eval mode) is not "
                     f"updated in steps 1..{freeze_steps}")
    if lr_mult != 1.0:
        if new is None:
            why = "no --init" if init is None else "the --init checkpoint has no migration record"
            lines.append(f"optim.new_head_lr_mult {lr_mult:g} applies to nothing: {why}")
        else:
            lines.append(f"optim.new_head_lr_mult {lr_mult:g} applies to: {new.describe(h)}")
    return lines
