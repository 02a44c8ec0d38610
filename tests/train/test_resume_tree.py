"""`train --resume` refuses a run whose tree file changed since its checkpoint (issue 29): two sibling nodes
swapped keep every classifier's name and size, so only the checkpoint's tree signature can tell."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml
from click.testing import CliRunner
from test_trainer_run import quiet, toy_cfg
from test_trainer_toydata import make_toy

from labeltree.cli import main
from labeltree.core.hierarchy import tree_hash
from labeltree.core.tree_file import load_hierarchy
from labeltree.train.checkpoint import load_checkpoint
from labeltree.train.config import config_from_dict
from labeltree.train.loop import train

TREE = Path(__file__).resolve().parents[2] / "taxonomies" / "hierarchies" / "cityscapes+vistas+gtsdb.yaml"


def test_resume_refuses_swapped_siblings_in_the_runs_tree_file(tmp_path: Path) -> None:
    toy = make_toy(tmp_path / "toy", n=2, n_val=1)
    tree = tmp_path / "tree.yaml"
    shutil.copy(TREE, tree)
    cfg = toy_cfg(toy, steps=1, check_labels=False)
    cfg["hierarchy"] = str(tree)
    run = tmp_path / "run"
    train(config_from_dict(cfg), run, progress=False, log=quiet)
    h = load_hierarchy(tree)
    assert load_checkpoint(run / "last.pt")["tree"]["sha256"] == tree_hash(h)
    text = tree.read_text()
    tree.write_text(text.replace("  - Building\n", "  - @@\n").replace("  - Sky\n", "  - Building\n")
                    .replace("  - @@\n", "  - Sky\n"))
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    res = CliRunner().invoke(main, ["train", str(tmp_path / "c.yaml"), "--out", str(run), "--steps", "2", "--resume"])
    assert res.exit_code == 2, res.output
    line = res.output.strip()
    assert len(line.splitlines()) == 1 and "Traceback" not in line
    assert "--resume: the checkpoint was trained with tree 'cityscapes+vistas+gtsdb'" in line and "last.pt" in line
    assert f"node {h.index['Building']} was 'Building' (under 'root'), now 'Sky'" in line
    assert load_checkpoint(run / "last.pt")["step"] == 1  # nothing trained on


def test_resume_from_a_hand_made_last_pt_is_one_line(tmp_path: Path) -> None:
    """A last.pt that loads but lacks what a run keeps (config, optimiser, ...): a KeyError traceback before."""
    import torch

    from labeltree.train.checkpoint import FORMAT

    toy = make_toy(tmp_path / "toy", n=2, n_val=1)
    cfg = toy_cfg(toy, steps=1, check_labels=False)
    run = tmp_path / "run"
    train(config_from_dict(cfg), run, progress=False, log=quiet)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    good = load_checkpoint(run / "last.pt")
    for state, key in (({"format": FORMAT}, "'config'"), ({**good, "config": {}}, "'config.model'"),
                       ({k: v for k, v in good.items() if k != "optimizer"}, "'optimizer'"),
                       ({**good, "sampler": {"world": "1"}}, "'sampler'"), ({**good, "step": True}, "'step'")):
        torch.save(state, run / "last.pt")
        res = CliRunner().invoke(main, ["train", str(tmp_path / "c.yaml"), "--out", str(run), "--steps", "2",
                                        "--resume"])
        assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1, res.output
        assert key in res.output and "--force" in res.output
