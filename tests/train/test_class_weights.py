"""Class weights in the loss (`loss.class_weights`): weights from a stats roll-up, and the weighted loss by hand."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from labeltree.core.tree_file import load_hierarchy
from labeltree.errors import LabeltreeError
from labeltree.train.class_weights import classifier_pixels, load_class_weights, weights_from_pixels
from labeltree.train.config import config_from_dict
from labeltree.train.loss import NO_TARGET, pooled_ce

H = load_hierarchy("cityscapes+vistas+gtsdb")


def test_weights_by_hand() -> None:
    px = np.array([100, 300, 0, 600])  # N = 1000, K = 3 children with pixels, shares .1 .3 .6
    np.testing.assert_allclose(weights_from_pixels(px, "inverse"), [10 / 3, 10 / 9, 10 / 3, 5 / 9])
    np.testing.assert_allclose(weights_from_pixels(px, "medfreq"), [3.0, 1.0, 3.0, 0.5])  # median share .3
    np.testing.assert_allclose(weights_from_pixels(px, "enet"),
                               [1 / math.log(1.12), 1 / math.log(1.32), 1 / math.log(1.02), 1 / math.log(1.62)])
    np.testing.assert_array_equal(weights_from_pixels(np.zeros(3), "inverse"), [1, 1, 1])
    with pytest.raises(LabeltreeError, match="kind must be one of"):
        weights_from_pixels(px, "sqrt")


def _rows() -> list[dict]:
    root = H.classifiers[0]
    names = [H.nodes[n].name for n in root.children]
    return [  # two datasets train the root; an evaluation-only one and another split are left out
        {"split": "train", "classifier": root.name, "class": names[0], "dataset": "cityscapes", "pixels": 300,
         "trains": True},
        {"split": "train", "classifier": root.name, "class": names[0], "dataset": "vistas", "pixels": 100,
         "trains": True},
        {"split": "train", "classifier": root.name, "class": names[1], "dataset": "vistas", "pixels": 100,
         "trains": True},
        {"split": "train", "classifier": root.name, "class": names[1], "dataset": "other", "pixels": 10 ** 6,
         "trains": False},
        {"split": "val", "classifier": root.name, "class": names[2], "dataset": "vistas", "pixels": 10 ** 6,
         "trains": True},
    ]


def test_rollup_rows_to_weights(tmp_path: Path) -> None:
    px = classifier_pixels(_rows(), H, "train")
    assert px[0][:3].tolist() == [400, 100, 0] and not px[0][3:].any()
    assert all(not a.any() for a in px[1:])
    f = tmp_path / "tree.json"
    f.write_text(json.dumps(_rows()))
    w = load_class_weights(f, "inverse", H)
    assert len(w) == len(H.classifiers) and w[0].dtype == np.float32
    # N = 500, K = 2: 500 / (2 * 400) = 0.625, 500 / (2 * 100) = 2.5, children without pixels 2.5
    np.testing.assert_allclose(w[0], [0.625, 2.5] + [2.5] * (len(w[0]) - 2))
    assert all((a == 1).all() for a in w[1:])
    f.write_text("[1, 2]")
    with pytest.raises(LabeltreeError, match="neither a raw-count file"):
        load_class_weights(f, "inverse", H)
    with pytest.raises(LabeltreeError, match="no pixels for split 'test'"):
        f.write_text(json.dumps(_rows()))
        load_class_weights(f, "inverse", H, "test")


def test_weighted_pooled_ce_by_hand() -> None:
    # 1 image, 3 classes, 1x4 pixels: targets 0, 2, ignored, 2; weights (2, 1, 0.5)
    logits = torch.tensor([[[[1.0, 0.0, 3.0, 0.5]], [[0.0, 1.0, 0.0, 0.5]], [[0.0, 2.0, 1.0, 0.0]]]])
    target = torch.tensor([[[0, 2, NO_TARGET, 2]]], dtype=torch.uint8)
    w = torch.tensor([2.0, 1.0, 0.5])

    def ce(col: list[float], k: int) -> float:
        return -(col[k] - math.log(sum(math.exp(v) for v in col)))

    l0 = ce([1.0, 0.0, 0.0], 0)
    l1 = ce([0.0, 1.0, 2.0], 2)
    l3 = ce([0.5, 0.5, 0.0], 2)
    expect = (2 * l0 + 0.5 * l1 + 0.5 * l3) / (2 + 0.5 + 0.5)
    got, count = pooled_ce(logits, target, weight=w)
    assert got.item() == pytest.approx(expect, rel=1e-6) and count.item() == pytest.approx(3.0)
    small, _ = pooled_ce(logits, target, weight=w / 100)  # a weighted count below 1 is still the denominator
    assert small.item() == pytest.approx(expect, rel=1e-5)
    plain, n = pooled_ce(logits, target)
    assert plain.item() == pytest.approx((l0 + l1 + l3) / 3, rel=1e-6) and n.item() == 3


def test_config_section() -> None:
    base = {"datasets": [{"name": "cityscapes", "root": "x"}]}
    assert config_from_dict(base).loss.class_weights is None
    cfg = config_from_dict({**base, "loss": {"class_weights": {"stats": "s.json", "kind": "enet"}}})
    assert (cfg.loss.class_weights.kind, cfg.loss.class_weights.split) == ("enet", "train")
    with pytest.raises(LabeltreeError, match="loss.class_weights.kind"):
        config_from_dict({**base, "loss": {"class_weights": {"stats": "s.json", "kind": "log"}}})


def test_training_uses_the_weights(tmp_path: Path) -> None:
    from test_trainer_run import quiet, toy_cfg
    from test_trainer_toydata import make_toy

    from labeltree.train.loop import train

    toy = make_toy(tmp_path / "toy", n=2, n_val=1)

    def rows(pixels) -> list[dict]:
        return [{"split": "train", "classifier": c.name, "class": H.nodes[n].name, "dataset": "cityscapes",
                 "pixels": pixels(i), "trains": True}
                for j, c in enumerate(H.classifiers) for i, n in enumerate(c.children)]

    def first_losses(stats: Path | None) -> dict[str, float]:
        loss = {"class_weights": {"stats": str(stats), "kind": "inverse"}} if stats else {}
        cfg = config_from_dict({**toy_cfg(toy, steps=1), "loss": loss})
        return train(cfg, tmp_path / f"run-{stats.stem if stats else 'plain'}", progress=False, log=quiet).losses[0]

    (tmp_path / "even.json").write_text(json.dumps(rows(lambda _: 7)))  # inverse weights exactly 1
    (tmp_path / "skew.json").write_text(json.dumps(rows(lambda i: 1 + 3 * i)))
    plain, even, skew = first_losses(None), first_losses(tmp_path / "even.json"), first_losses(tmp_path / "skew.json")
    assert even["loss"] == pytest.approx(plain["loss"], rel=1e-6)
    root = H.classifiers[0].name
    assert abs(skew["heads"][root] - plain["heads"][root]) > 1e-3
