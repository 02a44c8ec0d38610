"""`labeltree demo`: the paper in miniature, end to end, on synthetic data.

Stages (each writes its files under OUT, and a re-run continues where the last one stopped):
synth data in the three native formats -> merge the taxonomies -> class statistics -> train the
hierarchical model and the flat baseline (same backbone, steps, data, seed) -> evaluate both on each
dataset's val split and on the synthetic Cityscapes Extended signs (cross-dataset: neither model saw
sign classes on Cityscapes-format frames) -> report.md laid out like the paper's Tables I-IV, with
figures. The report states whatever the runs give, including flat beating hierarchical.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from labeltree.demo.figures import plot_losses, plot_per_class, plot_predictions
from labeltree.demo.plan import DemoResult, demo_settings, make_plan
from labeltree.demo.report import render_report
from labeltree.demo.stages import (
    evaluate_model,
    seed_spread,
    side_by_side,
    stage_merge,
    stage_risk_coverage,
    stage_stats,
    stage_synth,
    stage_train,
    train_config,
)
from labeltree.errors import LabeltreeError
from labeltree.fsutil import write_json, write_text

MAX_SEEDS = 10

# -- entry point ------------------------------------------------------------------------------------

def run_demo(out: str | Path, quick: bool = False, *, images: int | None = None, gtsdb_images: int | None = None,
             steps: int | None = None, seed: int | None = None, seeds: int = 1, progress: bool = True,
             log: Callable[[str], None] = print) -> DemoResult:
    """The demo into `out`; `seeds` > 1 trains both models with that many training seeds to measure how far the
    numbers move between seeds (the verdict's noise level; without it no winner is called)."""
    import torch

    if isinstance(seeds, bool) or not isinstance(seeds, int) or not 1 <= seeds <= MAX_SEEDS:
        raise LabeltreeError(f"--seeds must be a whole number from 1 to {MAX_SEEDS}, not {seeds!r}")

    from labeltree.core.tree_file import load_hierarchy

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plan = make_plan(quick, images, gtsdb_images, steps, seed)
    write_json(out / "plan.json", {"quick": quick, **plan.__dict__})
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    data = stage_synth(out, plan, progress, log)
    seconds["synth"] = time.perf_counter() - t

    t = time.perf_counter()
    cfg = train_config(plan, data, "hierarchical")
    h = load_hierarchy(cfg.hierarchy)
    datasets = [d.name for d in cfg.datasets]
    stage_merge(out, datasets, log)
    summary = stage_stats(out, data, h, datasets + [e.name for e in cfg.eval_datasets], progress, log)
    seconds["merge+stats"] = time.perf_counter() - t

    t = time.perf_counter()
    runs = stage_train(out, plan, data, progress, log)
    seconds["training"] = time.perf_counter() - t

    t = time.perf_counter()
    log("[5/5] evaluating both models on the val splits and the Cityscapes Extended signs")
    metrics: dict[str, dict[str, dict[str, Any]]] = {}
    samples: dict[str, dict[str, list[tuple]]] = {}
    for model, ck in runs.items():
        metrics[model], samples[model] = evaluate_model(ck, plan, data, progress)
        write_json(out / "eval" / f"{model}.json", metrics[model])
    settings = demo_settings()
    plot_predictions(out / "predictions.png", h, samples, settings.figure_datasets)
    plot_per_class(out / "per_class.png", metrics, list(settings.report.per_class_panels))
    plot_losses(out / "losses.png", runs)
    seconds["evaluation"] = time.perf_counter() - t

    t = time.perf_counter()
    layout = settings.report
    log(f"[5/5] risk-coverage of the hierarchical model: back-off thresholds {list(layout.risk_coverage)}")
    risk = stage_risk_coverage(runs["hierarchical"], data, [c.dataset for c in layout.columns], layout.risk_coverage)
    write_json(out / "eval" / "risk_coverage.json", risk)
    seconds["risk-coverage"] = time.perf_counter() - t

    spread = None
    if seeds > 1:
        t = time.perf_counter()
        spread = seed_spread(out, plan, data, seeds, metrics, progress, log)
        write_json(out / "eval" / "seed_spread.json", {"seeds": list(range(plan.seed, plan.seed + seeds)),
                                                        "spread": spread})
        seconds["seed spread"] = time.perf_counter() - t
    result = DemoResult(out, plan, metrics, seconds, risk, spread=spread,
                        seeds=list(range(plan.seed, plan.seed + seeds)))
    device = ("CUDA GPU" if torch.cuda.is_available() else
              f"CPU, {os.cpu_count()} cores (the two models trained side by side)" if side_by_side() else "CPU, 1 core")
    write_text(out / "report.md", render_report(result, summary, h, device))
    result.report = out / "report.md"
    return result
