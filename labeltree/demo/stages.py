"""The demo's stages: synthetic data, the merged tree, class statistics, both models trained (side by side
on a CPU) and evaluated by the trainer's own evaluation. Each writes its files under OUT, and a re-run
continues where the last one stopped."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from labeltree.demo.figures import gt_nodes, sign_node_mask
from labeltree.demo.plan import MODELS, Plan, demo_settings
from labeltree.fsutil import write_json
from labeltree.synth.runner import synthesize


def stage_synth(out: Path, plan: Plan, progress: bool, log: Callable[[str], None]) -> Path:
    data = out / "data"
    meta = data / "synth.json"
    if meta.is_file():
        try:
            m = json.loads(meta.read_text())
        except (OSError, ValueError):  # a damaged marker: synthesize() decides what the folder is
            m = {}
        m = m if isinstance(m, dict) else {}
        want = {"complete": True, "seed": plan.seed, "images": plan.images, "gtsdb_images": plan.gtsdb_images,
                "size": list(plan.size), "gtsdb_signs": list(plan.gtsdb_signs),
                "street_signs": list(plan.street_signs) if plan.street_signs else None}  # as synth.json holds them
        if all(m.get(k) == v for k, v in want.items()):
            log(f"[1/5] synthetic data: reusing {data}")
            return data
    log(f"[1/5] synthetic data: {plan.images} frames each of Cityscapes, Vistas (+ Cityscapes Extended), "
        f"{plan.gtsdb_images} GTSDB frames at {plan.size[0]}x{plan.size[1]} -> {data}")
    synthesize(data, images=plan.images, gtsdb_images=plan.gtsdb_images, seed=plan.seed, size=plan.size,
               progress=progress, gtsdb_signs=plan.gtsdb_signs, street_signs=plan.street_signs)
    return data


def stage_merge(out: Path, datasets: list[str], log: Callable[[str], None]) -> dict[str, Any]:
    from labeltree.core.merge import merge

    res = merge(datasets)
    js = res.to_json()
    write_json(out / "merge.json", js)
    sizes = [len(c["classes"]) for c in js["classifiers"]]
    log(f"[2/5] merged {' + '.join(datasets)}: {len(js['nodes'])} nodes, classifiers of {sizes} classes, "
        f"{len(res.conflicts)} conflicts noted -> {out / 'merge.json'}")
    return js


def stage_stats(out: Path, data: Path, hierarchy: Any, datasets: list[str], progress: bool,
                log: Callable[[str], None]) -> list[dict[str, Any]]:
    from labeltree.stats.collect import collect_stats
    from labeltree.stats.render import format_table, write_rows
    from labeltree.stats.report import build_report

    groups = []
    for ds in datasets:
        groups += collect_stats(ds, data / ds, hierarchy=hierarchy, progress=progress,
                                cache_dir=out / "cache" / "stats")
    rep = build_report(groups, hierarchy)
    write_rows(out / "stats.json", rep.classes)
    write_json(out / "stats-summary.json", rep.summary)
    cols = [("dataset", "dataset"), ("split", "split"), ("images", "images"), ("annotation", "annotation"),
            ("annotated_pixels", "annotated px"), ("classes_present", "classes present"), ("boxes", "boxes")]
    log(f"[3/5] class statistics ({out / 'stats.json'}; per class and per classifier: `labeltree stats`):")
    log(format_table(rep.summary, cols))
    return rep.summary


def train_config(plan: Plan, data: Path, kind: str, threads: int | None = None) -> Any:
    from labeltree.train.config import load_config

    settings = demo_settings()
    overrides = [*settings.overrides, f"train.steps={plan.steps}", f"model.kind={kind}",
                 f"train.seed={plan.seed}", f"train.eval_every={plan.steps}",
                 f"train.checkpoint_every={max(plan.steps // 4, 25)}"]
    if threads:
        overrides.append(f"train.threads={threads}")
    return load_config(settings.train_config, overrides, data_root=data)


def _train_one(kind: str, plan: Plan, data: Path, run: Path, progress: bool, threads: int | None = None) -> Path:
    """Train (or resume) one model into `run`; its resolved config and messages go to run/../RUN.log."""
    from labeltree.train.loop import train

    cfg = train_config(plan, data, kind, threads)
    run.parent.mkdir(parents=True, exist_ok=True)
    with open(run.parent / f"{run.name}.log", "a") as f:
        def quiet(msg: str) -> None:
            f.write(msg + "\n")
            f.flush()
        resume = (run / "last.pt").exists()  # else start over: a kill before the first checkpoint left only logs
        res = train(cfg, run, resume=resume, force=not resume, progress=progress, log=quiet)
    return res.last or run / "last.pt"


def _last_step(run: Path) -> int:
    """The step of the last line of run/train.jsonl (0 before the first)."""
    p = run / "train.jsonl"
    try:
        with open(p, "rb") as f:
            f.seek(max(0, p.stat().st_size - 4096))
            lines = f.read().splitlines()
        return int(json.loads(lines[-1])["step"]) if lines else 0
    except (OSError, ValueError, KeyError, IndexError):
        return 0


def side_by_side() -> bool:
    """Train the two models at once: on a CPU with >= 2 cores, in two processes with half the cores
    each (small convolutions do not use 2 threads well: ~1.5x faster); on a GPU one after the other."""
    import torch

    return not torch.cuda.is_available() and (os.cpu_count() or 1) >= 2


def stage_train(out: Path, plan: Plan, data: Path, progress: bool, log: Callable[[str], None],
                suffix: str = "") -> dict[str, Path]:
    """Both models, side by side or one after the other (`side_by_side`), into out/runs/KIND{suffix}."""
    cores = os.cpu_count() or 1
    together = side_by_side()
    cfg = train_config(plan, data, MODELS[0])
    runs = {kind: out / "runs" / f"{kind}{suffix}" for kind in MODELS}
    for i, kind in enumerate(MODELS):
        log(f"[4/5] training the {kind} model ({i + 1}/2): {plan.steps} steps, backbone {cfg.model.backbone}, "
            f"batch {cfg.batch_size} ({', '.join(f'{d.name} {d.share}' for d in cfg.datasets)})"
            + (" - resuming" if (runs[kind] / "last.pt").exists() else "")
            + (f", side by side with {cores // 2} thread{'s' if cores >= 4 else ''} each" if together else ""))
    if not together:
        return {kind: _train_one(kind, plan, data, runs[kind], progress) for kind in MODELS}

    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    from tqdm import tqdm

    with ProcessPoolExecutor(len(MODELS), mp_context=mp.get_context("spawn")) as pool:
        futs = {kind: pool.submit(_train_one, kind, plan, data, runs[kind], False, cores // 2) for kind in MODELS}
        with tqdm(total=plan.steps * len(MODELS), desc="train both", unit="step", disable=not progress) as bar:
            while True:
                done, _ = wait(list(futs.values()), timeout=1.0)
                steps = {k: _last_step(r) for k, r in runs.items()}
                bar.n = sum(min(n, plan.steps) for n in steps.values())
                bar.set_postfix_str(", ".join(f"{k} {n}" for k, n in steps.items()))  # redraws
                if len(done) == len(futs):
                    break
                if any(f.exception() for f in done):  # one failed: stop the other instead of waiting for it
                    for p in list(getattr(pool, "_processes", {}).values()):
                        p.terminate()
                    break
        errors = [f.exception() for f in futs.values() if f.done() and f.exception()]
        if errors:  # the model's own error (e.g. a LabeltreeError: exit 2), not the one its sibling got when stopped
            raise next((e for e in errors if not isinstance(e, BrokenProcessPool)), errors[0])
        return {kind: f.result() for kind, f in futs.items()}


# -- evaluation -------------------------------------------------------------------------------------

def evaluate_model(checkpoint: Path, plan: Plan, data: Path, progress: bool = False,
                   keep: int = 1) -> tuple[dict[str, dict[str, Any]], dict[str, list[tuple]]]:
    """{dataset: result} on every val split and Cityscapes Extended, by the trainer's own evaluation
    (`train.evaluation.evaluate_sources`), plus a few (image, gt, nodes) samples for the figure: the first
    `keep` frames that show a sign, else the first frame.

    The flat model is scored on the Cityscapes Extended signs with the paper's second-choice rule
    (docs/design.md §2.6): its generic "traffic sign" class sits beside the sign subclasses.
    """
    from labeltree.train.evaluation import eval_sets, evaluate_sources
    from labeltree.train.predict import load_predictor

    pred = load_predictor(checkpoint)
    cfg = train_config(plan, data, "flat" if pred.flat is not None else "hierarchical")
    signs = sign_node_mask(pred.h)
    samples: dict[str, list[tuple]] = {}
    first: dict[str, tuple] = {}

    def keep_some(dataset: str, img: np.ndarray, lab: np.ndarray, nodes: np.ndarray) -> None:
        kept = samples.setdefault(dataset, [])
        sample = (np.asarray(img), np.asarray(lab), nodes)
        first.setdefault(dataset, sample)
        if len(kept) < keep and signs[gt_nodes(pred.h, dataset, lab)].any():
            kept.append(sample)

    results = evaluate_sources(pred, eval_sets(cfg, pred.h), on_image=keep_some, progress=progress)
    for dataset, sample in first.items():
        if not samples[dataset]:  # no frame shows a sign: show the first one
            samples[dataset].append(sample)
    return results, samples


def stage_risk_coverage(checkpoint: Path, data: Path, datasets: list[str],
                        thresholds: tuple[float, ...]) -> dict[str, list[dict[str, Any]]]:
    """{dataset: rows}: the hierarchical model's selective-prediction sweep on each dataset's default split,
    by the one implementation `labeltree evaluate --checkpoint CK --risk-coverage` runs."""
    from labeltree.infer.pytorch import TorchModel
    from labeltree.infer.selective import selective_sweep

    model = TorchModel(checkpoint, "cpu")  # loaded once for every dataset
    return {d: selective_sweep(model, d, data / d, thresholds=thresholds) for d in datasets}


def seed_spread(out: Path, plan: Plan, data: Path, seeds: int, first: dict[str, dict[str, dict[str, Any]]],
                progress: bool, log: Callable[[str], None]) -> dict[str, dict[str, float]]:
    """How far each number moves between training seeds: both models trained again with seeds plan.seed + 1 ..
    plan.seed + seeds - 1 (same data) into runs/KIND-seedS and evaluated; per metric and column the largest
    max - min over the seeds of either model (`first`: the plan seed's numbers). The verdict calls a model
    better only where the difference between the models exceeds it."""
    values: dict[str, dict[str, dict[str, list[float]]]] = {}  # model -> metric -> column -> values

    def note(metrics: dict[str, dict[str, dict[str, Any]]]) -> None:
        for model, by_ds in metrics.items():
            for ds, res in by_ds.items():
                for metric in ("mIoU", "mPA"):
                    if res.get(metric) is not None:
                        values.setdefault(model, {}).setdefault(metric, {}).setdefault(ds, []).append(res[metric])

    note(first)
    for s in range(plan.seed + 1, plan.seed + seeds):
        log(f"[4/5] seed spread: both models again with training seed {s} ({s - plan.seed + 1}/{seeds})")
        seeded = plan.model_copy(update={"seed": s})
        runs = stage_train(out, seeded, data, progress, log, suffix=f"-seed{s}")
        note({model: evaluate_model(ck, seeded, data, progress)[0] for model, ck in runs.items()})
    spread: dict[str, dict[str, float]] = {}
    for by_metric in values.values():
        for metric, by_ds in by_metric.items():
            for ds, v in by_ds.items():
                if len(v) == seeds:
                    cur = spread.setdefault(metric, {}).get(ds, 0.0)
                    spread[metric][ds] = max(cur, max(v) - min(v))
    return spread
