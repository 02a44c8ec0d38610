"""Fine-tuning (`train --init`, train/finetune.py): the start weights taken exactly and nothing else, another
tree refused, --init with --resume refused and a resumed fine-tuning run exact, the frozen backbone bit for bit,
and the new parameters' learning rate multiplier on a hand-made checkpoint with a migration record."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from click.testing import CliRunner
from test_trainer_run import quiet, read_jsonl, toy_cfg
from test_trainer_toydata import make_toy

import labeltree as lt
from labeltree.cli import main
from labeltree.core.tree_file import load_hierarchy
from labeltree.errors import LabeltreeError
from labeltree.train import finetune
from labeltree.train import loop as train_mod
from labeltree.train.checkpoint import load_checkpoint, save_checkpoint
from labeltree.train.config import config_from_dict
from labeltree.train.loop import train

TREE = Path(__file__).resolve().parents[2] / "taxonomies" / "hierarchies" / "cityscapes+vistas+gtsdb.yaml"
PLAIN = {"momentum": 0.0, "weight_decay": 0.0, "milestones": []}  # one SGD step = -lr * gradient


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_toy(tmp_path_factory.mktemp("toy"), n=2, n_val=1)


@pytest.fixture(scope="module")
def base(toy: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-step run with a moving average, past its lr milestone (step 1): what the fine-tuning runs start from."""
    cfg = toy_cfg(toy, optim={"milestones": [1]}, steps=2, ema_decay=0.5, check_labels=False)
    return train(config_from_dict(cfg), tmp_path_factory.mktemp("base"), progress=False, log=quiet).last


def _cfg(toy: Path, optim: dict[str, Any] | None = None, **train_kw: Any) -> Any:
    return config_from_dict(toy_cfg(toy, optim=optim, check_labels=False, **train_kw))


def _invoke(*args: Any) -> Any:
    return CliRunner().invoke(main, [str(a) for a in args])


def _one_line(res: Any) -> str:
    assert res.exit_code == 2, res.output
    line = res.output.strip()
    assert len(line.splitlines()) == 1 and "Traceback" not in line, res.output
    return line


# -- the start weights, and nothing else ------------------------------------------------------------------

@pytest.mark.parametrize("weights", ["ema", "raw"])
def test_init_takes_the_weights_exactly_and_starts_step_optimiser_and_schedule_fresh(toy: Path, base: Path,
                                                                                    tmp_path: Path,
                                                                                    weights: str) -> None:
    src = load_checkpoint(base)
    assert src["step"] == 2 and src["optimizer"]["state"] and src["scheduler"]["last_epoch"] == 2
    cfg = _cfg(toy, steps=2)
    h = load_hierarchy(cfg.hierarchy)
    init = finetune.read_init(base, h, weights)
    assert init.record == {"checkpoint": str(base.resolve()), "weights": weights, "migration": None}
    _, _, _, sizes = train_mod._label_space(cfg)
    model, opt, ema, sched, _ = train_mod._build(cfg, sizes, [], 1, torch.device("cpu"), h, init)
    want = src["ema"]["state"] if weights == "ema" else src["model"]
    got = model.state_dict()
    assert set(got) == set(want)
    for k, v in want.items():  # after the init, before any step: the checkpoint's tensors, bit for bit
        assert torch.equal(got[k], v), k
    assert any(not torch.equal(src["ema"]["state"][k], src["model"][k]) for k in want)  # the two differ
    assert opt.state_dict()["state"] == {} and sched.last_epoch == 0 and opt.param_groups[0]["lr"] == 0.05
    assert ema is None

    lines: list[str] = []
    r = train(cfg, tmp_path / "ft", progress=False, log=lines.append, init=base, init_weights=weights)
    assert [x["step"] for x in r.losses] == [1, 2]
    assert [x["lr"] for x in r.losses] == [0.05, 0.05]  # the base run's milestone halved its lr: not carried over
    assert f"init: the {weights} weights of {base.resolve()} (optimiser, step and random state start fresh)" in lines
    st = load_checkpoint(r.last)
    assert st["step"] == 2 and st["init"] == init.record


def test_init_refuses_another_tree_resume_and_misplaced_options(toy: Path, base: Path, tmp_path: Path) -> None:
    tree = tmp_path / "tree.yaml"  # the same tree with two root leaves swapped: another tree to a checkpoint
    shutil.copy(TREE, tree)
    tree.write_text(tree.read_text().replace("  - Building\n", "  - @@\n").replace("  - Sky\n", "  - Building\n")
                    .replace("  - @@\n", "  - Sky\n"))
    cfg = toy_cfg(toy, steps=1, check_labels=False)
    cfg["hierarchy"] = str(tree)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    run = tmp_path / "run"
    line = _one_line(_invoke("train", tmp_path / "c.yaml", "--out", run, "--init", base, "--no-progress"))
    assert line.startswith(f"error: {base}: --init: the checkpoint was trained with tree 'cityscapes+vistas+gtsdb'")
    assert "now 'Sky'" in line and line.endswith(f"(labeltree migrate last.pt --tree {tree} -o NEW.pt) and --init "
                                                 "from NEW.pt"), line
    assert not (run / "last.pt").exists()

    cfg["hierarchy"] = "cityscapes+vistas+gtsdb"
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    line = _one_line(_invoke("train", tmp_path / "c.yaml", "--out", run, "--init", base, "--resume"))
    assert "--init starts a run from a checkpoint's weights, --resume continues the run in --out" in line
    line = _one_line(_invoke("train", tmp_path / "c.yaml", "--out", run, "--init-weights", "raw"))
    assert "give --init" in line
    line = _one_line(_invoke("train", tmp_path / "c.yaml", "--out", base.parent, "--init", base, "--force"))
    assert "--init: the checkpoint is a file this run writes in --out" in line
    assert load_checkpoint(base)["step"] == 2  # not replaced
    line = _one_line(_invoke("train", tmp_path / "c.yaml", "--out", run, "--init", tmp_path / "none.pt"))
    assert "checkpoint not found" in line
    with pytest.raises(LabeltreeError, match="--resume continues the run"):
        train(config_from_dict(cfg), run, resume=True, init=base, progress=False, log=quiet)
    with pytest.raises(LabeltreeError, match="--resume continues the run"):  # the Python API refuses the same
        lt.train(tmp_path / "c.yaml", run, resume=True, init=base)
    with pytest.raises(LabeltreeError, match="give --init"):
        lt.train(tmp_path / "c.yaml", run, init_weights="raw")




@pytest.mark.parametrize("record,needle", [({"new_heads": [["Rider"]]}, "names classifier ['Rider']"),
                                           ({"new_rows": {"root": [["Sky"]]}}, "names ['Sky'] as a new child"),
                                           ({"new_rows": {"root": "Sky"}}, "not a list"),
                                           ({"new_heads": "Rider"}, "not a mapping with new_heads (a list)")])
def test_a_malformed_migration_record_is_one_line(toy: Path, base: Path, tmp_path: Path, record: dict,
                                                  needle: str) -> None:
    """Lists where names belong were a TypeError (unhashable type) traceback before."""
    state = load_checkpoint(base)
    state["migration"] = record
    torch.save(state, tmp_path / "m.pt")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(toy_cfg(toy)))
    line = _one_line(_invoke("train", tmp_path / "c.yaml", "--out", tmp_path / "run", "--init", tmp_path / "m.pt"))
    assert "migration record" in line and needle in line, line


def test_a_refused_init_leaves_the_forced_run_folder_as_it_was(toy: Path, base: Path, tmp_path: Path) -> None:
    """`train --force --init` with weights of another network, or a missing class-weights file: the refusal
    came after --force had removed the old run's last.pt and train.jsonl (and replaced its config.yaml); now
    the folder is touched only once nothing can refuse the run."""
    run = tmp_path / "run"
    shutil.copytree(base.parent, run)
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    cfg = toy_cfg(toy, steps=1, check_labels=False)
    cfg["model"] = {**cfg["model"], "width": 16}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    line = _one_line(_invoke("train", tmp_path / "c.yaml", "--out", run, "--force", "--init", base, "--no-progress"))
    assert "differs from the config's model section" in line, line
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before
    cfg["model"] = toy_cfg(toy)["model"]  # a refusal of the config itself, after the labels were read: the same
    cfg["loss"] = {"class_weights": {"stats": str(tmp_path / "none.json")}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    line = _one_line(_invoke("train", tmp_path / "c.yaml", "--out", run, "--force", "--no-progress"))
    assert "none.json" in line and {p.name: p.read_bytes() for p in run.iterdir()} == before

def test_init_from_a_torch_file_without_weights_names_it(toy: Path, tmp_path: Path) -> None:
    """A checkpoint-format dict without 'model' (or an 'ema' without 'state'): a KeyError traceback before."""
    from labeltree.train.checkpoint import FORMAT

    (tmp_path / "c.yaml").write_text(yaml.safe_dump(toy_cfg(toy)))
    torch.save({"format": FORMAT}, tmp_path / "bare.pt")
    torch.save({"format": FORMAT, "model": {}, "ema": {"decay": 0.5}}, tmp_path / "ema.pt")
    for name, what in (("bare.pt", "weights ('model')"), ("ema.pt", "averaged weights ('ema')")):
        line = _one_line(_invoke("train", tmp_path / "c.yaml", "--out", tmp_path / "run", "--init", tmp_path / name))
        assert name in line and what in line, line

@pytest.mark.parametrize("key,value", [("optim.new_head_lr_mult", "-1"), ("optim.new_head_lr_mult", "0"),
                                       ("optim.new_head_lr_mult", ".nan"), ("train.freeze_backbone_steps", "-1"),
                                       ("train.freeze_backbone_steps", ".nan"), ("train.freeze_backbone_steps", "1.5"),
                                       ("train.freeze_backbone_steps", "1e20"), ("optim.new_head_lr_mult", "1e308"),
                                       # YAML true was read as 1 before (pydantic's bool -> number)
                                       ("train.freeze_backbone_steps", "true"), ("optim.new_head_lr_mult", "true")])
def test_fine_tuning_keys_are_validated(toy: Path, tmp_path: Path, key: str, value: str) -> None:
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(toy_cfg(toy)))
    line = _one_line(_invoke("train", tmp_path / "c.yaml", "--out", tmp_path / "run", "--set", f"{key}={value}"))
    assert key.split(".")[1] in line and f"(from --set {key}={value})" in line, line


# -- the frozen backbone --------------------------------------------------------------------------------------

def test_freeze_backbone_steps_keeps_the_backbone_bit_identical_then_trains_it(toy: Path, base: Path,
                                                                               tmp_path: Path) -> None:
    start = load_checkpoint(base)["ema"]["state"]
    lines: list[str] = []
    two = train(_cfg(toy, steps=2, freeze_backbone_steps=2), tmp_path / "two", progress=False, log=lines.append,
                init=base)
    assert "train.freeze_backbone_steps 2: the backbone (BatchNorm in eval mode) is not updated in steps 1..2" in lines
    after = load_checkpoint(two.last)["model"]
    backbone = [k for k in start if k.startswith("backbone.")]
    assert any(k.endswith("running_mean") for k in backbone) and any(k.endswith(".weight") for k in backbone)
    for k in backbone:  # parameters and BatchNorm statistics
        assert torch.equal(after[k], start[k]), k
    assert not torch.equal(after["heads.0.logits.bias"], start["heads.0.logits.bias"])  # the heads train
    assert not torch.equal(after["reduce.0.weight"], start["reduce.0.weight"])  # and the shared reduction
    three = load_checkpoint(train(_cfg(toy, steps=3, freeze_backbone_steps=2), tmp_path / "three", progress=False,
                                  log=quiet, init=base).last)["model"]
    assert all(not torch.equal(three[k], start[k]) for k in backbone if k.endswith((".weight", "running_mean")))


# -- the new parameters' learning rate ------------------------------------------------------------------------

MIGRATION = {"from_tree_hash": "0" * 64, "new_heads": ["Traffic Sign"], "new_rows": {"root": ["Car", "Sky"]},
             "renamed": {}, "dropped": []}


@pytest.fixture(scope="module")
def migrated(base: Path) -> Path:
    """The base checkpoint with a migration record, as `labeltree migrate` writes one."""
    st = load_checkpoint(base)
    st = {k: v for k, v in st.items() if k not in ("format", "optimizer", "scheduler", "step", "rng", "ema")}
    path = base.parent / "migrated.pt"
    save_checkpoint(path, {**st, "migration": MIGRATION})
    return path


def _new_masks(h: Any, start: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per tensor, the entries the migration record marks as new: all of head Traffic Sign, and of the root
    classifier the logit rows of Car and Sky and the upsampler's rows and columns of those two."""
    names = [c.name for c in h.classifiers]
    root, sign = names.index("root"), names.index("Traffic Sign")
    rows = [[h.nodes[i].name for i in h.classifiers[root].children].index(n) for n in ("Car", "Sky")]
    masks = {}
    for k, v in start.items():
        if k.startswith(f"heads.{sign}.") and v.is_floating_point() and "running" not in k:
            masks[k] = torch.ones_like(v, dtype=torch.bool)
        elif k in (f"heads.{root}.logits.weight", f"heads.{root}.logits.bias", f"heads.{root}.up.weight"):
            masks[k] = torch.zeros_like(v, dtype=torch.bool)
            masks[k][rows] = True
            if k.endswith("up.weight"):
                masks[k][:, rows] = True
    return masks


@pytest.mark.parametrize("opt", [{"name": "sgd", "lr": 0.05, **PLAIN}, {"name": "adamw", "lr": 0.002, **PLAIN}])
def test_new_head_lr_mult_scales_the_first_update_of_the_new_parameters_only(toy: Path, migrated: Path,
                                                                            tmp_path: Path,
                                                                            opt: dict[str, Any]) -> None:
    start = load_checkpoint(migrated)["model"]
    runs, logs = {}, {}
    for mult in (1.0, 4.0):
        lines: list[str] = []
        r = train(_cfg(toy, optim={**opt, "new_head_lr_mult": mult}, steps=1), tmp_path / str(mult), progress=False,
                  log=lines.append, init=migrated, init_weights="raw")
        runs[mult], logs[mult] = load_checkpoint(r.last), lines
    assert "optim.new_head_lr_mult 4 applies to: new heads Traffic Sign; root: 2 new row(s) (Sky, Car)" in logs[4.0]
    assert not any(ln.startswith("optim.new_head_lr_mult") for ln in logs[1.0])
    g1, g4 = runs[1.0]["optimizer"]["param_groups"], runs[4.0]["optimizer"]["param_groups"]
    assert [g["lr"] for g in g1] == [opt["lr"]] and [g["lr"] for g in g4] == [opt["lr"], opt["lr"] * 4]
    h = load_hierarchy("cityscapes+vistas+gtsdb")
    masks = _new_masks(h, start)
    n_new = 0
    for k, p0 in start.items():
        if not p0.is_floating_point() or "running" in k:
            continue
        d1, d4 = runs[1.0]["model"][k] - p0, runs[4.0]["model"][k] - p0
        mask = masks.get(k)
        if mask is None:  # not new: the same update, bit for bit
            assert torch.equal(d4, d1), k
            continue
        n_new += int(mask.sum())
        assert torch.count_nonzero(d1[mask]) > 0, k  # a new entry that moved (an unused one would prove nothing)
        # equal up to the float32 rounding of the parameters the updates are read from (a few ulp of each value)
        ulp = torch.finfo(torch.float32).eps * torch.maximum(p0.abs(), runs[4.0]["model"][k].abs())
        err = (d4 - 4.0 * d1)[mask].abs()
        assert bool((err <= 4 * ulp[mask]).all()), (k, float((err / ulp[mask]).max()))
        assert float(d4[mask].abs().max()) > 1e3 * float(ulp[mask].max()), k  # updates far above that rounding
        assert torch.equal(d4[~mask], d1[~mask]), k  # the old rows of the same tensor: as with mult 1
    n_sign = sum(int(m.sum()) for k, m in masks.items() if not k.startswith("heads.0."))
    assert n_sign > 2000 and n_new == 2 * 32 + 2 + (2 * 53 * 2 - 4) * 16 + n_sign  # rows: logits, bias, upsampler


def test_new_head_lr_mult_without_a_migration_record_applies_to_nothing(toy: Path, base: Path,
                                                                         tmp_path: Path) -> None:
    lines: list[str] = []
    a = train(_cfg(toy, optim={**PLAIN, "new_head_lr_mult": 4.0}, steps=1), tmp_path / "a", progress=False,
              log=lines.append, init=base)
    assert "optim.new_head_lr_mult 4 applies to nothing: the --init checkpoint has no migration record" in lines
    b = train(_cfg(toy, optim=PLAIN, steps=1), tmp_path / "b", progress=False, log=quiet, init=base)
    sa, sb = load_checkpoint(a.last)["model"], load_checkpoint(b.last)["model"]
    assert all(torch.equal(v, sb[k]) for k, v in sa.items())


def test_a_fine_tuning_run_resumes_exactly(toy: Path, migrated: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Killed in step 4 (last.pt at step 2, inside the frozen steps), resumed with --resume alone: the
    uninterrupted run's weights, groups and logs, bit for bit (the init is not applied again)."""
    kw = {"optim": {"new_head_lr_mult": 3.0, "milestones": [3]}, "steps": 5, "freeze_backbone_steps": 3}
    full = train(_cfg(toy, **kw), tmp_path / "full", progress=False, log=quiet, init=migrated)
    cfg = _cfg(toy, checkpoint_every=2, **kw)
    real_loss = train_mod.hierarchical_loss
    calls = {"n": 0}

    def dying_loss(*a: Any, **k: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 4:
            raise RuntimeError("simulated kill")
        return real_loss(*a, **k)

    monkeypatch.setattr(train_mod, "hierarchical_loss", dying_loss)
    with pytest.raises(RuntimeError, match="simulated kill"):
        train(cfg, tmp_path / "cut", progress=False, log=quiet, init=migrated)
    monkeypatch.setattr(train_mod, "hierarchical_loss", real_loss)
    assert load_checkpoint(tmp_path / "cut" / "last.pt")["step"] == 2
    lines: list[str] = []
    train(cfg, tmp_path / "cut", resume=True, progress=False, log=lines.append)
    assert not any(ln.startswith("init:") for ln in lines)  # not applied again
    assert any("optim.new_head_lr_mult 3 applies to: new heads Traffic Sign" in ln for ln in lines)
    sa, sb = load_checkpoint(full.last), load_checkpoint(tmp_path / "cut" / "last.pt")
    assert sb["init"] == sa["init"] and sb["init"]["migration"] == MIGRATION
    assert [g["lr"] for g in sb["optimizer"]["param_groups"]] == [0.05 * 0.5, 0.05 * 3.0 * 0.5]
    for k, v in sa["model"].items():
        assert torch.equal(v, sb["model"][k]), k
    a, b = read_jsonl(tmp_path / "full" / "train.jsonl"), read_jsonl(tmp_path / "cut" / "train.jsonl")
    assert [(r["step"], r["loss"], r["lr"]) for r in a] == [(r["step"], r["loss"], r["lr"]) for r in b]
