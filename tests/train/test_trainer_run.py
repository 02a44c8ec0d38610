"""End-to-end trainer tests on tiny datasets built in tmp_path (CPU, a few seconds each).

Overfitting, exact resume after an interrupted run, 2-process DDP over gloo, the predict ->
evaluate round trip against the in-training evaluation, the issue's CLI flow on `labeltree synth`
data, and the flat baseline.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner
from PIL import Image
from test_trainer_toydata import make_toy

from labeltree.cli import main
from labeltree.core.tree_file import load_hierarchy
from labeltree.train import loop as train_mod
from labeltree.train.checkpoint import load_checkpoint
from labeltree.train.config import config_from_dict
from labeltree.train.loop import RunResult, train

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_toy(tmp_path_factory.mktemp("toy"), n=4, n_val=2)


def toy_cfg(root: Path, model: dict[str, Any] | None = None, optim: dict[str, Any] | None = None,
            **train_kw: Any) -> dict[str, Any]:
    """All three training datasets (1:1:1) + Cityscapes Extended evaluation, tiny net, full-frame crops."""
    train_sec = {"steps": 8, "crop": [48, 96], "workers": 0, "threads": 1, "amp": False, "checkpoint_every": 100,
                 "eval_at_end": False, "check_labels": True}
    train_sec.update(train_kw)
    return {"datasets": [{"name": "cityscapes", "root": "cityscapes", "share": 1},
                         {"name": "vistas", "root": "vistas", "share": 1,
                          "augment": {"scale": [0.9, 1.1], "brightness": 0.1}},
                         {"name": "gtsdb", "root": "gtsdb", "split": "train", "val_split": "test", "share": 1}],
            "eval_datasets": [{"name": "cityscapes-extended", "root": "cityscapes-extended", "split": "val"}],
            "model": {"backbone": "tiny", "width": 32, "bottleneck": 16, "tiny_channels": [8, 16, 24, 32],
                      **(model or {})},
            "optim": {"lr": 0.05, "milestones": [5], "gamma": 0.5, **(optim or {})},
            "train": train_sec, "data_root": str(root)}


def quiet(*_: Any) -> None:
    pass


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]


def cli(*args: Any) -> str:
    res = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res.output


# -- overfitting and the predict -> evaluate round trip ---------------------------------------------

@pytest.fixture(scope="module")
def overfit(toy: Path, tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    cfg = config_from_dict(toy_cfg(toy, optim={"milestones": []}, steps=40, eval_at_end=True))
    return train(cfg, tmp_path_factory.mktemp("overfit"), progress=False, log=quiet)


def test_overfits_a_handful_of_images(overfit: RunResult) -> None:
    losses = [r["loss"] for r in overfit.losses]
    assert [r["step"] for r in overfit.losses] == list(range(1, 41))
    start, end = losses[0], float(np.mean(losses[-5:]))
    assert end < 0.15 * start, (start, end)
    for r in overfit.losses:  # total = sum of lambda_j L_j: 1.0 for Level 1, the default 0.1 below
        h = r["heads"]
        assert r["loss"] == pytest.approx(h["root"] + 0.1 * sum(v for k, v in h.items() if k != "root"), rel=1e-5)
    root = [r["heads"]["root"] for r in overfit.losses]
    assert np.mean(root[-5:]) < 0.15 * root[0]
    # the val images are new frames of the same toy world: the dense datasets are largely right
    # (a random net scores < 0.05)
    m = overfit.metrics[-1]["datasets"]
    assert m["cityscapes"]["mIoU"] > 0.4 and m["vistas"]["mIoU"] > 0.3, {d: v["mIoU"] for d, v in m.items()}
    assert overfit.last is not None and overfit.best is not None


def test_predict_then_evaluate_equals_in_training_evaluation(overfit: RunResult, toy: Path,
                                                             tmp_path: Path) -> None:
    # the only evaluation ran at the last step, so best.pt == last.pt == the evaluated weights
    rec = read_jsonl(overfit.out / "metrics.jsonl")
    assert [r["step"] for r in rec] == [40]
    in_training = rec[0]["datasets"]
    ck = overfit.out / "best.pt"
    assert load_checkpoint(ck)["step"] == 40
    images = {"cityscapes": [toy / "cityscapes" / "leftImg8bit" / "val"],
              "vistas": [toy / "vistas" / "validation" / "images"],
              "gtsdb": sorted((toy / "gtsdb").glob("006*.ppm")),  # GTSDB test split = frames 600..899
              "cityscapes-extended": [toy / "cityscapes" / "leftImg8bit" / "val"]}
    preds = tmp_path / "P"
    for ds, inputs in images.items():
        cli("predict", ck, *inputs, "-o", preds, "--dataset", ds)
        files = sorted(p.name for p in (preds / ds).iterdir())
        assert len(files) == 2, files
        # training evaluation = the config's rules (eval: official at native size, the defaults), as `evaluate`;
        # Cityscapes Extended's pixel rule counts the config's GTSDB (--gtsdb-root)
        extra = ["--gtsdb-root", toy / "gtsdb"] if ds == "cityscapes-extended" else []
        cli("evaluate", ds, toy / ds, preds / ds, "--protocol", "official", "--eval-size", "native",
            "--workers", 1, "--quiet", "-o", tmp_path / f"{ds}.json", *extra)
        got = json.loads((tmp_path / f"{ds}.json").read_text())
        assert got["mIoU"] == in_training[ds]["mIoU"], ds
        assert got["rules"] == in_training[ds]["rules"], ds
        assert {c: v["IoU"] for c, v in got["classes"].items()} == \
            {c: v["IoU"] for c, v in in_training[ds]["classes"].items()}, ds
    # tree-colour PNGs: one per input image, at the image's size
    tree = sorted(preds.glob("*_tree.png"))
    assert len(tree) == 6  # 2 Cityscapes (twice, same names), 2 Vistas, 2 GTSDB
    # and straight from the checkpoint
    cli("evaluate", "cityscapes", toy / "cityscapes", "--checkpoint", ck, "--protocol", "official", "--workers", 1,
        "--quiet", "-o", tmp_path / "ck.json")
    assert json.loads((tmp_path / "ck.json").read_text())["mIoU"] == in_training["cityscapes"]["mIoU"]


# -- exact resume -----------------------------------------------------------------------------------

class Killed(RuntimeError):
    pass


def train_killed_at(step: int, cfg: Any, out: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run `train` and kill it during step `step` (its loss raises), as a crash or kill -9 would."""
    real_loss = train_mod.hierarchical_loss
    calls = {"n": 0}

    def dying_loss(*a: Any, **k: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == step:
            raise Killed("simulated kill")
        return real_loss(*a, **k)

    monkeypatch.setattr(train_mod, "hierarchical_loss", dying_loss)
    with pytest.raises(Killed):
        train(cfg, out, progress=False, log=quiet)
    monkeypatch.setattr(train_mod, "hierarchical_loss", real_loss)


@pytest.mark.parametrize("opt", [{"name": "sgd", "lr": 0.05}, {"name": "adamw", "lr": 0.002}])
def test_resume_after_interrupt_reproduces_the_uninterrupted_run(toy: Path, tmp_path: Path, opt: dict[str, Any],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    steps = 8
    full_cfg = config_from_dict(toy_cfg(toy, optim=opt, steps=steps))
    assert type(train_mod.make_optimizer(full_cfg.optim, torch.nn.Linear(1, 1))).__name__ == (
        "AdamW" if opt["name"] == "adamw" else "SGD")
    full = train(full_cfg, tmp_path / "full", progress=False, log=quiet)

    # same run, checkpoints every 3 steps, killed during step 6 (steps 1..5 were logged, last.pt is step 3)
    cfg = config_from_dict(toy_cfg(toy, optim=opt, steps=steps, checkpoint_every=3))
    train_killed_at(6, cfg, tmp_path / "cut", monkeypatch)
    assert [r["step"] for r in read_jsonl(tmp_path / "cut" / "train.jsonl")] == [1, 2, 3, 4, 5]
    assert load_checkpoint(tmp_path / "cut" / "last.pt")["step"] == 3

    train(cfg, tmp_path / "cut", resume=True, progress=False, log=quiet)
    a = read_jsonl(tmp_path / "full" / "train.jsonl")
    b = read_jsonl(tmp_path / "cut" / "train.jsonl")
    assert [r["step"] for r in b] == list(range(1, steps + 1))
    assert [(r["loss"], r["heads"], r["lr"]) for r in a] == [(r["loss"], r["heads"], r["lr"]) for r in b]
    assert a[-1]["lr"] == opt["lr"] / 2  # the milestone at step 5 halved it, in both runs
    sa, sb = load_checkpoint(full.last), load_checkpoint(tmp_path / "cut" / "last.pt")
    assert sa["step"] == sb["step"] == steps
    for k, v in sa["model"].items():
        assert torch.equal(v, sb["model"][k]), k


def test_resume_refuses_a_changed_model_or_world(toy: Path, tmp_path: Path) -> None:
    cfg = toy_cfg(toy, steps=1, check_labels=False)
    train(config_from_dict(cfg), tmp_path, progress=False, log=quiet)
    cfg["model"]["width"] = 16
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    res = CliRunner().invoke(main, ["train", str(path), "--out", str(tmp_path), "--steps", "2", "--resume"])
    assert res.exit_code == 2 and "model section" in res.output and "last.pt" in res.output, res.output


# -- DDP --------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_two_process_ddp_with_gloo(toy: Path, tmp_path: Path) -> None:
    cfg = toy_cfg(toy, steps=3)
    cfg["datasets"][2]["share"] = 2  # GTSDB boxes in both processes' batches
    path = tmp_path / "ddp.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "labeltree", "train", str(path), "--out", str(tmp_path / "R"), "--no-progress"],
                          capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    state = load_checkpoint(tmp_path / "R" / "last.pt")
    assert state["step"] == 3 and state["sampler"]["world"] == 2
    recs = read_jsonl(tmp_path / "R" / "train.jsonl")
    assert [r["step"] for r in recs] == [1, 2, 3]  # rank 0 alone writes the log
    assert all(np.isfinite(r["loss"]) for r in recs)
    assert recs[0]["images_per_s"] > 0
    # a 2-process checkpoint continues only with 2 processes (the sampler shards depend on it)
    res = CliRunner().invoke(main, ["train", str(path), "--out", str(tmp_path / "R"), "--steps", "4", "--resume"])
    assert res.exit_code == 2 and "2 process(es)" in res.output, res.output


# -- the CLI flow of the issue on `labeltree synth` data ----------------------------------------------

@pytest.mark.slow
def test_cli_flow_on_synth_data(tmp_path: Path) -> None:
    d, r, p = tmp_path / "D", tmp_path / "R", tmp_path / "P"
    cli("synth", d, "--images", 5, "-j", 1)
    config = REPO / "configs" / "cpu-tiny.yaml"
    out = cli("train", config, "--data-root", d, "--out", r, "--steps", 6, "--no-progress",
              "--set", "train.threads=1")
    assert "step 6: loss" in out
    assert [x["step"] for x in read_jsonl(r / "train.jsonl")] == [1, 2, 3, 4, 5, 6]
    out = cli("train", config, "--data-root", d, "--out", r, "--steps", 12, "--resume", "--no-progress",
              "--set", "train.threads=1")
    assert "resuming from" in out and "step 12: loss" in out
    assert [x["step"] for x in read_jsonl(r / "train.jsonl")] == list(range(1, 13))
    assert [x["step"] for x in read_jsonl(r / "metrics.jsonl")] == [6, 12]
    assert yaml.safe_load((r / "config.yaml").read_text())["train"]["steps"] == 12
    images = sorted((d / "cityscapes" / "leftImg8bit").rglob("*.png"))
    assert len(images) == 5
    cli("predict", r / "last.pt", d / "cityscapes" / "leftImg8bit", "-o", p)
    written = sorted(p.glob("*_tree.png"))
    assert [w.name for w in written] == sorted(f"{i.stem}_tree.png" for i in images)
    for w in written:
        with Image.open(w) as im:
            assert im.size == (256, 128) and im.mode == "RGB"


# -- flat baseline ----------------------------------------------------------------------------------

def test_flat_baseline_trains_and_predicts(toy: Path, tmp_path: Path) -> None:
    cfg = config_from_dict(toy_cfg(toy, model={"kind": "flat"}, steps=2))
    r = train(cfg, tmp_path / "R", progress=False, log=quiet)
    assert [list(x["heads"]) for x in r.losses] == [["flat"], ["flat"]]
    assert all(np.isfinite(x["loss"]) and x["loss"] > 0 for x in r.losses)
    state = load_checkpoint(r.last)
    # one softmax: the 65 Vistas classes, + Driveable and Rider (Cityscapes' coarse road / rider),
    # + the 43 GTSDB signs beside Traffic Sign (Front), + GTSDB's background
    assert state["head_sizes"] == [65 + 2 + 43 + 1]
    cli("predict", r.last, toy / "cityscapes" / "leftImg8bit" / "val", "-o", tmp_path / "P", "--dataset", "cityscapes")
    files = sorted((tmp_path / "P" / "cityscapes").glob("*.png"))
    assert len(files) == 2
    tax = load_hierarchy("cityscapes+vistas+gtsdb").mapping("cityscapes").taxonomy
    valid = {tax.stored_value(c.id) for c in tax.classes if c.id >= 0}
    for f in files:
        with Image.open(f) as im:
            a = np.array(im)
        assert a.shape == (48, 96) and set(np.unique(a).tolist()) <= valid
