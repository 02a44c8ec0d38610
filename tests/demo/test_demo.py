"""`labeltree demo`: a shortened --quick run writes every stage's files, its hierarchical model
recognises signs across datasets well above chance, its report carries the evaluation's numbers,
and a re-run continues instead of starting over."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

from labeltree.cli import main
from labeltree.core.tree_file import load_hierarchy
from labeltree.demo.plan import make_plan
from labeltree.demo.report import chance_level

pytestmark = pytest.mark.slow

# Shortened --quick: fewer Cityscapes and Vistas frames than the plan, its steps (the sign classifier
# needs them; frames cost only seconds).
IMAGES = 60
ARGS = ["--quick", "--images", str(IMAGES), "--no-progress"]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    res = CliRunner().invoke(main, ["demo", "--out", str(out), *ARGS])
    assert res.exit_code == 0, res.output + repr(res.exception)
    return out, res.output


def test_every_stage_wrote_its_files(demo_run):
    out, output = demo_run
    synth = json.loads((out / "data" / "synth.json").read_text())
    plan = make_plan(True)
    n_test = plan.gtsdb_images - round(plan.gtsdb_images * 2 / 3)
    assert synth["complete"] and synth["frames"]["gtsdb"] == {"train": plan.gtsdb_images - n_test, "test": n_test}
    merged = json.loads((out / "merge.json").read_text())
    assert sorted(len(c["classes"]) for c in merged["classifiers"]) == [2, 3, 10, 43, 53]
    rows = json.loads((out / "stats.json").read_text())
    assert {r["dataset"] for r in rows} >= {"cityscapes", "vistas", "gtsdb", "cityscapes-extended"}
    for model in ("hierarchical", "flat"):
        run = out / "runs" / model
        assert (run / "last.pt").exists() and (run / "config.yaml").exists()
        steps = [json.loads(x)["step"] for x in (run / "train.jsonl").read_text().splitlines()]
        assert steps[-1] == plan.steps
        ev = json.loads((out / "eval" / f"{model}.json").read_text())
        assert set(ev) == {"cityscapes", "vistas", "gtsdb", "cityscapes-extended"}
        for d in ev.values():
            assert 0.0 <= d["mIoU"] <= d["mPA"] + 1e-9 <= 1.0 + 1e-9  # IoU <= recall, class by class
    for png in ("predictions.png", "per_class.png", "losses.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (out / "report.md").read_text()
    for title in ("Table I", "Table II", "Table III", "Table IV", "Selective prediction", "Verdict"):
        assert f"## {title}" in report
    assert "![predictions](predictions.png)" in report
    assert "## Table III" in output and "report:" in output


def test_hierarchical_model_recognises_signs_across_datasets(demo_run):
    """Cityscapes Extended signs: the hierarchical model learnt the 43 classes from GTSDB boxes only
    and recognises them on Cityscapes-format frames well above chance (1/43 per pixel; this run:
    ~3x), not by painting one class everywhere (that would score 1/n_present), and better than the
    flat baseline."""
    out, _ = demo_run
    ext = json.loads((out / "eval" / "hierarchical.json").read_text())["cityscapes-extended"]
    flat = json.loads((out / "eval" / "flat.json").read_text())["cityscapes-extended"]
    chance = chance_level(load_hierarchy("cityscapes+vistas+gtsdb"))
    assert ext["n_present"] >= 15  # the mean runs over enough sign classes to mean something
    assert ext["mPA"] >= 2.5 * chance, f"sign mPA {100 * ext['mPA']:.1f}% vs chance {100 * chance:.1f}%"
    assert ext["mPA"] >= 1.2 / ext["n_present"]  # above the one-class painter
    recognised = [k for k, c in ext["classes"].items() if c["pixels"] and c["PA"] > 0]
    assert len(recognised) >= 5, recognised
    assert ext["mPA"] > flat["mPA"]


def test_report_numbers_are_the_evaluation_numbers(demo_run):
    out, _ = demo_run
    report = (out / "report.md").read_text()
    ev = json.loads((out / "eval" / "hierarchical.json").read_text())
    table3 = report.split("## Table III")[1].split("##")[0]
    row = next(ln for ln in table3.splitlines() if ln.startswith("| mIoU (%) ours"))
    cells = [c.strip() for c in row.strip("|").split("|")[1:]]
    expected = [f"{100 * ev[d]['mIoU']:.1f}" for d in ("cityscapes", "vistas", "gtsdb", "cityscapes-extended")]
    assert cells == expected


def test_chance_level_and_the_verdicts_sign_line(demo_run):
    out, _ = demo_run
    ev = json.loads((out / "eval" / "hierarchical.json").read_text())
    assert chance_level(load_hierarchy("cityscapes+vistas+gtsdb")) == pytest.approx(1 / 43)
    m = re.search(r"hierarchical ([\d.]+)%, flat ([\d.]+)%, chance 2.3%", (out / "report.md").read_text())
    assert m and float(m.group(1)) == pytest.approx(100 * ev["cityscapes-extended"]["mPA"], abs=0.05)


def test_rerun_continues_instead_of_starting_over(demo_run):
    out, _ = demo_run
    before = (out / "runs" / "hierarchical" / "last.pt").stat().st_mtime_ns
    res = CliRunner().invoke(main, ["demo", "--out", str(out), *ARGS])
    assert res.exit_code == 0, res.output
    assert "reusing" in res.output
    assert (out / "runs" / "hierarchical" / "last.pt").stat().st_mtime_ns == before


def test_risk_coverage_table_is_evaluates_sweep(demo_run, tmp_path):
    """The report's selective-prediction rows are, dataset by dataset, those of `labeltree evaluate --checkpoint
    runs/hierarchical/last.pt --risk-coverage` at the demo's thresholds (its sweep holds them), and the flat
    model is said to have no ancestors to fall back on."""
    from labeltree.demo.plan import demo_settings
    from labeltree.demo.report import risk_coverage_section

    out, _ = demo_run
    report = (out / "report.md").read_text()
    section = report.split("## Selective prediction")[1].split("\n## ")[0]
    assert "The flat model has no ancestors to fall back on" in section
    assert "- The criterion (at least half of the wrong sign answers removed" in section
    h = load_hierarchy("cityscapes+vistas+gtsdb")
    ts = demo_settings().report.risk_coverage
    saved = json.loads((out / "eval" / "risk_coverage.json").read_text())
    datasets = [c.dataset for c in demo_settings().report.columns]
    assert list(saved) == datasets
    for d in datasets:
        res = CliRunner().invoke(main, ["evaluate", d, str(out / "data" / d), "--checkpoint",
                                        str(out / "runs" / "hierarchical" / "last.pt"), "--risk-coverage",
                                        str(tmp_path / d)])
        assert res.exit_code == 0, res.output
        head, *lines = (tmp_path / f"{d}.csv").read_text().splitlines()
        rows = [{k: (int(v) if k in ("pixels", "sign_pixels", "sign_full", "sign_wrong_full") else float(v))
                 for k, v in zip(head.split(","), ln.split(","), strict=True)} for ln in lines]
        rows = [r for r in rows if r["T"] in ts]
        assert [r["T"] for r in rows] == list(ts)
        for got, want in zip(saved[d], rows, strict=True):
            assert got == pytest.approx(want, abs=1e-5)  # the CSV holds 6 significant digits
        ours = [ln for ln in section.splitlines() if ln.startswith(f"| {d} |")]
        theirs = [ln for ln in risk_coverage_section({d: rows}, h) if ln.startswith(f"| {d} |")]
        assert ours == theirs and len(ours) == len(ts)
