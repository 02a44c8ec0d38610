"""Temperature calibration of a trained tiny model (issue 28): fitted on the val split, every classifier's val
NLL falls, and on held-out frames of another seed the 15-bin ECE is not worse; too few pixels are said so.

The toy world (test_trainer_toydata) with riders, so that every classifier of the tree has pixels: 6 train and
3 val frames (each of the three sign classes once in val), 40 steps (a few seconds); held out: 12 frames of
seed 1.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from test_trainer_run import quiet, toy_cfg
from test_trainer_toydata import make_toy

from labeltree.train.calibrate import (
    ECE_MIN_PIXELS,
    MIN_FIT_PIXELS,
    HeadStats,
    calibrate_stats,
    collect,
    evaluate_temperatures,
    row_note,
    val_sources,
)
from labeltree.train.config import config_from_dict
from labeltree.train.loop import train
from labeltree.train.predict import load_predictor

CLASSIFIERS = ["root", "Driveable", "Rider", "Traffic Sign", "Traffic Sign (Front)"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    d = tmp_path_factory.mktemp("calibrate")
    toy = make_toy(d / "toy", n=6, n_val=3, riders=True)
    held = make_toy(d / "held", n=0, n_val=12, seed=1, riders=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = toy_cfg(toy, optim={"milestones": []}, steps=40)
        run = train(config_from_dict(cfg), d / "run", progress=False, log=quiet)
        pred = load_predictor(run.last, "cpu")
        fit = collect(pred, val_sources(config_from_dict(cfg), pred.h))
        held_out = collect(pred, val_sources(config_from_dict(toy_cfg(held)), pred.h))
        names = [c.name for c in pred.h.classifiers]
        rows = calibrate_stats(names, fit)
        held_rows = evaluate_temperatures(names, held_out, [r["temperature"] for r in rows])
    finally:
        torch.set_num_threads(threads)
    return {"names": names, "fit": fit, "rows": rows, "held_rows": held_rows}


def test_every_classifier_val_nll_falls_and_held_out_ece_is_not_worse(trained: dict[str, Any]) -> None:
    assert trained["names"] == CLASSIFIERS
    rows = trained["rows"]
    assert [r["pixels"] for r in rows] == [27648, 7856, 480, 300, 588]  # the val frames' supervising pixels
    for r in rows:
        assert r["fitted"] and r["nll_after"] < r["nll_before"], r
    held = trained["held_rows"]
    assert [r["pixels"] for r in held] == [110592, 28344, 1920, 1200, 2352]
    for r in held:  # every classifier has enough held-out pixels for its ECE to be a measurement
        assert r["ece_reliable"] and r["ece_after"] <= r["ece_before"], r
    assert sum(r["ece_after"] < r["ece_before"] for r in held) >= 4  # not only ties


def test_too_few_pixels_keep_t1_and_are_said_so(trained: dict[str, Any]) -> None:
    """A temperature from a handful of pixels is that handful's (a random net's Rider: 9 val pixels drove T to
    the search limit and its held-out ECE from 0.25 to 0.56): under MIN_FIT_PIXELS T = 1 stays; an ECE from
    under ECE_MIN_PIXELS is flagged as noise."""
    x, y = trained["fit"][2].arrays(10**9)  # Rider's 480 val pixels
    few = HeadStats([x[:MIN_FIT_PIXELS - 1].numpy()], [y[:MIN_FIT_PIXELS - 1].numpy()])
    enough = HeadStats([x[:MIN_FIT_PIXELS].numpy()], [y[:MIN_FIT_PIXELS].numpy()])
    r_few, r_enough = calibrate_stats(["a", "b"], [few, enough])
    assert r_few["temperature"] == 1.0 and not r_few["fitted"] and r_few["nll_after"] == r_few["nll_before"]
    assert row_note(r_few) == f"{MIN_FIT_PIXELS - 1} < {MIN_FIT_PIXELS} px: T = 1 kept"
    assert r_enough["fitted"] and r_enough["temperature"] != 1.0
    assert row_note(r_enough) == f"ECE from < {ECE_MIN_PIXELS} px: noise"
    assert not r_enough["ece_reliable"]
    assert row_note(calibrate_stats(["c"], [HeadStats()])[0]) == f"0 < {MIN_FIT_PIXELS} px: T = 1 kept"

