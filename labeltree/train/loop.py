"""The training loop: mixed batches -> per-head pooled losses -> SGD, with exact resume, DDP,
evaluation every N steps and `best`/`last` checkpoints.

Run folder: config.yaml (resolved), train.jsonl (one line per logged step: loss per head),
metrics.jsonl (one line per evaluation), last2_mean.json (the mean of the last two evaluations, the paper's
number: train/last_mean.py), last.pt, best.pt, tb/ (when tensorboard is installed).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from labeltree.core.hierarchy import Hierarchy
from labeltree.core.tree_file import load_hierarchy
from labeltree.errors import LabeltreeError
from labeltree.fsutil import write_text
from labeltree.train import finetune
from labeltree.train.checkpoint import (
    check_tree,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
    tree_entry,
)
from labeltree.train.class_weights import load_class_weights
from labeltree.train.config import RUN_FILES, Config, check_init_options, check_run_folder
from labeltree.train.data import Source, batches, build_loader, build_sources, check_labels, normalise
from labeltree.train.ema import KEY as EMA_KEY
from labeltree.train.ema import WeightEMA
from labeltree.train.evaluation import EvalSet, eval_sets, evaluate_sources
from labeltree.train.fastload import apply_jitter
from labeltree.train.finetune import Init, Tuning
from labeltree.train.last_mean import write_last_mean
from labeltree.train.loss import LabelMapper, flat_loss, flat_space, gating_chain, hierarchical_loss
from labeltree.train.model import build_model
from labeltree.train.optim import make_optimizer
from labeltree.train.predict import Predictor


@dataclass
class RunResult:
    out: Path
    step: int
    losses: list[dict[str, Any]] = field(default_factory=list)  # the records written to train.jsonl
    metrics: list[dict[str, Any]] = field(default_factory=list)
    last: Path | None = None
    best: Path | None = None


def _dist_env() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0"))


def pick_device(spec: str, local_rank: int = 0) -> torch.device:
    if spec == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    if spec.startswith("cuda") and not torch.cuda.is_available():
        raise LabeltreeError(f"train.device={spec} but no CUDA device is available; use train.device=cpu")
    if spec == "cuda":
        return torch.device(f"cuda:{local_rank}")
    if spec.startswith("cuda:") and int(spec[5:]) >= torch.cuda.device_count():
        raise LabeltreeError(f"train.device={spec} but there are {torch.cuda.device_count()} CUDA devices")
    if spec == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise LabeltreeError("train.device=mps but MPS is not available; use train.device=cpu")
    return torch.device(spec)


def head_names(h: Hierarchy, flat: bool) -> list[str]:
    return ["flat"] if flat else [c.name for c in h.classifiers]


def milestones_in_steps(cfg: Config, sources: list[Source], world: int) -> list[int]:
    o = cfg.optim
    if o.milestone_unit == "steps":
        return sorted(o.milestones)
    i = [d.name for d in cfg.datasets].index(o.epoch_dataset)
    per_step = cfg.datasets[i].share * world
    if per_step == 0:
        raise LabeltreeError(f"optim.epoch_dataset '{o.epoch_dataset}' has share 0")
    steps_per_epoch = math.ceil(len(sources[i]) / per_step)
    return sorted(int(m * steps_per_epoch) for m in o.milestones)


class _Writer:
    """JSONL (always) + TensorBoard (when importable) on rank 0."""

    def __init__(self, out: Path, enabled: bool):
        self.out, self.enabled, self.tb = out, enabled, None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(out / "tb"))
            except Exception:  # noqa: BLE001 - tensorboard is optional
                self.tb = None

    def jsonl(self, name: str, rec: dict[str, Any]) -> None:
        if self.enabled:
            with open(self.out / name, "a") as f:
                f.write(json.dumps(rec) + "\n")

    def scalars(self, prefix: str, values: dict[str, float], step: int) -> None:
        if self.tb is not None:
            for k, v in values.items():
                if v is not None and not (isinstance(v, float) and math.isnan(v)):
                    self.tb.add_scalar(f"{prefix}/{k}", v, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _truncate_jsonl(path: Path, step: int) -> None:
    """Drop records logged after the checkpoint we resume from (a kill can leave a few)."""
    if not path.exists():
        return
    keep = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln).get("step", 0) <= step]
    write_text(path, "".join(ln + "\n" for ln in keep))


def train(cfg: Config, out: str | Path, resume: bool = False, progress: bool = True,
          log: Any = print, force: bool = False, init: str | Path | None = None,
          init_weights: str = "ema") -> RunResult:
    """Train (or continue with `resume`, or start over in a used folder with `force`) into run folder `out`;
    `init`: start from that checkpoint's weights (`init_weights`: its ema or raw ones; train/finetune.py).

    The steps, in the order their random draws and files depend on: device, label space, restore,
    run folder and sources, build (model, optimizer, schedule), loss, then the loop: step, log,
    evaluate, checkpoint.
    """
    out = Path(out)
    check_init_options(init, None, resume, out)
    rank, world, local_rank = _dist_env()
    main = rank == 0
    if main:
        check_run_folder(out, resume, force)
    device = _setup_device(cfg, world, local_rank)
    h, names, flat, sizes = _label_space(cfg)
    state = _restore(cfg, out / "last.pt", sizes, world, h) if resume else None
    start_from = finetune.start_from(init, init_weights, state, h)
    finetune.check_init_fits(start_from, cfg, sizes)
    sources = _prepare(cfg, out, h, sources_only=not main, fresh=state is None, world=world, progress=progress)
    model, opt, ema, sched, tune = _build(cfg, sizes, sources, world, device, h, start_from)
    if main:
        for line in finetune.setup_log(cfg, h, start_from, tune.new):
            log(line)
    start, best = 0, -math.inf
    if state is not None:
        start, best, ema = _load_state(model, opt, ema, sched, state, out, main, log)
    if start >= cfg.train.steps:
        if main:
            log(f"nothing to do: the checkpoint is at step {start} >= train.steps {cfg.train.steps}")
        last, best_path = out / "last.pt", out / "best.pt"
        return RunResult(out, start, last=last if last.exists() else None,
                         best=best_path if best_path.exists() else None)
    evals = eval_sets(cfg, h) if main and (cfg.train.eval_every or cfg.train.eval_at_end) else None  # a
    # missing val split refused now, not after the last step (it was, and the run ended without a checkpoint)
    loss_fn = _loss_fn(cfg, h, names, flat, device, world, main, log)
    fwd = _wrap(cfg, model, device, world)
    amp = cfg.train.amp and device.type == "cuda"
    loader = build_loader(cfg, sources, start, rank, world, pin=cfg.train.pin_memory and device.type == "cuda")
    if main:
        _start_folder(cfg, out, state is None, log)
    run = _Run(cfg, out, h, names, head_names(h, flat is not None), sizes, world, main, model, opt, sched,
               ema, _Writer(out, main), RunResult(out, start), Predictor(model, cfg, h, flat, device, amp), best,
               init=start_from.record if start_from is not None else None)
    run.evals = evals
    bar = tqdm(total=cfg.train.steps, initial=start, desc="train", unit="step", disable=not (progress and main),
               dynamic_ncols=True)
    step = start
    model.train()
    run.t_last = time.perf_counter()
    try:
        for batch in batches(loader):
            tune.before_step(step)
            loss, per_head = _step(cfg, batch, device, fwd, loss_fn, opt, sched, ema, model, amp, tune)
            step += 1
            if step % cfg.train.log_every == 0 or step == cfg.train.steps:
                _log_step(run, step, loss, per_head, bar)
            bar.update(1)
            do_eval = (cfg.train.eval_every and step % cfg.train.eval_every == 0) or \
                (step == cfg.train.steps and cfg.train.eval_at_end)
            if do_eval and main:
                _evaluate(run, step, bar)
            if main and (step % cfg.train.checkpoint_every == 0 or step == cfg.train.steps):
                run.result.last = _checkpoint(run, step, out / "last.pt")
            if world > 1 and do_eval:
                dist.barrier()
    finally:
        bar.close()
        run.writer.close()
    run.result.step = step
    if run.result.best is None and (out / "best.pt").exists():
        run.result.best = out / "best.pt"
    return run.result


@dataclass
class _Run:
    """What the loop's steps share: the run's fixed parts and what changes as it goes (best score, timing)."""

    cfg: Config
    out: Path
    h: Hierarchy
    names: list[str]  # the training datasets
    heads: list[str]
    sizes: list[int]
    world: int
    main: bool
    model: torch.nn.Module
    opt: torch.optim.Optimizer
    sched: Any
    ema: WeightEMA | None  # the moving average of the weights (train.ema_decay), None when off
    writer: _Writer
    result: RunResult
    predictor: Predictor
    best: float = -math.inf
    init: dict[str, Any] | None = None  # what a fine-tuning run started from (train/finetune.py), in its checkpoints
    evals: list[EvalSet] | None = None  # built before the first step
    t_last: float = 0.0


# -- before the loop ----------------------------------------------------------------------------------

def _setup_device(cfg: Config, world: int, local_rank: int) -> torch.device:
    """The device, the process group of a multi-process run, CPU threads and cuDNN autotuning."""
    device = pick_device(cfg.train.device, local_rank)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cpu" and cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True
    return device


def _label_space(cfg: Config) -> tuple[Hierarchy, list[str], Any, list[int]]:
    """The tree, the training datasets, the flat model's class space (None: hierarchical) and the head sizes."""
    h = load_hierarchy(cfg.hierarchy)
    names = [d.name for d in cfg.datasets]
    for n in names:
        if h.mapping(n).evaluation_only:
            raise LabeltreeError(f"dataset '{n}' is evaluation-only in tree '{h.name}'; list it under eval_datasets")
    flat = flat_space(h, names) if cfg.model.kind == "flat" else None
    sizes = [flat.n_classes] if flat else [len(c.children) for c in h.classifiers]
    return h, names, flat, sizes


def _restore(cfg: Config, last_path: Path, sizes: list[int], world: int, h: Hierarchy) -> dict[str, Any]:
    """The checkpoint to resume from, refused unless model, tree, process count and seed are the same."""
    if not last_path.exists():
        raise LabeltreeError(f"--resume: no checkpoint to resume from (searched {last_path})", last_path.parent)
    state = load_checkpoint(last_path)
    _check_resumable(state, last_path)
    if state["config"]["model"] != cfg.model_dump(mode="json")["model"] or list(state["head_sizes"]) != sizes:
        raise LabeltreeError("--resume: the model section of the config differs from the checkpoint's; "
                             "resume with the same model settings", last_path)
    check_tree(state, h, last_path, "--resume: ")  # a changed tree file: the logits would mean other nodes
    if int(state["sampler"]["world"]) != world or int(state["sampler"]["seed"]) != cfg.train.seed:
        raise LabeltreeError(f"--resume: the checkpoint was written with {state['sampler']['world']} process(es) "
                             f"and seed {state['sampler']['seed']}; resume with the same to continue exactly",
                             last_path)
    return state


#: what a run's last.pt holds to be continued (and of what type)
RESUME_KEYS = {"config": dict, "model": dict, "optimizer": dict, "scheduler": dict, "step": int, "head_sizes": list,
               "sampler": dict, "rng": dict}


def _check_resumable(state: dict[str, Any], path: Path) -> None:
    """A hand-made or foreign last.pt is one line, not a KeyError in the middle of the restore."""
    bad = [k for k, t in RESUME_KEYS.items() if not isinstance(state.get(k), t) or isinstance(state.get(k), bool)]
    bad += [] if bad or isinstance(state["config"].get("model"), dict) else ["config.model"]
    bad += [] if bad or all(isinstance(state["sampler"].get(k), int) for k in ("world", "seed")) else ["sampler"]
    if bad:
        raise LabeltreeError(f"--resume: the checkpoint has no valid '{bad[0]}': it is no last.pt that `labeltree "
                             "train` wrote; start the run again with --force", path)


def _prepare(cfg: Config, out: Path, h: Hierarchy, *, sources_only: bool, fresh: bool, world: int,
             progress: bool) -> list[Source]:
    """The training sources; on rank 0 also the run folder and, for a fresh run, the label-value check."""
    sources = build_sources(cfg, h)
    if not sources_only:
        out.mkdir(parents=True, exist_ok=True)
        if fresh and cfg.train.check_labels:
            check_labels(sources, workers=cfg.train.workers or 1, progress=progress)
    if world > 1:
        dist.barrier()
    return sources


def _start_folder(cfg: Config, out: Path, fresh: bool, log: Any) -> None:
    """The resolved config into the run folder and, for a fresh run (--force), the old run's files removed (no
    old history appended to, no old best.pt beside it): only once everything that can refuse the run has run,
    so that a refused `train --force` leaves the old run as it was."""
    text = cfg.to_yaml()
    write_text(out / "config.yaml", text)
    log(f"# resolved config (saved to {out / 'config.yaml'})\n{text}")
    if fresh:
        for n in RUN_FILES:
            (out / n).unlink(missing_ok=True)


def _build(cfg: Config, sizes: list[int], sources: list[Source], world: int, device: torch.device, h: Hierarchy,
           init: Init | None) -> tuple[torch.nn.Module, torch.optim.Optimizer, WeightEMA | None, Any, Tuning]:
    """Model (seeded; a fine-tuning run's start weights loaded), optimizer, the weights' moving average
    (train.ema_decay), step schedule and the fine-tuning steps (frozen backbone, new parameters' rate)."""
    torch.manual_seed(cfg.train.seed)
    np.random.seed(cfg.train.seed)
    model = build_model(cfg.model, sizes)
    if init is not None and init.weights is not None:  # step 0 of a run started with --init
        finetune.load_init_weights(model, init)
    model = model.to(device)
    if device.type == "cuda" and cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    mult = cfg.optim.new_head_lr_mult
    new = finetune.new_params(h, init) if cfg.model.kind == "hierarchical" else None
    opt = make_optimizer(cfg.optim, model, finetune.new_head_param_ids(model, new, mult), mult)
    ema = WeightEMA(model, cfg.train.ema_decay) if cfg.train.ema_decay > 0 else None
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones_in_steps(cfg, sources, world), gamma=cfg.optim.gamma)
    tune = Tuning(model, cfg.train.freeze_backbone_steps, new, mult, toggle_grad=world == 1 and not cfg.train.compile)
    return model, opt, ema, sched, tune


def _load_state(model: torch.nn.Module, opt: torch.optim.Optimizer, ema: WeightEMA | None, sched: Any,
                state: dict[str, Any], out: Path, main: bool, log: Any) -> tuple[int, float, WeightEMA | None]:
    """Model, optimizer, schedule, weight averages and random state from the checkpoint; the logs cut back
    to its step. Returns (the step to continue from, the best score so far, the weight averages)."""
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    if ema is not None:  # a checkpoint without averages (EMA switched on now) starts them from its weights
        if isinstance(state.get(EMA_KEY), dict):
            ema.load_state_dict(state[EMA_KEY])
        else:
            ema = WeightEMA(model, ema.decay)
    start = int(state["step"])
    best = float(state.get("best", -math.inf))
    set_rng_state(state["rng"])
    if main:
        _truncate_jsonl(out / "train.jsonl", start)
        _truncate_jsonl(out / "metrics.jsonl", start)
        write_last_mean(out)  # as the evaluations up to the checkpoint give it
        log(f"resuming from {out / 'last.pt'} at step {start}")
    return start, best, ema


LossFn = Callable[[list[torch.Tensor], torch.Tensor, torch.Tensor], tuple[torch.Tensor, list[torch.Tensor]]]


def _loss_fn(cfg: Config, h: Hierarchy, names: list[str], flat: Any, device: torch.device, world: int,
             main: bool, log: Any) -> LossFn:
    """(logits, labels, dataset index) -> (loss, loss per head): flat, or per classifier with its lambda,
    the box gating and the class weights; counts summed over the processes of a multi-process run."""
    mapper = LabelMapper(h, names, device, flat)

    def reduce_count(c: torch.Tensor) -> tuple[torch.Tensor, int]:
        t = c.detach().float()
        dist.all_reduce(t)
        return t, world

    rc = reduce_count if world > 1 else None
    if flat is not None:
        if cfg.loss.class_weights is not None:
            raise LabeltreeError("loss.class_weights: per-classifier weights apply to model.kind hierarchical only")
        return lambda logits, labels, ds: flat_loss(logits, labels, ds, mapper, rc)
    lambdas = [cfg.lam(c.level) for c in h.classifiers]
    chains = {j: gating_chain(h, j, cfg.loss.gating) for j in {b for b in mapper.box_classifier if b is not None}}
    class_w = None
    if cfg.loss.class_weights is not None:
        cw = cfg.loss.class_weights
        class_w = [torch.as_tensor(w, device=device) for w in load_class_weights(cw.stats, cw.kind, h, cw.split)]
        if main:
            log(f"class weights ({cw.kind}, {cw.stats}, split {cw.split}): " + "; ".join(
                f"{c.name}: {min(w.tolist()):.3g}..{max(w.tolist()):.3g}" for c, w in zip(h.classifiers, class_w,
                                                                                       strict=True)))
    return lambda logits, labels, ds: hierarchical_loss(logits, labels, ds, mapper, lambdas, chains, rc, class_w)


def _wrap(cfg: Config, model: torch.nn.Module, device: torch.device, world: int) -> Any:
    """The model as the forward pass sees it: compiled (`train.compile`) and data-parallel over processes."""
    fwd: Any = model
    if cfg.train.compile:
        fwd = torch.compile(model)
    if world > 1:
        ids = [device.index] if device.type == "cuda" else None
        fwd = torch.nn.parallel.DistributedDataParallel(fwd, device_ids=ids)
    return fwd


# -- the loop's steps --------------------------------------------------------------------------------

def _step(cfg: Config, batch: dict[str, torch.Tensor], device: torch.device, fwd: Any, loss_fn: LossFn,
          opt: torch.optim.Optimizer, sched: Any, ema: WeightEMA | None, model: torch.nn.Module,
          amp: bool, tune: Tuning) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """One optimisation step on one mixed batch: forward, loss, backward, update (frozen backbone and new rows'
    rate: train/finetune.py) and the weights' average."""
    images = batch["image"].to(device, non_blocking=True)
    labels = batch["label"].to(device, non_blocking=True)
    ds = batch["ds"].to(device, non_blocking=True)
    if "jitter" in batch:  # train.jitter_on_device: colour jitter on the whole batch, after the transfer
        images = apply_jitter(images, batch["jitter"])
    x = normalise(images, cfg.model.normalise)
    if device.type == "cuda" and cfg.train.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
        logits = fwd(x)
    loss, per_head = loss_fn(logits, labels, ds)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    tune.before_update()
    opt.step()
    tune.after_update()
    sched.step()
    if ema is not None:
        ema.update(model)
    return loss, per_head


def _log_step(run: _Run, step: int, loss: torch.Tensor, per_head: list[torch.Tensor], bar: Any) -> None:
    """Loss per head (averaged over processes), learning rate and speed to train.jsonl, TensorBoard and
    the bar; a loss that is not finite stops the run."""
    cfg, world = run.cfg, run.world
    vals = torch.stack([loss.detach(), *[p.detach() for p in per_head]]).float()
    if world > 1:
        dist.all_reduce(vals)
        vals /= world
    v = vals.tolist()
    if not math.isfinite(v[0]):  # a diverged run must not go on to write best.pt and exit 0
        raise LabeltreeError(f"the loss is {v[0]} at step {step}: training diverged; lower optim.lr "
                             f"(now {run.opt.param_groups[0]['lr']:g}) or check the data", run.out)
    now = time.perf_counter()
    ips = cfg.batch_size * world * cfg.train.log_every / max(now - run.t_last, 1e-9)
    run.t_last = now
    rec = {"step": step, "loss": v[0], "heads": dict(zip(run.heads, v[1:], strict=True)),
           "lr": run.opt.param_groups[0]["lr"], "images_per_s": round(ips, 2)}
    run.result.losses.append(rec)
    run.writer.jsonl("train.jsonl", rec)
    run.writer.scalars("loss", {"total": v[0], **rec["heads"]}, step)
    bar.set_postfix_str(f"{ips:.1f} img/s loss {v[0]:.3f} " +
                        " ".join(f"{k[:8]}={x:.3f}" for k, x in zip(run.heads, v[1:], strict=True)))


def _evaluate(run: _Run, step: int, bar: Any) -> None:
    """Every evaluation dataset scored (train/evaluation.py) to metrics.jsonl; best.pt when the mean mIoU
    over the training datasets improves."""
    if not run.evals:  # built before the first step (train) whenever an evaluation is due
        return
    with run.ema.applied(run.model) if run.ema is not None else contextlib.nullcontext():
        metrics = evaluate_sources(run.predictor, run.evals)
    rec = {"step": step, "weights": "ema" if run.ema is not None else "raw", "datasets": metrics}
    run.result.metrics.append(rec)
    run.writer.jsonl("metrics.jsonl", rec)
    write_last_mean(run.out)
    trained = [m["mIoU"] for d, m in metrics.items() if d in run.names and m["mIoU"] is not None]
    score = float(np.mean(trained)) if trained else -math.inf
    run.writer.scalars("eval", {f"{d}/mIoU": m["mIoU"] for d, m in metrics.items()}, step)
    bar.write(f"step {step}: " + ", ".join(f"{d} mIoU {_fmt(m['mIoU'])}" for d, m in metrics.items()))
    if score > run.best:
        run.best = score
        run.result.best = _checkpoint(run, step, run.out / "best.pt")


def _checkpoint(run: _Run, step: int, path: Path) -> Path:
    state = _state(run.cfg, run.model, run.opt, run.sched, step, run.best, run.sizes, run.heads, run.world, run.ema,
                   tree_entry(run.h))
    if run.init is not None:
        state[finetune.KEY] = run.init
    save_checkpoint(path, state)
    return path


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _state(cfg: Config, model: torch.nn.Module, opt: torch.optim.Optimizer, sched: Any, step: int, best: float,
           sizes: list[int], heads: list[str], world: int, ema: WeightEMA | None = None,
           tree: dict[str, Any] | None = None) -> dict[str, Any]:
    st = {"config": cfg.model_dump(mode="json"), "model": model.state_dict(), "optimizer": opt.state_dict(),
          "scheduler": sched.state_dict(), "step": step, "best": best, "head_sizes": sizes,
          "head_names": heads, "tree": tree, "rng": rng_state(), "sampler": {"seed": cfg.train.seed, "world": world,
                                                                "next_step": step}}
    if ema is not None:  # the averaged weights beside the raw ones (predict / evaluate / export --weights)
        st[EMA_KEY] = ema.state_dict()
    return st
