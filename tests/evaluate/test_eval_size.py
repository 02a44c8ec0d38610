"""--eval-size: the size gt and predictions are scored at (paper: the authors' 512x706, labels nearest-resized)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_evaluate_checkpoint import H, W, _checkpoint, _dataset

from labeltree.core.tree_file import load_hierarchy
from labeltree.errors import LabeltreeError
from labeltree.evaluate.counting import resize_nearest
from labeltree.evaluate.evaluator import Evaluator
from labeltree.evaluate.folder import evaluate_folder
from labeltree.evaluate.protocols import PAPER_EVAL_SIZE, resolve_rules


def test_nearest_resize_is_tensorflows() -> None:
    a = np.arange(16).reshape(4, 4)
    assert resize_nearest(a, (2, 2)).tolist() == [[0, 2], [8, 10]]  # source floor(dest * 2)
    assert resize_nearest(np.array([[1, 2, 3]]), (1, 5)).tolist() == [[1, 1, 2, 2, 3]]  # floor(dest * 3 / 5)
    assert resize_nearest(a, (4, 4)) is a


def test_rules_name_the_size_and_the_counts_follow_it() -> None:
    assert resolve_rules("paper", "cityscapes").eval_size is None
    r = resolve_rules("paper", "cityscapes", eval_size="paper")
    assert r.eval_size == PAPER_EVAL_SIZE == (512, 706) and "scored at 706x512" in r.describe()
    assert resolve_rules("official", "vistas", eval_size=(2, 3)).as_dict()["eval_size"] == [2, 3]
    gt = np.full((4, 4), 7, np.uint8)
    gt[1::2] = 26  # car on the odd rows only: gone at half height (rows 0 and 2 are kept)
    ev = Evaluator("cityscapes", protocol=resolve_rules("official", "cityscapes", eval_size=(2, 2)))
    ev.add(gt, gt.copy())
    res = ev.result()
    assert res["pixels"] == 4 and res["classes"]["car"]["pixels"] == 0 and res["classes"]["road"]["pixels"] == 4


def test_checkpoint_runs_and_answers_at_the_evaluation_size(tmp_path: Path) -> None:
    from labeltree.infer import open_model

    lab = np.full((H, W), 7, np.uint8)
    lab[20:, 30:50] = 26
    _dataset(tmp_path / "cs", lab)
    predict = open_model(_checkpoint(tmp_path, "hierarchical")).predictor("cityscapes")
    h = load_hierarchy("cityscapes+vistas+gtsdb")
    res = evaluate_folder("cityscapes", tmp_path / "cs", None, "val", predict=predict, hierarchy=h,
                          rules=resolve_rules("paper", "cityscapes", eval_size=(16, 24)), workers=1, progress=False)
    assert res["images"] == 2
    ev = res.evaluator
    assert int(ev.matrix.sum()) == 2 * 16 * 24  # every pixel of both images, counted at 24x16
    assert res["rules"]["eval_size"] == [16, 24] and res["eval_size"] == "24x16"
    native = evaluate_folder("cityscapes", tmp_path / "cs", None, "val", predict=predict, hierarchy=h,
                             rules="paper", workers=1, progress=False)
    assert int(native.evaluator.matrix.sum()) == 2 * H * W
    from labeltree.commands.evaluate import _eval_size

    assert _eval_size("706x512") == (512, 706) and _eval_size("Paper") == "paper"
    with pytest.raises(LabeltreeError, match=r"--eval-size \(native, paper or WIDTHxHEIGHT\): expected WIDTHxHEIGHT"):
        _eval_size("huge")


def test_the_default_size_follows_the_protocol_and_the_output_says_it(tmp_path: Path) -> None:
    import json

    from click.testing import CliRunner

    from labeltree.cli import main

    lab = np.full((H, W), 7, np.uint8)
    lab[20:, 30:50] = 26
    _dataset(tmp_path / "cs", lab)
    ck = _checkpoint(tmp_path, "hierarchical")
    seen = {}
    for protocol, size in (("paper", None), ("official", None), ("paper", "native"), ("official", "paper")):
        args = ["evaluate", "cityscapes", str(tmp_path / "cs"), "--checkpoint", str(ck), "--protocol", protocol,
                "--workers", "1", "--no-progress", "--drop", "none", *(["--eval-size", size] if size else [])]
        table = CliRunner().invoke(main, args)
        js = CliRunner().invoke(main, [*args, "--format", "json"])
        assert table.exit_code == 0 and js.exit_code == 0, table.output + js.output
        res = json.loads(js.output)
        seen[protocol, size] = res["eval_size"]
        assert table.output.splitlines()[0].endswith(f"protocol: {protocol}, scored at {res['eval_size']})")
        # every pixel is road or car, both scored (--drop none): all of them, counted at the size named
        assert res["pixels"] == 2 * (512 * 706 if res["eval_size"] == "706x512 (paper)" else H * W)
    assert seen == {("paper", None): "706x512 (paper)", ("official", None): "native",
                    ("paper", "native"): "native", ("official", "paper"): "706x512 (paper)"}
    helptext = CliRunner().invoke(main, ["evaluate", "--help"]).output
    assert "Default: paper under --protocol paper, native under" in " ".join(helptext.split())
