"""`labeltree demo`: the paper in miniature, end to end, on synthetic data.

Stages (each writes its files under OUT, and a re-run continues where the last one stopped):
synth data in the three native formats -> merge the taxonomies -> class statistics -> train the
hierarchical model and the flat baseline (same backbone, steps, data, seed) -> evaluate both on each
dataset's val split and on the synthetic Cityscapes Extended signs (cross-dataset: neither model saw
sign classes on Cityscapes-format frames) -> report.md laid out like the paper's Tables I-IV, with
figures. The report states whatever the runs give, including flat beating hierarchical.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from labeltree.errors import LabeltreeError
from labeltree.fsutil import write_json, write_text
from labeltree.resources import config_dir
from labeltree.synth.paint import GTSDB_EMPTY, STYLES
from labeltree.synth.runner import synthesize
from labeltree.vocab import GTSDB_SIGNS

MODELS = ("hierarchical", "flat")


@dataclass(frozen=True)
class Plan:
    images: int
    gtsdb_images: int
    size: tuple[int, int]  # (W, H)
    steps: int
    seed: int = 0
    gtsdb_signs: tuple[int, int] = GTSDB_SIGNS  # signs per GTSDB frame (lo, hi)
    street_signs: tuple[int, int] | None = None  # sign posts per Cityscapes/Vistas frame; None = synth default


@dataclass
class DemoResult:
    out: Path
    plan: Plan
    metrics: dict[str, dict[str, dict[str, Any]]]  # model -> dataset -> evaluate result
    seconds: dict[str, float] = field(default_factory=dict)  # stage -> wall seconds
    report: Path | None = None


@cache
def demo_settings() -> dict[str, Any]:
    """configs/demo.yaml: the plans, the training config and the paper's numbers (data, not code).
    Read once per process; callers copy before changing it."""
    path = config_dir() / "demo.yaml"
    return yaml.safe_load(path.read_text())


def make_plan(quick: bool, images: int | None = None, gtsdb_images: int | None = None, steps: int | None = None,
              seed: int | None = None) -> Plan:
    p = dict(demo_settings()["plans"]["quick" if quick else "full"])
    for k, v in (("images", images), ("gtsdb_images", gtsdb_images), ("steps", steps), ("seed", seed)):
        if v is not None:
            p[k] = v
    if p["images"] < 4 or p["gtsdb_images"] < 6:
        raise LabeltreeError("the demo needs at least 4 frames per dataset (6 for GTSDB) to have train and val splits")
    if p["steps"] < 1:
        raise LabeltreeError("--steps must be at least 1")
    street = p.get("street_signs")
    return Plan(int(p["images"]), int(p["gtsdb_images"]), tuple(p["size"]), int(p["steps"]), int(p["seed"]),
                tuple(p.get("gtsdb_signs", GTSDB_SIGNS)), tuple(street) if street is not None else None)


# -- stages ---------------------------------------------------------------------------------------

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
    overrides = [*settings.get("overrides", []), f"train.steps={plan.steps}", f"model.kind={kind}",
                 f"train.seed={plan.seed}", f"train.eval_every={plan.steps}",
                 f"train.checkpoint_every={max(plan.steps // 4, 25)}"]
    if threads:
        overrides.append(f"train.threads={threads}")
    return load_config(settings["train_config"], overrides, data_root=data)


def _train_one(kind: str, plan: Plan, data: Path, run: Path, progress: bool, threads: int | None = None) -> Path:
    """Train (or resume) one model into `run`; its resolved config and messages go to run/../KIND.log."""
    from labeltree.train.loop import train

    cfg = train_config(plan, data, kind, threads)
    run.parent.mkdir(parents=True, exist_ok=True)
    with open(run.parent / f"{kind}.log", "a") as f:
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


def stage_train(out: Path, plan: Plan, data: Path, progress: bool, log: Callable[[str], None]) -> dict[str, Path]:
    """Both models, side by side or one after the other (`side_by_side`)."""
    cores = os.cpu_count() or 1
    together = side_by_side()
    cfg = train_config(plan, data, MODELS[0])
    runs = {kind: out / "runs" / kind for kind in MODELS}
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

def _sign_rule_for_flat(pred: Any) -> tuple[int, list[int]] | None:
    """The flat model's (generic sign class, sign subclasses) in its own class indices."""
    from labeltree.train.predict import flat_sign_rule

    return flat_sign_rule(pred)


def evaluate_model(checkpoint: Path, plan: Plan, data: Path, progress: bool = False,
                   keep: int = 1) -> tuple[dict[str, dict[str, Any]], dict[str, list[tuple]]]:
    """{dataset: result} on every val split and Cityscapes Extended, plus a few (image, gt, nodes) samples.

    The flat model is scored on the Cityscapes Extended signs with the paper's second-choice rule
    (docs/design.md §2.6): its generic "traffic sign" class sits beside the sign subclasses.
    """
    import torch
    from tqdm import tqdm

    from labeltree.train.evaluation import make_evaluator
    from labeltree.train.loop import eval_sources
    from labeltree.train.predict import flat_sign_nodes, load_predictor

    pred = load_predictor(checkpoint)
    cfg = train_config(plan, data, "flat" if pred.flat is not None else "hierarchical")
    sources = eval_sources(cfg, pred.h)
    rule = _sign_rule_for_flat(pred)
    signs = _sign_node_mask(pred.h)
    results, samples = {}, {}
    pred.model.eval()
    for src in sources:
        ev = make_evaluator(pred, src.name)
        use_rule = rule is not None and pred.h.mapping(src.name).evaluation_only
        kept, first = [], None
        for i in tqdm(range(len(src)), desc=f"evaluate {src.name}", unit="img", disable=not progress, leave=False):
            img, lab = src.load(i)
            scores = pred.scores(torch.from_numpy(np.array(img)).permute(2, 0, 1)[None])
            if use_rule:
                nodes = flat_sign_nodes(pred, scores, rule)[0]
            else:
                nodes = pred.nodes(scores)[0].cpu().numpy()
            ev.add(lab, pred.dataset_values(nodes, src.name), gt_path=src.items[i].source)
            sample = (np.asarray(img), np.asarray(lab), nodes)
            if first is None:
                first = sample
            if len(kept) < keep and signs[_gt_nodes(pred.h, src.name, lab)].any():
                kept.append(sample)
        if not kept and first is not None:  # no frame shows a sign: show the first one
            kept.append(first)
        res = ev.result()
        res.pop("confusion", None)
        if use_rule:
            res["protocol"] = "paper second-choice sign rule (flat model)"
        results[src.name] = res
        samples[src.name] = kept
    return results, samples


def _gt_nodes(h: Any, dataset: str, lab: np.ndarray) -> np.ndarray:
    """Tree node per pixel of a stored label map; ignored and unknown values (< 0) -> len(h.nodes)."""
    v2n = h.tables(dataset).value_to_node
    nodes = v2n[np.clip(lab.astype(np.int64), 0, len(v2n) - 1)]
    return np.where(nodes >= 0, nodes, len(h.nodes))


def _sign_node_mask(h: Any) -> np.ndarray:
    """[len(h.nodes) + 1] bool: the traffic-sign front node and its subclasses (all True without a box dataset)."""
    from labeltree.evaluate.signs import sign_rule_nodes

    rule = sign_rule_nodes(h)
    if rule is None:
        return np.ones(len(h.nodes) + 1, dtype=bool)
    mask = np.zeros(len(h.nodes) + 1, dtype=bool)
    mask[[rule[0], *rule[1]]] = True
    return mask


# -- numbers for the tables -------------------------------------------------------------------------

def pct(x: float | None) -> str:
    return "-" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{100 * x:.1f}"


def sign_class_of(res: dict[str, Any], names: list[str]) -> dict[str, Any] | None:
    for n in names:
        if n in res.get("classes", {}):
            return res["classes"][n]
    return None


def chance_level(h: Any) -> float:
    """mPA of guessing uniformly among the sign subclasses (the box dataset's classifier)."""
    from labeltree.evaluate.signs import sign_rule_nodes

    rule = sign_rule_nodes(h)
    return 1.0 / len(rule[1]) if rule else float("nan")


# -- figures ------------------------------------------------------------------------------------------

def _colour_nodes(h: Any, nodes: np.ndarray) -> np.ndarray:
    """Tree colours; nodes < 0 (no class) and len(h.nodes) (ignored gt) black."""
    colours = np.vstack([h.colors(), np.zeros((1, 3), np.uint8)])
    return colours[np.where(nodes >= 0, nodes, len(h.nodes))]


def plot_predictions(path: Path, h: Any, samples: dict[str, dict[str, list[tuple]]], datasets: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [d for d in datasets if samples["hierarchical"].get(d)]
    fig, axes = plt.subplots(len(rows), 4, figsize=(13, 1.9 * len(rows) + 0.4), squeeze=False)
    for r, d in enumerate(rows):
        img, lab, hn = samples["hierarchical"][d][0]
        fn = samples["flat"][d][0][2] if samples["flat"].get(d) else None
        panels = [(img, "image"), (_colour_nodes(h, _gt_nodes(h, d, lab)), "ground truth"),
                  (_colour_nodes(h, hn), "hierarchical")]
        panels.append((_colour_nodes(h, fn) if fn is not None else np.zeros_like(img), "flat"))
        for c, (a, title) in enumerate(panels):
            ax = axes[r][c]
            ax.imshow(a, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(title)
            if c == 0:
                ax.set_ylabel(d, fontsize=9)
    fig.tight_layout()
    _savefig(fig, path)


def plot_per_class(path: Path, metrics: dict[str, dict[str, dict[str, Any]]], panels: list[tuple[str, str]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(panels), 1, figsize=(13, 3.2 * len(panels)), squeeze=False)
    for ax, (dataset, metric) in zip(axes[:, 0], panels, strict=True):
        names = [n for n, c in metrics["hierarchical"][dataset]["classes"].items() if c.get("pixels")]
        x = np.arange(len(names))
        for k, model in enumerate(MODELS):
            cls = metrics[model].get(dataset, {}).get("classes", {})
            vals = [(cls.get(n, {}).get(metric) or 0.0) * 100 for n in names]
            ax.bar(x + (k - 0.5) * 0.4, vals, width=0.4, label=model)
        ax.set_xticks(x)
        ax.set_xticklabels(names, rotation=60, ha="right", fontsize=7)
        ax.set_ylabel(f"{metric} (%)")
        ax.set_title(f"{dataset}: per-class {metric}")
        ax.set_ylim(0, 100)
        ax.legend(fontsize=8)
    fig.tight_layout()
    _savefig(fig, path)


def plot_losses(path: Path, runs: dict[str, Path]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(runs), figsize=(13, 3.5), squeeze=False)
    for ax, (model, ck) in zip(axes[0], runs.items(), strict=True):
        recs = [json.loads(x) for x in (ck.parent / "train.jsonl").read_text().splitlines() if x.strip()]
        steps = [r["step"] for r in recs]
        ax.plot(steps, _smooth([r["loss"] for r in recs]), label="total", lw=2)
        if len(recs[0].get("heads", {})) > 1:
            for head in recs[0]["heads"]:
                ax.plot(steps, _smooth([r["heads"].get(head, 0.0) for r in recs]), label=head, lw=1)
        ax.set_title(f"{model}: training loss (moving average)")
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    fig.tight_layout()
    _savefig(fig, path)


def _smooth(v: list[float], k: int = 10) -> np.ndarray:
    a = np.asarray(v, dtype=np.float64)
    if len(a) < k:
        return a
    c = np.cumsum(np.insert(a, 0, 0.0))
    head = c[1:k] / np.arange(1, k)
    return np.concatenate([head, (c[k:] - c[:-k]) / k])


def _savefig(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(path)


# -- report ---------------------------------------------------------------------------------------

def _row(label: str, values: list[str]) -> str:
    return "| " + " | ".join([label, *values]) + " |"


def _default_posts() -> tuple[int, int]:
    """The synth default range of sign posts per Cityscapes frame (its style's choices)."""
    poles = STYLES["cityscapes"].sign_poles
    return min(poles), max(poles)


def _span(r: tuple[int, int]) -> str:
    return f"{r[0]}-{r[1]}" if r[0] != r[1] else str(r[0])


def render_report(result: DemoResult, summary: list[dict[str, Any]], h: Any, device: str) -> str:
    """report.md: the paper's tables with our numbers beside the paper's."""
    paper = demo_settings()["paper"]
    m = result.metrics
    layout = demo_settings()["report"]
    cols = [c["dataset"] for c in layout["columns"]]
    head = [c["title"] for c in layout["columns"]]
    cross = [bool(c.get("cross_dataset")) for c in layout["columns"]]
    plan = result.plan
    changes = ", ".join(demo_settings().get("overrides", [])) or "no change"
    total = sum(result.seconds.values())
    lines = [
        "# labeltree demo report",
        "",
        f"Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `labeltree demo` on {device} "
        f"({platform.machine()}), in {total / 60:.1f} min "
        f"({', '.join(f'{k} {v:.0f} s' for k, v in result.seconds.items())}).",
        "",
        f"Synthetic data (`labeltree synth`, seed {plan.seed}): {plan.images} frames of Cityscapes and of Vistas, "
        f"{plan.gtsdb_images} GTSDB frames with {_span(plan.gtsdb_signs)} signs each ({GTSDB_EMPTY:.0%} with none), "
        f"{_span(plan.street_signs or _default_posts())} sign posts per Cityscapes/Vistas frame, "
        f"at {plan.size[0]}x{plan.size[1]}. Both models: the "
        f"`{demo_settings()['train_config']}` config with {changes}, "
        f"{plan.steps} steps, same backbone, data, batches and seed. "
        "Numbers are in % over each dataset's evaluated classes present in the val ground truth; the paper's "
        "numbers (real data, ResNet-50, ~17 Vistas epochs) are shown for reference only.",
        "",
        *(["Changes from the paper's recipe (configs/demo.yaml):", "",
            *(f"- {' '.join(n.split())}" for n in demo_settings().get("notes", [])), ""]
          if demo_settings().get("notes") else []),
        "## Table I: datasets (train / val)",
        "",
    ]
    by = {(r["dataset"], r["split"]): r for r in summary}
    ds_order = [d for d in layout["table1"] if any(k[0] == d for k in by)]
    lines.append(_row("", ds_order))
    lines.append(_row("---", ["---"] * len(ds_order)))

    def per(key: str, fmt: Callable[[Any], str] = str) -> list[str]:
        out = []
        for d in ds_order:
            rs = [r for (dd, _), r in sorted(by.items()) if dd == d]
            rs.sort(key=lambda r: 0 if r["split"] in ("train", "training") else 1)
            out.append(" / ".join(fmt(r.get(key)) for r in rs))
        return out

    lines.append(_row("images", per("images")))
    lines.append(_row("annotation type", [per("annotation")[i].split(" / ")[0] for i in range(len(ds_order))]))
    lines.append(_row("annotated pixels", per("annotated_pixels", lambda v: f"{v:.2e}" if v else "-")))
    lines.append(_row("classes present", per("classes_present")))
    lines.append(_row("boxes", per("boxes", lambda v: "-" if v is None else str(v))))
    lines.append("")

    def table(model: str, key: str, title: str, trained: str) -> None:
        lines.extend([f"## {title}", "", _row("Tested on", head), _row("---", ["---"] * len(head))])
        for metric in ("mPA", "mIoU"):
            lines.append(_row(f"{metric} (%) ours", [pct(m[model].get(c, {}).get(metric)) for c in cols]))
            lines.append(_row(f"{metric} (%) paper", [f"{paper[key][c][metric]:.1f}" for c in cols]))
        lines.append(_row("trained on", [trained + (" (no sign classes on these frames)" if x else "") for x in cross]))
        lines.append("")

    table("flat", "table2_flat", "Table II: flat baseline", layout["trained_on"])
    lines.append("The paper trains one flat model per dataset for columns 1-3 (and Cityscapes + GTSDB for column 4); "
                 "the demo trains one flat model on all three, the same data the hierarchical model gets. Column 4 "
                 "uses the paper's second-choice rule for the flat model's generic traffic-sign class.")
    lines.append("")
    table("hierarchical", "table3_hierarchical", "Table III: hierarchical classifiers", layout["trained_on"])

    # Table IV: L1 = Cityscapes classes (traffic sign in parentheses), L2 = sign classes, on the same frames
    p4 = paper["table4"]
    sign_names = _cityscapes_sign_names(h)
    lines.extend(["## Table IV: flat versus hierarchical, L1 (Cityscapes) and L2 (sign) classes", "",
                  _row("", ["flat L1 classes", "flat L2 classes", "hierarchical L1 classes",
                            "hierarchical L2 classes"]),
                  _row("---", ["---"] * 4)])
    for metric, short in (("mPA", "PA"), ("mIoU", "IoU")):
        ours, ref = [], []
        for model in ("flat", "hierarchical"):
            cs = m[model].get(layout["table4"]["l1"], {})
            sc = sign_class_of(cs, sign_names)
            ours += [f"{pct(cs.get(metric))} ({pct(sc.get(short) if sc else None)})",
                     pct(m[model].get(layout["table4"]["l2"], {}).get(metric))]
            pm = p4[model]
            ref += [f"{pm['L1'][metric]:.1f} ({pm['L1_sign'][metric]:.1f})", f"{pm['L2'][metric]:.1f}"]
        lines.append(_row(f"{metric} (%) ours", ours))
        lines.append(_row(f"{metric} (%) paper", ref))
    lines.append("")
    lines.append("L1 is measured on the Cityscapes val frames, L2 on the same frames' Cityscapes Extended sign "
                 "labels. The paper's Table IV trains on Cityscapes Extended itself (signs labelled); our models "
                 "never saw sign classes on these frames, so L2 here is cross-dataset as in Table III column 4.")
    lines.append("")
    lines.extend(["## Verdict", "", *verdict(m, chance_level(h)), ""])
    lines.extend(["## Figures", "",
                  "Predictions next to ground truth (tree colours; black = no class / ignored):", "",
                  "![predictions](predictions.png)", "",
                  "Per-class numbers of both models:", "", "![per-class](per_class.png)", "",
                  "Training losses:", "", "![losses](losses.png)", "",
                  "Raw numbers: `eval/hierarchical.json`, `eval/flat.json`; statistics: `stats.json`; "
                  "the merged tree: `merge.json`; runs and checkpoints: `runs/`.", ""])
    return "\n".join(lines)


def _cityscapes_sign_names(h: Any) -> list[str]:
    """Names of the Cityscapes class(es) on the sign node (the L1 'traffic sign' of Table IV)."""
    from labeltree.evaluate.signs import sign_rule_nodes

    rule = sign_rule_nodes(h)
    if rule is None:
        return []
    mp = h.mapping("cityscapes")
    return [mp.taxonomy.by_id(c).name for c, n in mp.to_node.items() if n == rule[0] and c >= 0]


def verdict(m: dict[str, dict[str, dict[str, Any]]], chance: float) -> list[str]:
    """Plain sentences comparing the two models, whichever way the numbers fall."""
    out = []
    columns = demo_settings()["report"]["columns"]
    cols = [c["dataset"] for c in columns if c["dataset"] in m["hierarchical"]]
    cross = next((c["dataset"] for c in columns if c.get("cross_dataset")), None)
    for metric in ("mPA", "mIoU"):
        better, worse, tied = [], [], []
        for c in cols:
            hv, fv = m["hierarchical"][c].get(metric), m["flat"].get(c, {}).get(metric)
            if hv is None or fv is None:
                continue
            (better if hv > fv + 5e-4 else worse if fv > hv + 5e-4 else tied).append(c)  # 0.05 points: as printed
        parts = [f"hierarchical better on {', '.join(better) or 'none'}",
                 f"flat better on {', '.join(worse) or 'none'}"] + ([f"tied on {', '.join(tied)}"] if tied else [])
        lead = ("the hierarchical model wins" if len(better) > len(worse) else
                "the flat baseline wins" if len(worse) > len(better) else "neither model wins")
        out.append(f"- {metric}: {lead} ({'; '.join(parts)}).")
    ext = m["hierarchical"].get(cross, {}).get("mPA") if cross else None
    fext = m["flat"].get(cross, {}).get("mPA") if cross else None
    if ext is not None:
        out.append(f"- Cross-dataset sign recognition (Cityscapes Extended, mPA): hierarchical {pct(ext)}%, "
                   f"flat {pct(fext)}%, chance {pct(chance)}% (uniform over the sign classes); the hierarchical "
                   f"model is {'above' if ext > chance else 'not above'} chance"
                   + (f" by {ext / chance:.1f}x." if chance and ext > chance else "."))
    return out


# -- entry point ------------------------------------------------------------------------------------

def run_demo(out: str | Path, quick: bool = False, *, images: int | None = None, gtsdb_images: int | None = None,
             steps: int | None = None, seed: int | None = None, progress: bool = True,
             log: Callable[[str], None] = print) -> DemoResult:
    import torch

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
    plot_predictions(out / "predictions.png", h, samples, settings["figure_datasets"])
    plot_per_class(out / "per_class.png", metrics, [tuple(p) for p in settings["report"]["per_class_panels"]])
    plot_losses(out / "losses.png", runs)
    seconds["evaluation"] = time.perf_counter() - t

    result = DemoResult(out, plan, metrics, seconds)
    device = ("CUDA GPU" if torch.cuda.is_available() else
              f"CPU, {os.cpu_count()} cores (the two models trained side by side)" if side_by_side() else "CPU, 1 core")
    write_text(out / "report.md", render_report(result, summary, h, device))
    result.report = out / "report.md"
    return result


def tables_text(result: DemoResult) -> str:
    """The report's tables, for the terminal."""
    text = result.report.read_text() if result.report else ""
    keep, on = [], False
    for line in text.splitlines():
        if line.startswith("## Table II") or line.startswith("## Table III") or line.startswith("## Table IV") \
                or line.startswith("## Verdict"):
            on = True
        elif line.startswith("## "):
            on = False
        if on:
            keep.append(line)
    return "\n".join(keep)
