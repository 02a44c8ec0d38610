"""The Python API (`import labeltree as lt`): light to import, the README's section runs as written, and
`lt.evaluate` gives exactly what `labeltree evaluate` prints and writes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import labeltree as lt
from labeltree.cli import main
from labeltree.errors import LabeltreeError
from labeltree.fsutil import write_png

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "torchvision", "pandas", "matplotlib", "onnxruntime")


def _readme_block() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Python API", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1
    return blocks[0]


def _predictions(synth: Path, out: Path) -> None:
    """preds/cityscapes: every val label shifted by 3 columns (a plausible, imperfect prediction)."""
    reader = lt.open_dataset("cityscapes", synth / "cityscapes")
    for s in reader.samples("val"):
        write_png(out / f"{s.key}_pred.png", np.roll(lt.read_label(s), 3, axis=1))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """The README's data: `lt.synthesize("data/synth", images=8, seed=1)` and predictions for its val split."""
    root = tmp_path_factory.mktemp("api")
    lt.synthesize(root / "data/synth", images=8, seed=1)
    _predictions(root / "data/synth", root / "preds/cityscapes")
    return root


def test_import_labeltree_imports_nothing_heavy():
    code = ("import sys, labeltree as lt; names = lt.__all__; "
            f"print(','.join(m for m in {HEAVY!r} + ('click', 'numpy') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == ""


def test_every_api_function_has_an_example():
    import labeltree.convert
    import labeltree.evaluate.folder
    import labeltree.stats.collect  # noqa: F401 - subpackages of the same names as API functions

    for name in ("load_tree", "merge", "open_dataset", "read_label", "evaluate", "stats", "convert", "synthesize",
                 "train", "predict"):
        doc = getattr(lt, name).__doc__
        assert doc and "Example" in doc and "lt." in doc, name


def test_readme_python_section_runs_as_written(data, capsys):
    cwd = os.getcwd()
    os.chdir(data)
    try:
        exec(compile(_readme_block(), "README.md", "exec"), {})
    finally:
        os.chdir(cwd)
    out = capsys.readouterr().out
    assert "training images" in out and "tree level 1 mIoU" in out
    assert "protocol paper" in out  # the table


@pytest.mark.parametrize("rules,args", [("official", []), ("paper", ["--protocol", "paper", "--levels"])])
def test_lt_evaluate_equals_the_command(data, tmp_path, rules, args):
    gt, pred = data / "data/synth/cityscapes", data / "preds/cityscapes"
    out = tmp_path / "r.json"
    cli = CliRunner().invoke(main, ["evaluate", "cityscapes", str(gt), str(pred), "-o", str(out), "--quiet",
                                    "--workers", "1", *args])
    assert cli.exit_code == 0, cli.output
    res = lt.evaluate("cityscapes", gt, pred, rules=rules, levels="--levels" in args, workers=1)
    assert res.to_json() == out.read_text()
    assert res == json.loads(out.read_text()) and 0 < res.miou < 1
    table = CliRunner().invoke(main, ["evaluate", "cityscapes", str(gt), str(pred), "--workers", "1", *args])
    assert table.stdout.rstrip("\n") == res.table()
    if rules == "paper":
        assert res.levels[1]["mIoU"] == res["levels"]["1"]["mIoU"] and res.rules.protocol == "paper"


def test_lt_evaluate_rules_object_and_overrides(data):
    gt, pred = data / "data/synth/cityscapes", data / "preds/cityscapes"
    rules = lt.resolve_rules("official", "cityscapes", classes="all", mean_over="gt")
    a = lt.evaluate("cityscapes", gt, pred, rules=rules, workers=1)
    b = lt.evaluate("cityscapes", gt, pred, classes="all", mean_over="gt", workers=1)
    assert a == b and a["rules"]["overrides"] == ["classes=all", "mean_over=gt"]
    with pytest.raises(LabeltreeError, match="not both"):
        lt.evaluate("cityscapes", gt, pred, rules=rules, classes="official")
    with pytest.raises(LabeltreeError, match="resolved for 'vistas'"):
        lt.evaluate("cityscapes", gt, pred, rules=lt.resolve_rules("official", "vistas"))


def test_lt_evaluate_imports_nothing_heavy(data):
    code = ("import sys, labeltree as lt; "
            f"lt.evaluate('cityscapes', {str(data / 'data/synth/cityscapes')!r}, "
            f"{str(data / 'preds/cityscapes')!r}, workers=1).table(); "
            f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == ""


def test_lt_merge_stats_convert_equal_their_commands(data, tmp_path):
    merged = CliRunner().invoke(main, ["merge", "cityscapes", "vistas", "gtsdb", "--format", "json"])
    assert merged.exit_code == 0 and json.loads(merged.stdout) == lt.merge(["cityscapes", "vistas", "gtsdb"]).to_json()

    cs = data / "data/synth/cityscapes"
    st = CliRunner().invoke(main, ["stats", "cityscapes", str(cs), "--split", "train", "-o", str(tmp_path / "s.json"),
                                   "--no-cache", "--quiet"])
    assert st.exit_code == 0, st.output
    rep = lt.stats("cityscapes", cs, ["train"], cache=False)
    assert json.loads((tmp_path / "s.json").read_text()) == json.loads(json.dumps(rep.classes))
    assert rep.summary[0]["images"] == 7  # 8 synthetic frames: 7 train, 1 val

    vi = data / "data/synth/vistas"
    cv = CliRunner().invoke(main, ["convert", "vistas", str(vi), str(tmp_path / "cli"), "--to", "cityscapes",
                                   "--report", str(tmp_path / "r.json"), "--quiet"])
    assert cv.exit_code == 0, cv.output
    got = lt.convert("vistas", vi, tmp_path / "api", to="cityscapes").to_json()
    want = json.loads((tmp_path / "r.json").read_text())
    assert got["lists"] == {s: str(tmp_path / "api" / f"{s}.txt") for s in ("train", "val")}
    assert {k: v for k, v in got.items() if k not in ("out", "lists")} == {k: v for k, v in want.items()
                                                                          if k not in ("out", "lists")}
    files = sorted(p.relative_to(tmp_path / "cli") for p in (tmp_path / "cli").rglob("*.png"))
    assert files and files == sorted(p.relative_to(tmp_path / "api") for p in (tmp_path / "api").rglob("*.png"))
    assert all((tmp_path / "cli" / f).read_bytes() == (tmp_path / "api" / f).read_bytes() for f in files)


def test_api_names_and_subpackages_coexist():
    """`lt.evaluate` (`stats`, `convert`, `train`) is callable whatever was imported before, and
    `import labeltree.evaluate.folder as f` works (both orders, in a fresh interpreter)."""
    code = ("import inspect, labeltree as lt; a = callable(lt.evaluate) and callable(lt.stats); "
            "import labeltree.train.loop as t, labeltree.stats.collect as s, labeltree.evaluate.folder as f; "
            "import labeltree.convert as c; "
            "print(a, all(callable(x) for x in (lt.evaluate, lt.stats, lt.convert, lt.train)), "
            "'gt_root' in inspect.signature(lt.evaluate).parameters, t.__name__, f.__name__)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.split() == ["True", "True", "True", "labeltree.train.loop", "labeltree.evaluate.folder"]


@pytest.mark.parametrize("workers", [0, -2, 1.5, True])
def test_lt_evaluate_and_stats_refuse_a_bad_worker_count(data, workers):
    """`workers=` from Python is checked as `--workers` is: 0 was silently run in-process before."""
    gt, pred = data / "data/synth/cityscapes", data / "preds/cityscapes"
    with pytest.raises(LabeltreeError, match="workers="):
        lt.evaluate("cityscapes", gt, pred, workers=workers)
    with pytest.raises(LabeltreeError, match="workers="):
        lt.stats("cityscapes", gt, ["train"], cache=False, workers=workers)


def test_lt_predict_checks_its_confidence_options(tmp_path):
    """min_confidence="0.5" was a TypeError, confidence="no" wrote the confidence files; nothing is read or written."""
    for kw, match in (({"min_confidence": "0.5"}, "--min-confidence"), ({"confidence": "no"}, "confidence="),
                      ({"confidence_npy": 1}, "confidence_npy=")):
        with pytest.raises(LabeltreeError, match=match):
            lt.predict(tmp_path / "none.pt", tmp_path / "none.png", tmp_path / "out", progress=False, **kw)
    assert not (tmp_path / "out").exists()
