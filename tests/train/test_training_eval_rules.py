"""The evaluation during training follows the config's `eval` rules: metrics.jsonl equals `labeltree evaluate
--checkpoint` under the same protocol and size, dataset by dataset (hierarchical and flat models)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from test_trainer_run import cli, quiet, read_jsonl, toy_cfg
from test_trainer_toydata import make_toy

from labeltree.errors import LabeltreeError
from labeltree.train.config import config_from_dict
from labeltree.train.loop import RunResult, train

SPLIT_ROOT = {"cityscapes": "cityscapes", "vistas": "vistas", "gtsdb": "gtsdb",
              "cityscapes-extended": "cityscapes-extended"}
COMPARED = ("protocol", "rules", "mIoU", "mPA", "pixel_accuracy", "classes")


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_toy(tmp_path_factory.mktemp("toy"), n=4, n_val=2)


def _run(toy: Path, out: Path, kind: str, eval_cfg: dict[str, Any], **train_kw: Any) -> RunResult:
    data = toy_cfg(toy, model={"kind": kind}, steps=4, eval_at_end=True, **train_kw)
    data["eval"] = eval_cfg
    return train(config_from_dict(data), out, progress=False, log=quiet)


@pytest.mark.parametrize(("kind", "protocol", "size"), [("hierarchical", "paper", "96x48"),
                                                        ("flat", "paper", "native"),
                                                        ("hierarchical", "official", "native")])
def test_in_training_numbers_equal_evaluate_checkpoint(toy: Path, tmp_path: Path, kind: str, protocol: str,
                                                       size: str) -> None:
    eval_size = "native" if size == "native" else [int(v) for v in reversed(size.split("x"))]
    # --min-pixels 0: every GTSDB class of the toy counts, so the sign datasets have numbers to compare
    run = _run(toy, tmp_path / "run", kind, {"protocol": protocol, "size": eval_size, "min_pixels": 0})
    (rec,) = read_jsonl(run.out / "metrics.jsonl")
    assert sorted(rec["datasets"]) == sorted(SPLIT_ROOT)
    for ds, root in SPLIT_ROOT.items():
        extra = ["--gtsdb-root", toy / "gtsdb"] if ds == "cityscapes-extended" else []
        got = json.loads(cli("evaluate", ds, toy / root, "--checkpoint", run.last, "--protocol", protocol,
                             "--eval-size", size, "--min-pixels", 0, "--format", "json", "--no-progress", *extra))
        mine = rec["datasets"][ds]
        assert mine["rules"]["protocol"] == ("paper" if ds in ("gtsdb", "cityscapes-extended") else protocol)
        for key in COMPARED:
            assert got[key] == mine[key], (ds, key)
        assert got["split"] == mine["split"] and got["images"] == mine["images"] == 2
        # (sign datasets after 4 steps: every prediction can be of a class they lack, all dropped by the paper rules)
        assert ds not in ("cityscapes", "vistas") or (mine["mIoU"] is not None and mine["classes"]), ds


def test_paper_rules_drop_foreign_predictions_and_score_gtsdb_by_the_pixel_rule(toy: Path, tmp_path: Path) -> None:
    run = _run(toy, tmp_path / "run", "hierarchical", {"protocol": "paper", "size": "native"})
    (rec,) = read_jsonl(run.out / "metrics.jsonl")
    d = rec["datasets"]
    assert d["cityscapes"]["rules"]["drop"] == "foreign" and d["cityscapes"]["rules"]["path"] == "direct"
    assert d["gtsdb"]["rules"]["classes"] == "paper"  # the >= 1000-pixel rule, counted on the config's GTSDB
    assert "eval_size" in d["cityscapes"]["rules"] and d["cityscapes"]["rules"]["eval_size"] is None


def test_eval_section_validated_where_it_enters(toy: Path) -> None:
    for bad, msg in (({"protocol": "offical"}, "eval.protocol"), ({"size": "huge"}, "eval.size"),
                     ({"size": [0, 10]}, "eval.size"), ({"min_pixels": -1}, "eval.min_pixels"),
                     ({"sizes": "native"}, "sizes")):
        data = toy_cfg(toy)
        data["eval"] = bad
        with pytest.raises(LabeltreeError, match=msg):
            config_from_dict(data)
    assert config_from_dict({**toy_cfg(toy), "eval": {"protocol": "paper"}}).eval.size_rule == "paper"
    assert config_from_dict(toy_cfg(toy)).eval.size_rule == "native"  # official at the labels' own size


def test_last2_mean_is_the_mean_of_the_last_two_evaluations(toy: Path, tmp_path: Path) -> None:
    from labeltree.train.last_mean import LAST_MEAN_FILE, write_last_mean

    run = _run(toy, tmp_path / "run", "hierarchical", {"protocol": "paper", "size": "native"}, eval_every=2)
    a, b = read_jsonl(run.out / "metrics.jsonl")
    assert (a["step"], b["step"]) == (2, 4)
    mean = json.loads((run.out / LAST_MEAN_FILE).read_text())
    assert mean["steps"] == [2, 4] and mean["weights"] == "raw"
    for ds in ("cityscapes", "vistas"):
        m, x, y = mean["datasets"][ds], a["datasets"][ds], b["datasets"][ds]
        assert m["protocol"] == "paper" and m["rules"] == y["rules"]
        for key in ("mIoU", "mPA", "pixel_accuracy"):
            assert m[key] == (x[key] + y[key]) / 2, (ds, key)
        for name, c in m["classes"].items():
            i, j = x["classes"][name]["IoU"], y["classes"][name]["IoU"]
            assert c["IoU"] == (None if i is None or j is None else (i + j) / 2), name
            assert c["pixels"] == y["classes"][name]["pixels"]
    # one evaluation only: no mean yet (the file goes, as on a resume cut back before the second evaluation)
    (run.out / "metrics.jsonl").write_text(json.dumps(a) + "\n")
    assert write_last_mean(run.out) is None and not (run.out / LAST_MEAN_FILE).exists()
