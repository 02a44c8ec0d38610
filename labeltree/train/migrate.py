"""`labeltree migrate`: a trained checkpoint mapped onto an edited tree, so that a grown tree is fine-tuned
from the old model instead of trained from scratch (issue 27).

Backbone, shared reduction and every head of a classifier that still exists are copied; a classifier's rows
follow its children by name (reordered where the order changed). A new child of an existing classifier gets a
new row that cannot win before it is trained: its logit map is the mean of the classifier's old logit maps
minus at least `NEW_ROW_GAP` (times the head's calibrated temperature), so softmax gives it exactly 0 in float32
and every old probability, argmax and path confidence stays what it was. A classifier that is new (a leaf split
into kinds, a new inner node) gets a fresh head as the model builder makes one (seeded); old pixels reach it only
below a node the old model already predicted, so their labels stay the same. Node names decide everything
(labeltree.train.migrate_plan); the result is a normal checkpoint of the new tree without optimiser or step, with
a `migration` record: {"from_tree_hash", "new_heads", "new_rows": {classifier: [children]}, "renamed", "dropped"}.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from labeltree.core.hierarchy import Hierarchy, tree_signature
from labeltree.core.tree_diff import TreeDiff, class_names, diff_signatures
from labeltree.core.tree_file import load_hierarchy
from labeltree.errors import LabeltreeError
from labeltree.train.checkpoint import (
    checkpoint_config,
    load_checkpoint,
    save_checkpoint,
    tree_entry,
    weights_mismatch,
)
from labeltree.train.config import config_from_dict
from labeltree.train.ema import model_weights
from labeltree.train.migrate_plan import Plan, old_classifiers, parse_renames, plan, signature_nodes
from labeltree.train.model import _bilinear_kernel, build_model

#: float32 exp(-x) is exactly 0 from x ~ 103.3 on: a new row this far below the best old logit adds nothing
NEW_ROW_GAP = 104.0
#: the transposed upsampler's bilinear taps sum to 1 inside, 0.75 per side at the border: the least gain
MIN_TAP_SUM = 0.5625


@dataclass
class Migration:
    """What `migrate` did: the plan per classifier, the tree diff, the record saved, notes."""

    out: Path
    plan: Plan
    diff: TreeDiff
    record: dict[str, Any]
    temperatures: list[str] | None  # per new head: 'kept', '1.0 (new head)'; None: the checkpoint had none
    notes: list[str]

    def rows(self) -> list[dict[str, Any]]:
        """The report's rows, one per classifier of the new tree."""
        out = []
        for j, hp in enumerate(self.plan.heads):
            kept = [c for c, r in zip(hp.children, hp.rows, strict=True) if r is not None]
            init = ("fresh head (as the model builder makes it)" if hp.source is None else
                    f"new rows: old mean - {NEW_ROW_GAP:g} (softmax 0)" if hp.added else "copied")
            out.append({"classifier": hp.name, "status": hp.status, "kept": kept, "added": hp.added,
                        "dropped": hp.dropped, "initialised": init,
                        "temperature": self.temperatures[j] if self.temperatures else None})
        return out

    def to_json(self) -> dict[str, Any]:
        return {"out": str(self.out), "migration": self.record, "classifiers": self.rows(), "notes": self.notes,
                "tree_diff": self.diff.to_json()}

    def table(self) -> str:
        lines = [f"{'classifier':<28} {'status':<9} {'kept':>5} {'added':>5}  initialised"]
        for r in self.rows():
            lines.append(f"{r['classifier'][:28]:<28} {r['status']:<9} {len(r['kept']):>5} {len(r['added']):>5}  "
                         f"{r['initialised']}")
            if r["added"]:
                lines.append(f"  + {', '.join(r['added'])}")
            if r["dropped"]:
                lines.append(f"  - {', '.join(r['dropped'])}")
        return "\n".join(lines + [f"note: {n}" for n in self.notes])


def migrate(checkpoint: str | Path, tree: str | Path, out: str | Path, rename: list[str] | tuple[str, ...] = (),
            drop: list[str] | tuple[str, ...] = (), seed: int = 0) -> Migration:
    """Map `checkpoint` onto `tree` (a bundled name or a tree file) and write the result to `out` (atomic).

    `rename`: 'OLD=NEW' node names; `drop`: old nodes whose logits are removed; `seed`: new heads' init."""
    if Path(out).suffix.lower() != ".pt":
        raise LabeltreeError("the migrated checkpoint must end in .pt", out)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**31:
        raise LabeltreeError(f"seed {seed!r}: expected an integer 0..2147483647")
    rename, drop = _names("rename", rename), _names("drop", drop)
    state = load_checkpoint(checkpoint)
    renames = parse_renames(rename)
    cfg_dict = _config(state, checkpoint)
    old_sig, old_name, old_sizes = _old_tree(state, cfg_dict, checkpoint)
    n_old = len(old_sizes)
    with torch.device("meta"):  # the network of its own config and tree: its keys and shapes only
        old_net = _fresh_model(cfg_dict, old_sizes, 0).state_dict()
    old_model = _old_weights(state, "raw", old_net, old_sizes, checkpoint)
    new = load_hierarchy(tree)
    p = plan(signature_nodes(old_sig), new, renames, list(dict.fromkeys(drop)))
    cfg, notes = _new_config(cfg_dict, new, tree)
    sizes = [len(c.children) for c in new.classifiers]
    temps, temp_notes = _temperatures(state, p, n_old, checkpoint)
    net = _fresh_model(cfg, sizes, seed)
    fresh = net.state_dict()
    result: dict[str, Any] = {
        "config": cfg, "model": migrate_weights(old_model, p, fresh, temps),
        "head_sizes": sizes, "head_names": [c.name for c in new.classifiers], "tree": tree_entry(new)}
    ema = state.get("ema")
    if isinstance(ema, dict):
        ema_sd = _old_weights(state, "ema", old_net, old_sizes, checkpoint)
        result["ema"] = {**ema, "state": migrate_weights(ema_sd, p, fresh, temps)}
    if temps is not None:
        result["temperatures"] = [t for t, _ in temps]
    record = {"from_tree_hash": str(old_sig["sha256"]),
              "new_heads": [h.name for h in p.heads if h.source is None],
              "new_rows": {h.name: h.added for h in p.heads if h.source is not None and h.added},
              "renamed": dict(p.renamed), "dropped": list(p.dropped)}
    result["migration"] = record
    net.load_state_dict(result["model"])  # strict: it loads as predict will load it
    save_checkpoint(out, result)
    diff = diff_signatures(old_sig, tree_signature(new), class_names(new), old_name, new.name, p.renamed)
    return Migration(Path(out), p, diff, record, [n for _, n in temps] if temps else None, notes + temp_notes)


def _names(option: str, values: Any) -> list[str]:
    """--rename / --drop values: a list of texts (one text alone is one value)."""
    values = [values] if isinstance(values, str) else values
    if not isinstance(values, list | tuple) or not all(isinstance(v, str) for v in values):
        raise LabeltreeError(f"{option}: expected a list of node names (texts), got {values!r}")
    return list(values)


def _config(state: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """The checkpoint's config (validated), of a hierarchical model with weights."""
    cfg = checkpoint_config(state, path)
    if not isinstance(state.get("model"), dict):
        raise LabeltreeError("the checkpoint has no weights; migrate a checkpoint written by `labeltree train`", path)
    if cfg.model.kind == "flat":
        raise LabeltreeError("a flat model has one classifier over its datasets' classes, not the tree's; "
                             "migrate a hierarchical model", path)
    return cfg.model_dump(mode="json")


def _old_weights(state: dict[str, Any], which: str, expected: dict[str, torch.Tensor], sizes: list[int],
                 path: str | Path) -> dict[str, torch.Tensor]:
    """The checkpoint's raw or averaged weights, checked against `expected`, the state dict of the network of its
    own config and tree (`sizes` classes per classifier)."""
    sd = model_weights(state, "ema", path)[0] if which == "ema" else state["model"]
    why = weights_mismatch(expected, sd)
    if why:
        raise LabeltreeError(f"the checkpoint's {'averaged ' if which == 'ema' else ''}weights do not fit its tree "
                             f"({sizes} classes per classifier) and model config: {why}; migrate a checkpoint "
                             "written by `labeltree train`", path)
    return sd


def _old_tree(state: dict[str, Any], cfg: dict[str, Any], path: str | Path) -> tuple[dict[str, Any], str, list[int]]:
    """The tree the checkpoint's logits mean: its saved `tree` entry (a checkpoint from before trees were saved:
    its tree file), checked against its heads (names and sizes). Returns (signature, name, classes per head)."""
    saved = state.get("tree")
    if isinstance(saved, dict):
        sig, name = saved, str(saved.get("name", "?"))
    else:
        h = load_hierarchy(cfg.get("hierarchy") or "cityscapes+vistas+gtsdb")
        sig, name = tree_entry(h), h.name
    try:
        heads = old_classifiers(signature_nodes(sig))
        if not isinstance(sig.get("sha256"), str):
            raise ValueError("no hash")
        diff_signatures(sig, sig)  # its dataset maps: {dataset: [[value, node]]}
    except (ValueError, TypeError, AttributeError):
        raise LabeltreeError("the checkpoint's saved tree is unreadable; migrate a checkpoint written by "
                             "`labeltree train`", path) from None
    names, sizes = [o for o, _ in heads], [len(c) for _, c in heads]
    if (state.get("head_names") or names) != names or (state.get("head_sizes") or sizes) != sizes:
        raise LabeltreeError(f"the checkpoint's classifiers {state.get('head_names')!r} are not those of its own "
                             f"tree '{name}' ({names}); it was not written for that tree", path)
    return sig, name, sizes


def _new_config(cfg: dict[str, Any], new: Hierarchy, tree: str | Path) -> tuple[dict[str, Any], list[str]]:
    """The checkpoint's config on the new tree: its datasets that the new tree maps (the others noted)."""
    from labeltree.resources import is_path_ref

    mapped = set(new.mappings) | {m.taxonomy.name for m in new.mappings.values()}
    out = {**cfg, "hierarchy": str(Path(tree).resolve()) if is_path_ref(tree) else str(tree)}
    notes = []
    for key in ("datasets", "eval_datasets"):
        gone = [d["name"] for d in cfg.get(key, []) if d["name"] not in mapped]
        out[key] = [d for d in cfg.get(key, []) if d["name"] in mapped]
        notes += [f"dataset '{g}' is not in tree '{new.name}': left out of the new checkpoint's config ({key})"
                  for g in gone]
    if not out["datasets"]:
        raise LabeltreeError(f"tree '{new.name}' maps none of the checkpoint's training datasets "
                             f"({', '.join(d['name'] for d in cfg.get('datasets', []))}); nothing of the old model "
                             "would be predicted", tree)
    optim = dict(out.get("optim") or {})
    names = {d["name"] for d in out["datasets"]}
    if optim.get("milestone_unit") == "epochs" and optim.get("epoch_dataset") not in names:
        optim["epoch_dataset"] = out["datasets"][0]["name"]
        notes.append(f"optim.epoch_dataset is now '{optim['epoch_dataset']}'")
        out["optim"] = optim
    try:
        cfg_ok = config_from_dict(out)
    except LabeltreeError as e:
        raise LabeltreeError(f"the checkpoint's config does not hold on the new tree: {e}") from None
    return cfg_ok.model_dump(mode="json"), notes


def _temperatures(state: dict[str, Any], p: Plan, n_old: int, path: str | Path,
                  ) -> tuple[list[tuple[float, str]] | None, list[str]]:
    """Calibrated temperatures per new head: kept where the old rows are (the new rows stay out of play), 1.0
    for a new head. Returns [(T, what)] or None, and a note."""
    from labeltree.train.predict import checked_temperatures

    old = checked_temperatures(state.get("temperatures"), n_old, path)
    if old is None:
        return None, []
    out = [(1.0, "1.0 (new head)") if h.source is None else (old[h.source], "kept") for h in p.heads]
    note = ("calibrated temperatures kept for the old classifiers and 1.0 for new heads; calibrate again after "
            "fine-tuning (`labeltree calibrate`)")
    return out, [note]


def _fresh_model(cfg: dict[str, Any], sizes: list[int], seed: int) -> torch.nn.Module:
    """The new tree's network as the builder initialises it (seeded; the caller's random state untouched)."""
    model_cfg = config_from_dict(cfg).model
    model_cfg.pretrained = None
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 'no model.pretrained': the old weights come next
        torch.manual_seed(seed)
        return build_model(model_cfg, sizes)


def migrate_weights(old: dict[str, torch.Tensor], p: Plan, fresh: dict[str, torch.Tensor],
                    temps: list[tuple[float, str]] | None) -> dict[str, torch.Tensor]:
    """The new network's state dict: shared layers copied, heads by the plan (fresh ones from `fresh`)."""
    out: dict[str, torch.Tensor] = {}
    for k, v in fresh.items():
        if not k.startswith("heads."):
            if k not in old or old[k].shape != v.shape:
                raise LabeltreeError(f"the checkpoint's weights lack '{k}' of its own model config; migrate a "
                                     "checkpoint written by `labeltree train`")
            out[k] = old[k].clone()
    for j, hp in enumerate(p.heads):
        prefix = f"heads.{j}."
        mine = {k[len(prefix):]: v for k, v in fresh.items() if k.startswith(prefix)}
        if hp.source is None:
            out.update({prefix + k: v.clone() for k, v in mine.items()})
            continue
        src = {k[len(f"heads.{hp.source}."):]: v for k, v in old.items() if k.startswith(f"heads.{hp.source}.")}
        missing = set(mine) - set(src)
        if missing:
            raise LabeltreeError(f"the checkpoint's head '{hp.name}' lacks {sorted(missing)[0]}")
        t = temps[j][0] if temps else 1.0
        grown = grow_head(src, hp.rows, t)
        out.update({prefix + k: (grown[k] if k in grown else src[k].clone()) for k in mine})
    return out


def grow_head(src: dict[str, torch.Tensor], rows: list[int | None], temperature: float = 1.0,
              ) -> dict[str, torch.Tensor]:
    """logits (1x1 conv) and up (transposed conv, which mixes classes) for `rows` (old row or None = new).

    A new row i: its logit map is a constant -s (zero weights, bias -s) that only its own upsampling channel
    reads, through s times the bilinear kernel; its upsampled map also reads every kept input channel through
    the mean of the kept outputs' kernels (and the mean of their biases). So after upsampling (and the final
    bilinear resize, a convex combination) new = mean(kept) - s^2 * taps <= max(kept) - s^2 * MIN_TAP_SUM, with
    s^2 * MIN_TAP_SUM = NEW_ROW_GAP * temperature. Old outputs read nothing of the new channels."""
    w, b, up = src["logits.weight"], src["logits.bias"], src["up.weight"]  # [C,W,1,1], [C], [Cin=C, Cout=C, k, k]
    n, kept = len(rows), [r for r in rows if r is not None]
    pos = [i for i, r in enumerate(rows) if r is not None]
    s = math.sqrt(NEW_ROW_GAP * max(temperature, 1.0) / MIN_TAP_SUM)
    nw = torch.zeros((n, *w.shape[1:]), dtype=w.dtype)
    nb = torch.full((n,), -s, dtype=b.dtype)
    nup = torch.zeros((n, n, *up.shape[2:]), dtype=up.dtype)
    nw[pos], nb[pos] = w[kept], b[kept]
    nup[torch.tensor(pos)[:, None], torch.tensor(pos)[None, :]] = up[kept][:, kept]
    new = [i for i, r in enumerate(rows) if r is None]
    if new:
        mean_in = up[kept][:, kept].mean(dim=1)  # [kept inputs, k, k]: the mean of the kept outputs' kernels
        kernel = _bilinear_kernel(1, up.shape[-1])[0, 0].to(up.dtype) * s
        for i in new:
            nup[pos, i] = mean_in
            nup[i, i] = kernel
    out = {"logits.weight": nw, "logits.bias": nb, "up.weight": nup}
    if "up.bias" in src:
        ub = src["up.bias"]
        nub = torch.zeros(n, dtype=ub.dtype)
        nub[pos] = ub[kept]
        if new:
            nub[new] = ub[kept].mean()
        out["up.bias"] = nub
    return out
