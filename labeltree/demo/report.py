"""report.md: the paper's Tables I-IV with the demo's numbers beside the paper's, and a plain verdict."""

from __future__ import annotations

import platform
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np

from labeltree.demo.plan import DemoResult, demo_settings
from labeltree.synth.paint import GTSDB_EMPTY, STYLES

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
    layout = demo_settings().report
    lines = [*_intro(result, device), *_table1(summary, layout.table1)]
    lines += _scores_table(result.metrics, "flat", "table2_flat", "Table II: flat baseline")
    lines.append("The paper trains one flat model per dataset for columns 1-3 (and Cityscapes + GTSDB for column 4); "
                 "the demo trains one flat model on all three, the same data the hierarchical model gets. Column 4 "
                 "uses the paper's second-choice rule for the flat model's generic traffic-sign class.")
    lines.append("")
    lines += _scores_table(result.metrics, "hierarchical", "table3_hierarchical", "Table III: hierarchical classifiers")
    lines += _table4(result.metrics, h)
    if result.risk_coverage:
        lines += risk_coverage_section(result.risk_coverage, h)
    lines.extend(["## Evaluation rules", "", *rules_note(result.metrics)])
    lines.extend(["## Verdict", "", *_spread_note(result), *verdict(result.metrics, chance_level(h), result.spread),
                  ""])
    lines.extend(["## Figures", "",
                  "Predictions next to ground truth (tree colours; black = no class / ignored):", "",
                  "![predictions](predictions.png)", "",
                  "Per-class numbers of both models:", "", "![per-class](per_class.png)", "",
                  "Training losses:", "", "![losses](losses.png)", "",
                  "Raw numbers: `eval/hierarchical.json`, `eval/flat.json`; statistics: `stats.json`; "
                  "the merged tree: `merge.json`; runs and checkpoints: `runs/`.", ""])
    return "\n".join(lines)


def _intro(result: DemoResult, device: str) -> list[str]:
    """The heading: when, where, how long, the data and the recipe (and how it departs from the paper's)."""
    settings = demo_settings()
    plan = result.plan
    changes = ", ".join(settings.overrides) or "no change"
    total = sum(result.seconds.values())
    return [
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
        f"`{settings.train_config}` config with {changes}, "
        f"{plan.steps} steps, same backbone, data, batches and seed. "
        "Numbers are in % over each dataset's evaluated classes present in the val ground truth; the paper's "
        "numbers (real data, ResNet-50, ~17 Vistas epochs) are shown for reference only.",
        "",
        *(["Changes from the paper's recipe (configs/demo.yaml):", "",
           *(f"- {' '.join(n.split())}" for n in settings.notes), ""]
          if settings.notes else []),
    ]


def _table1(summary: list[dict[str, Any]], order: list[str]) -> list[str]:
    """Table I: the datasets' train / val rows side by side."""
    lines = ["## Table I: datasets (train / val)", ""]
    by = {(r["dataset"], r["split"]): r for r in summary}
    ds_order = [d for d in order if any(k[0] == d for k in by)]
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
    return lines


def _scores_table(m: dict[str, dict[str, dict[str, Any]]], model: str, key: str, title: str) -> list[str]:
    """Table II or III: one model's mPA and mIoU per column, ours above the paper's."""
    layout = demo_settings().report
    paper: dict[str, Any] = getattr(demo_settings().paper, key)
    cols = [c.dataset for c in layout.columns]
    head = [c.title for c in layout.columns]
    lines = [f"## {title}", "", _row("Tested on", head), _row("---", ["---"] * len(head))]
    for metric in ("mPA", "mIoU"):
        lines.append(_row(f"{metric} (%) ours", [pct(m[model].get(c, {}).get(metric)) for c in cols]))
        lines.append(_row(f"{metric} (%) paper", [f"{getattr(paper[c], metric):.1f}" for c in cols]))
    lines.append(_row("trained on", [layout.trained_on + (" (no sign classes on these frames)" if c.cross_dataset
                                                          else "") for c in layout.columns]))
    lines.append("")
    return lines


def _table4(m: dict[str, dict[str, dict[str, Any]]], h: Any) -> list[str]:
    """Table IV: L1 = Cityscapes classes (traffic sign in parentheses), L2 = sign classes, on the same frames."""
    t4 = demo_settings().report.table4
    p4 = demo_settings().paper.table4
    sign_names = _cityscapes_sign_names(h)
    lines = ["## Table IV: flat versus hierarchical, L1 (Cityscapes) and L2 (sign) classes", "",
             _row("", ["flat L1 classes", "flat L2 classes", "hierarchical L1 classes", "hierarchical L2 classes"]),
             _row("---", ["---"] * 4)]
    for metric, short in (("mPA", "PA"), ("mIoU", "IoU")):
        ours, ref = [], []
        for model in ("flat", "hierarchical"):
            cs = m[model].get(t4.l1, {})
            sc = sign_class_of(cs, sign_names)
            ours += [f"{pct(cs.get(metric))} ({pct(sc.get(short) if sc else None)})",
                     pct(m[model].get(t4.l2, {}).get(metric))]
            pm = p4[model]
            ref += [f"{getattr(pm.L1, metric):.1f} ({getattr(pm.L1_sign, metric):.1f})",
                    f"{getattr(pm.L2, metric):.1f}"]
        lines.append(_row(f"{metric} (%) ours", ours))
        lines.append(_row(f"{metric} (%) paper", ref))
    lines.append("")
    lines.append("L1 is measured on the Cityscapes val frames, L2 on the same frames' Cityscapes Extended sign "
                 "labels. The paper's Table IV trains on Cityscapes Extended itself (signs labelled); our models "
                 "never saw sign classes on these frames, so L2 here is cross-dataset as in Table III column 4.")
    lines.append("")
    return lines


RC_HEAD = ["T", "coverage", "accuracy at full depth", "correct but coarse", "wrong", "sign pixels at full depth",
           "wrong sign answers removed"]


def risk_coverage_section(rc: dict[str, list[dict[str, Any]]], h: Any) -> list[str]:
    """The hierarchical model's selective-prediction table (`labeltree.infer.selective` rows per dataset, the
    first at T = 0) and what its sign figures say about the issue-28 criterion, in words from the numbers."""
    from labeltree.evaluate.signs import sign_rule_nodes
    from labeltree.infer.selective import sign_back_off

    rule = sign_rule_nodes(h)
    sign = h.nodes[rule[0]].name if rule is not None else "the sign node"
    lines = ["## Selective prediction: backing off when unsure (hierarchical model)", "",
             "The cascade stops at the deepest node whose path confidence is at least T (`--min-confidence T`; "
             "T = 0 is the plain cascade). On each dataset's val split (GTSDB: test), in % of the labelled pixels: "
             "coverage = answered at the dataset's full depth, then the accuracy of those, correct but coarse = "
             "backed off to a true ancestor, wrong = the rest. Sign pixels (ground truth at or under "
             f"{sign}): the share still answered at full depth, and the share of T = 0's wrong full-depth answers "
             "on them that backing off removes (pixel counts in parentheses). The same numbers as `labeltree "
             "evaluate DATASET ROOT --checkpoint runs/hierarchical/last.pt --risk-coverage PREFIX`.", "",
             _row("dataset", RC_HEAD), _row("---", ["---"] * len(RC_HEAD))]
    for d, rows in rc.items():
        for r, sg in zip(rows, sign_back_off(rows), strict=True):
            lines.append(_row(d, [f"{r['T']:g}", pct(r["coverage"]), pct(r["accuracy_full"]) if r["coverage"] else "-",
                                  pct(r["coarse_right"]), pct(r["wrong"]),
                                  f"{pct(sg['kept'])} ({sg['sign_full']}/{sg['sign_pixels']})",
                                  f"{pct(sg['removed'])} ({sg['removed_pixels']}/{sg['wrong0']})"]))
    lines.append(_row("flat model", ["no ancestors to fall back on", *["-"] * (len(RC_HEAD) - 1)]))
    classes = [d for d in rc if rule is not None and _sign_classes(h, d, rule[0]) > 1]
    lines += ["", *back_off_verdict(rc, classes), "",
              "The flat model has no ancestors to fall back on (its one classifier answers a class or nothing), so "
              "backing off does not apply to it.", ""]
    return lines


def _sign_classes(h: Any, dataset: str, sign: int) -> int:
    """How many of the dataset's classes lie at or under the sign node (1: the sign class alone)."""
    under = set(h.descendants(sign))
    return sum(1 for c, n in h.mapping(dataset).to_node.items() if c >= 0 and n in under)


def back_off_verdict(rc: dict[str, list[dict[str, Any]]], sign_classes: list[str] | None = None) -> list[str]:
    """Per dataset, whether backing off removes at least half of the wrong sign answers while keeping most sign
    pixels (more than half) at full depth, at which T, or what the table shows instead; then the count, overall
    and over `sign_classes` (the datasets whose sign pixels carry sign classes, where the issue asks it)."""
    from labeltree.infer.selective import sign_back_off

    out, held, judged = [], [], 0
    for d, rows in rc.items():
        s0, *shares = sign_back_off(rows)
        if not s0["sign_pixels"] or not s0["wrong0"]:
            out.append(f"- {d}: {'no sign pixels' if not s0['sign_pixels'] else 'no wrong sign answers at T = 0'}: "
                       "nothing to judge.")
            continue
        judged += 1
        meets = [s for s in shares if s["removed"] >= 0.5 and s["kept"] > 0.5]
        if meets:
            held.append(d)
            s, ts = meets[0], ", ".join(f"{m['T']:g}" for m in meets)
            out.append(f"- {d}: at T = {s['T']:g} backing off removes {pct(s['removed'])}% of the wrong sign answers "
                       f"and keeps {pct(s['kept'])}% of the sign pixels at full depth: the criterion holds (at T = "
                       f"{ts}).")
            continue
        keep = [s for s in shares if s["kept"] > 0.5]
        half = [s for s in shares if s["removed"] >= 0.5]
        parts = []
        if keep:
            b = max(keep, key=lambda s: s["removed"])
            parts.append(f"while most sign pixels stay at full depth it removes at most {pct(b['removed'])}% of the "
                         f"wrong sign answers (T = {b['T']:g}, {pct(b['kept'])}% kept)")
        if half:
            parts.append(f"removing at least half (T = {half[0]['T']:g}: {pct(half[0]['removed'])}%) keeps only "
                         f"{pct(half[0]['kept'])}% at full depth")
        out.append(f"- {d}: the criterion does not hold: " + ("; ".join(parts) or "no threshold of the table "
                   "removes half of the wrong sign answers") + ".")
    line = (f"- The criterion (at least half of the wrong sign answers removed, most sign pixels kept at full "
            f"depth) holds on {len(held)} of the {judged} datasets with wrong sign answers"
            + (f" ({', '.join(held)})" if held else ""))
    if sign_classes:
        both = [d for d in held if d in sign_classes]
        line += (f"; on {len(both)} of the {len(sign_classes)} whose sign pixels carry sign classes "
                 f"({', '.join(sign_classes)})")
    out.append(line + ".")
    return out


def _cityscapes_sign_names(h: Any) -> list[str]:
    """Names of the Cityscapes class(es) on the sign node (the L1 'traffic sign' of Table IV)."""
    from labeltree.evaluate.signs import sign_rule_nodes

    rule = sign_rule_nodes(h)
    if rule is None:
        return []
    mp = h.mapping("cityscapes")
    return [mp.taxonomy.by_id(c).name for c, n in mp.to_node.items() if n == rule[0] and c >= 0]


def verdict(m: dict[str, dict[str, dict[str, Any]]], chance: float,
            spread: dict[str, dict[str, float]] | None = None) -> list[str]:
    """Plain sentences comparing the two models, whichever way the numbers fall.

    A model is called better on a column only where the difference exceeds `spread[metric][column]`, how much
    the number moves between seeds (a fraction). Without it (one seed: the spread is not measured) no winner
    is called: each difference is printed and said to be within noise.
    """
    out = []
    columns = demo_settings().report.columns
    cols = [c.dataset for c in columns if c.dataset in m["hierarchical"]]
    cross = next((c.dataset for c in columns if c.cross_dataset), None)
    for metric in ("mPA", "mIoU"):
        better, worse, noise, diffs = [], [], [], []
        for c in cols:
            hv, fv = m["hierarchical"][c].get(metric), m["flat"].get(c, {}).get(metric)
            if hv is None or fv is None:
                continue
            diffs.append(f"{c} {100 * (hv - fv):+.1f}")
            limit = None if spread is None else spread.get(metric, {}).get(c)
            if limit is None:
                noise.append(c)
            else:
                (better if hv - fv > limit else worse if fv - hv > limit else noise).append(c)
        if spread is None:
            out.append(f"- {metric}: no winner called: one seed, so how much these numbers move between seeds is "
                       f"not measured; hierarchical minus flat, in points: {', '.join(diffs) or 'none'} "
                       "(within noise until seeds are compared).")
            continue
        parts = [f"hierarchical better on {', '.join(better) or 'none'}",
                 f"flat better on {', '.join(worse) or 'none'}"] + (
                     [f"within the seed spread on {', '.join(noise)}"] if noise else [])
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


def _spread_note(result: DemoResult) -> list[str]:
    """Which seeds the verdict's noise level comes from, and the level itself (points)."""
    if not result.spread:
        return ["Seed spread: not measured (one training seed; `labeltree demo --seeds N` trains both models with "
                "N seeds and calls a winner only where the difference exceeds how far the numbers move).", ""]
    rows = [f"{m} " + ", ".join(f"{c} {100 * v:.1f}" for c, v in cols.items()) for m, cols in result.spread.items()]
    return [f"Seed spread over training seeds {', '.join(map(str, result.seeds))} (largest max - min of either "
            f"model, points): {'; '.join(rows)}.", ""]


def rules_note(m: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    """Which evaluation rules produced the report's numbers, per dataset, and how they differ from the paper's."""
    from labeltree.evaluate.protocols import Rules

    out = ["The numbers use the rules of the evaluation during training (the training config's `eval` section, "
           "the same rules as `labeltree evaluate --checkpoint`), per dataset:", ""]
    rules = []
    for c, res in m.get("hierarchical", {}).items():
        d = dict(res.get("rules") or {})
        if not d:
            continue
        d["overrides"] = tuple(d.get("overrides", ()))
        d["classes"] = d["classes"] if isinstance(d["classes"], str) else tuple(d["classes"])
        d["eval_size"] = tuple(d["eval_size"]) if d.get("eval_size") else None
        rules.append(Rules(**d))
        out.append(f"- {c}: " + rules[-1].describe())
    out += ["", "They differ from the paper's (docs/training-recipe.md, Evaluation): " + "; ".join(
        _differences(rules)) + ".", ""]
    return out


def _differences(rules: list[Any]) -> list[str]:
    """How these rules differ from the authors' evaluation, in words (one seed on synthetic data, always)."""
    from labeltree.evaluate.protocols import PAPER_EVAL_SIZE

    h, w = PAPER_EVAL_SIZE
    out = []
    if any(r.eval_size != PAPER_EVAL_SIZE for r in rules):
        out.append(f"datasets are scored at their own size, not at one network size (the authors: {w}x{h})")
    if any(r.drop != "foreign" for r in rules):
        out.append("predictions of classes a dataset lacks count as errors (the authors drop them)")
    if any(r.protocol == "official" for r in rules):
        out.append("datasets with an official tool are scored by its rules (class sets and means), not the paper's")
    return [*out, "each number comes from one seed on synthetic data"]


def tables_text(result: DemoResult) -> str:
    """The report's tables, for the terminal."""
    text = result.report.read_text() if result.report else ""
    keep, on = [], False
    for line in text.splitlines():
        if line.startswith(("## Table II", "## Table III", "## Table IV", "## Selective prediction", "## Verdict")):
            on = True
        elif line.startswith("## "):
            on = False
        if on:
            keep.append(line)
    return "\n".join(keep)
