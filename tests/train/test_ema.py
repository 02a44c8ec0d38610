"""train.ema_decay: the moving average of the weights against a hand computation, and exact across a save / load."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from labeltree.errors import LabeltreeError
from labeltree.train.ema import WeightEMA, model_weights


def test_ema_against_a_hand_computation() -> None:
    lin = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        lin.weight.fill_(1.0)
    ema = WeightEMA(lin, 0.9)
    shadow, hand = 1.0, []
    for k, w in enumerate((3.0, 5.0, 2.0, 7.0), start=1):
        with torch.no_grad():
            lin.weight.fill_(w)
        ema.update(lin)
        d = min(0.9, (1 + k) / (10 + k))  # 2/11, 3/12, 4/13, 5/14
        shadow = d * shadow + (1 - d) * w
        hand.append(shadow)
        assert float(ema.shadow["weight"]) == pytest.approx(shadow, abs=1e-6)
    assert hand[0] == pytest.approx(2 / 11 * 1 + 9 / 11 * 3)
    assert ema.rate(80) == pytest.approx(81 / 90) and ema.rate(81) == 0.9 and ema.rate(10**6) == 0.9


def test_batchnorm_statistics_are_averaged_and_counters_copied() -> None:
    bn = nn.BatchNorm1d(1)
    ema = WeightEMA(bn, 0.5)
    with torch.no_grad():
        bn.running_mean.fill_(4.0)
        bn.num_batches_tracked.fill_(7)
    ema.update(bn)  # d_1 = min(0.5, 2/11) = 2/11
    assert float(ema.shadow["running_mean"]) == pytest.approx(9 / 11 * 4.0)
    assert int(ema.shadow["num_batches_tracked"]) == 7


def test_resume_is_exact_and_weights_choice() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    a = WeightEMA(net, 0.9)
    steps = [{k: torch.randn_like(v) if v.is_floating_point() else v for k, v in net.state_dict().items()}
             for _ in range(6)]
    for st in steps[:3]:
        net.load_state_dict(st)
        a.update(net)
    saved = {k: (v.clone() if torch.is_tensor(v) else v) for k, v in a.state_dict().items()}
    saved["state"] = {k: v.clone() for k, v in a.state_dict()["state"].items()}
    b = WeightEMA(net, 0.5)  # a fresh run, then resumed from the saved state
    b.load_state_dict(saved)
    for st in steps[3:]:
        net.load_state_dict(st)
        a.update(net)
        b.update(net)
    assert b.updates == a.updates == 6 and b.decay == 0.9
    assert all(torch.equal(a.shadow[k], b.shadow[k]) for k in a.shadow)
    raw = {"w": torch.ones(1)}
    ckpt = {"model": raw, "ema": a.state_dict()}
    assert model_weights(ckpt)[1] == "ema" and model_weights(ckpt, "raw") == (raw, "raw")
    assert model_weights({"model": raw})[1] == "raw"  # trained without EMA: the raw weights
    with pytest.raises(LabeltreeError, match=r"ck\.pt: the checkpoint's weights \('model'\) are no state dict"):
        model_weights({"model": {"w": 1}}, "raw", "ck.pt")  # a hand-made file: one line naming it, not a KeyError
    with pytest.raises(LabeltreeError, match="--weights"):
        model_weights(ckpt, "average")
    copy = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    a.copy_to(copy)
    assert torch.equal(copy[0].weight, a.shadow["0.weight"])
