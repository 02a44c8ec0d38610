"""model.normalise, model.upsample_init, optim.no_decay_norm_bias: our defaults and the authors' values."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from labeltree.train.config import ModelCfg, OptimCfg, load_config
from labeltree.train.data import mean_std, normalise
from labeltree.train.model import Head, build_model
from labeltree.train.optim import make_optimizer, param_groups


def test_normalise_imagenet_and_symmetric() -> None:
    x = torch.tensor([0, 255, 51], dtype=torch.uint8).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    sym = normalise(x, "symmetric")
    torch.testing.assert_close(sym[0, :, 0, 0], torch.tensor([-1.0, 1.0, 51 / 127.5 - 1]))  # the authors' [-1, 1]
    img = normalise(x)
    want = torch.tensor([-0.485 / 0.229, (1 - 0.456) / 0.224, (0.2 - 0.406) / 0.225])
    torch.testing.assert_close(img[0, :, 0, 0], want)
    assert mean_std("symmetric") == ((0.5,) * 3, (0.5,) * 3)
    with pytest.raises(ValueError, match="imagenet or symmetric"):
        mean_std("caffe")


def test_upsample_init_bilinear_and_he() -> None:
    torch.manual_seed(0)
    bil = Head(8, 4, 30)
    assert bil.up.bias is None
    k = bil.up.weight.detach()
    assert float(k[0, 0, 1, 1]) == pytest.approx(0.75 * 0.75) and float(k[0, 1].abs().sum()) == 0  # per channel
    he = Head(8, 4, 30, "he")
    assert he.up.bias is not None and torch.equal(he.up.bias, torch.zeros(30))
    std = math.sqrt(1.3 * 2 / (4 * 4 * 30))
    w = he.up.weight.detach()
    assert float(w.abs().max()) <= 2 * std  # truncated at 2 stddev
    # the std of a normal truncated at +-2 sigma is 0.8796 sigma; 14400 draws: within 3 %
    assert float(w.std()) == pytest.approx(0.8796 * std, rel=0.03)
    m = build_model(ModelCfg(backbone="tiny", width=8, bottleneck=4, tiny_channels=(4, 4, 8, 8), upsample_init="he"),
                    [3, 2])
    assert all(h.up.bias is not None for h in m.heads)


def test_no_decay_norm_bias_groups_and_one_step_by_hand() -> None:
    net = nn.Sequential(nn.Conv2d(1, 2, 1, bias=True), nn.BatchNorm2d(2))
    groups = param_groups(OptimCfg(weight_decay=0.1, no_decay_norm_bias=True), net)
    assert [len(g["params"]) for g in groups] == [1, 3] and [g["weight_decay"] for g in groups] == [0.1, 0.0]
    assert len(param_groups(OptimCfg(weight_decay=0.1), net)) == 1
    for flag, bn_after in ((False, 1 - 0.1 * 0.1), (True, 1.0)):  # SGD, lr 0.1, decay 0.1, zero gradient
        with torch.no_grad():
            net[1].weight.fill_(1.0)
            net[0].weight.fill_(1.0)
        opt = make_optimizer(OptimCfg(lr=0.1, momentum=0.0, weight_decay=0.1, no_decay_norm_bias=flag), net)
        for p in net.parameters():
            p.grad = torch.zeros_like(p)
        opt.step()
        assert float(net[1].weight[0]) == pytest.approx(bn_after)
        assert float(net[0].weight.flatten()[0]) == pytest.approx(0.99)  # conv weights decay either way


def test_paper_config_names_its_choices() -> None:
    c = load_config("paper")
    assert (c.model.normalise, c.model.upsample_init, c.optim.no_decay_norm_bias) == ("imagenet", "he", True)
    assert c.train.ema_decay == 0.9 and load_config("cpu-tiny").train.ema_decay == 0.9  # measured: it helps there
    d = ModelCfg()
    assert (d.normalise, d.upsample_init, OptimCfg().no_decay_norm_bias) == ("imagenet", "bilinear", False)
