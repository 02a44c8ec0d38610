"""`augment: authors`: the authors' colour orders and blur (preprocess_augmentation_1.py), drawn and applied.

Probabilities are checked over 4000 seeded draws (bounds at ~5 standard deviations, so a correct
drawer never fails and a wrong probability, e.g. 1/4 for 1/2, always does); each operation is
checked exactly on hand-built images.
"""

from __future__ import annotations

import math

import pytest
import torch

from labeltree.train import authors_aug as aa
from labeltree.train.config import Augment
from labeltree.train.fastload import apply_jitter, draw_params, param_width

N = 4000


def _draws() -> torch.Tensor:
    return torch.stack([aa.draw_authors(torch.Generator().manual_seed(s)) for s in range(N)])


def _within(count: int, p: float) -> bool:
    sd = math.sqrt(N * p * (1 - p))
    return abs(count - N * p) <= 5 * sd


def test_probabilities_and_ranges_of_the_draws() -> None:
    p = _draws()
    colour, order, blur, size = p[:, 0], p[:, 1], p[:, 6], p[:, 7]
    assert _within(int((colour == 1).sum()), 1 / 2)  # random_color: cases 0-3 of 8
    for k in range(4):  # each order 1/8 of all images (among those coloured: 1/4)
        assert _within(int(((colour == 1) & (order == k)).sum()), 1 / 8)
    assert _within(int((blur == 0).sum()), 1 / 2)  # random_blur: cases 2-3 of 4 leave the image
    assert _within(int((blur == 1).sum()), 1 / 4) and _within(int((blur == 2).sum()), 1 / 4)
    assert set(size.tolist()) == {1.0, 3.0} and _within(int((size == 3).sum()), 1 / 2)
    for col, lo, hi in ((2, -16 / 255, 16 / 255), (3, 0.8, 1.2), (4, -0.1, 0.1), (5, 0.8, 1.2)):
        v = p[:, col]
        assert lo <= float(v.min()) < lo + 0.01 * (hi - lo) and hi - 0.01 * (hi - lo) < float(v.max()) <= hi
        assert abs(float(v.mean()) - (lo + hi) / 2) < 0.03 * (hi - lo)  # uniform: the middle on average
    # a pure function of the slot seed (resume draws the same)
    seven = aa.draw_authors(torch.Generator().manual_seed(7))
    assert torch.equal(seven, aa.draw_authors(torch.Generator().manual_seed(7)))


def _params(order: int = 0, b: float = 0.0, s: float = 1.0, h: float = 0.0, c: float = 1.0, colour: bool = True,
            blur: int = 0, size: int = 1) -> torch.Tensor:
    return torch.tensor([[float(colour), order, b, s, h, c, blur, size]])


def test_each_colour_operation_on_hand_built_pixels() -> None:
    img = torch.tensor([[[[100.0, 200.0]], [[50.0, 10.0]], [[0.0, 255.0]]]])  # two pixels, RGB columns
    same = aa.apply_authors(img, _params())
    torch.testing.assert_close(same, img, atol=1e-4, rtol=0)  # neutral values change nothing
    bright = aa.apply_authors(img, _params(b=16 / 255))
    torch.testing.assert_close(bright, (img + 16).clamp(0, 255), atol=1e-4, rtol=0)  # +16, then clipped at 255
    # contrast: per channel about that channel's mean over the image: R mean 150 -> 100 -> 150 - 50 * 1.2 = 90
    con = aa.apply_authors(img, _params(c=1.2))
    torch.testing.assert_close(con[0, 0, 0], torch.tensor([90.0, 210.0]), atol=1e-3, rtol=0)
    # saturation: HSV s x 0.5 keeps v = max and hue; pixel 1 (100, 50, 0): s 1 -> 0.5 = (100, 75, 50)
    sat = aa.apply_authors(img, _params(s=0.5))
    torch.testing.assert_close(sat[0, :, 0, 0], torch.tensor([100.0, 75.0, 50.0]), atol=1e-3, rtol=0)
    # hue: pure red turned by 1/3 of the circle is pure green; -1/3 is pure blue
    red = torch.tensor([[[[255.0]], [[0.0]], [[0.0]]]])
    torch.testing.assert_close(aa.apply_authors(red, _params(h=1 / 3))[0, :, 0, 0], torch.tensor([0.0, 255.0, 0.0]),
                               atol=1e-3, rtol=0)
    torch.testing.assert_close(aa.apply_authors(red, _params(h=-1 / 3))[0, :, 0, 0], torch.tensor([0.0, 0.0, 255.0]),
                               atol=1e-3, rtol=0)
    # colour off: the drawn values are ignored
    torch.testing.assert_close(aa.apply_authors(img, _params(b=0.05, c=1.2, colour=False)), img, atol=1e-4, rtol=0)


def test_the_four_orders_compose_the_operations_in_the_authors_sequence() -> None:
    torch.manual_seed(0)
    img = torch.rand(1, 3, 6, 7) * 255
    vals = {"b": 0.04, "s": 1.15, "h": 0.07, "c": 0.85}
    ops = {"b": aa._brightness, "s": aa._saturation, "h": aa._hue, "c": aa._contrast}
    sequences = {0: "bshc", 1: "sbch", 2: "chbs", 3: "hscb"}  # distort_color, lines 153-172
    results = []
    for order, seq in sequences.items():
        p = _params(order, **vals)
        x = img / 255
        for name in seq:
            x = ops[name](x, p)
        torch.testing.assert_close(aa.apply_authors(img, p), x.clamp(0, 1) * 255, atol=1e-4, rtol=0)
        results.append(aa.apply_authors(img, p))
    assert all(not torch.allclose(results[0], r, atol=1e-2) for r in results[1:])  # the order matters


def test_blur_median_and_bilateral() -> None:
    img = torch.full((1, 3, 5, 5), 100.0)
    img[0, :, 2, 2] = 250.0  # one bright speck
    med = aa.apply_authors(img, _params(colour=False, blur=1, size=3))
    assert torch.equal(med, torch.full_like(img, 100.0))  # the 3x3 median removes it
    med1 = aa.apply_authors(img + 0.6, _params(colour=False, blur=1, size=1))
    torch.testing.assert_close(med1, (img + 0.6).floor(), atol=1e-3, rtol=0)  # size 1: only the 8-bit floor
    # bilateral: the speck becomes the mean of the 5-pixel cross (weights ~1 at sigma 35 on [0, 1] values);
    # size 1 blurs the same (OpenCV raises the radius to 1)
    for size in (1, 3):
        bil = aa.apply_authors(img, _params(colour=False, blur=2, size=size))
        assert abs(float(bil[0, 0, 2, 2]) - (250 + 4 * 100) / 5) < 0.2
        assert abs(float(bil[0, 0, 1, 2]) - (250 + 4 * 100) / 5) < 0.2  # a neighbour: its cross holds the speck
        assert float(bil[0, 0, 1, 1]) == pytest.approx(100.0, abs=1e-3)  # a diagonal neighbour: not in its cross
    w_speck = math.exp(-(3 * 150 / 255) ** 2 / (2 * 35 ** 2)) * math.exp(-1 / (2 * 35 ** 2))
    w_side, w_centre = math.exp(-1 / (2 * 35 ** 2)), 1.0
    expect = (100 * w_centre + 3 * 100 * w_side + 250 * w_speck) / (w_centre + 3 * w_side + w_speck)
    bil = aa.apply_authors(img, _params(colour=False, blur=2, size=3))
    assert float(bil[0, 0, 1, 2]) == pytest.approx(expect, abs=1e-3)  # the formula, exactly


def test_config_names_and_the_loader_parameters() -> None:
    assert Augment.model_validate("authors").style == "authors"
    with pytest.raises(ValueError, match="not a named augmentation"):
        Augment.model_validate("paper")
    with pytest.raises(ValueError, match="has its own colour ranges"):
        Augment.model_validate({"style": "authors", "hue": 0.1})
    authors, jitter, none = Augment(style="authors"), Augment(brightness=0.2), Augment()
    assert param_width([jitter, none]) == 4 and param_width([authors, none]) == 12
    g = torch.Generator().manual_seed(3)
    p = draw_params(none, g, 12)
    assert p.tolist() == [1.0, 1.0, 1.0, 0.0, *aa.NEUTRAL]  # a dataset without augmentation: neutral
    q = draw_params(authors, torch.Generator().manual_seed(3), 12)
    assert q[:4].tolist() == [1.0, 1.0, 1.0, 0.0]
    assert torch.equal(q[4:], aa.draw_authors(torch.Generator().manual_seed(3)))
    img = torch.randint(0, 256, (2, 3, 8, 9), dtype=torch.uint8)
    both = torch.stack([p, q])
    out = apply_jitter(img, both)  # what the training loop calls on the batch (train.jitter_on_device)
    torch.testing.assert_close(out[0], img[0].float(), atol=1e-3, rtol=0)
    torch.testing.assert_close(out[1:], aa.apply_authors(img[1:], q[None, 4:]), atol=1e-3, rtol=0)
