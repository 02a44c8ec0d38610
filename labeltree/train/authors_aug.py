"""The authors' training augmentation (`augment: authors`), batch-wise in torch, on any device.

Their code (hierarchical-semantic-segmentation/input_cityscapes_mapillary_gtsdb/preprocess_augmentation_1.py,
applied to Cityscapes and GTSDB crops only, input_pipeline.py:158 and :206; Vistas has none) does, per image:

1. colour with probability 1/2 (`random_color`, lines 51-68: one of 8 cases, 4 of them unchanged), in one
   of four orders (`distort_color`, lines 131-177) of brightness + U(-16/255, 16/255), saturation and
   contrast x U(0.8, 1.2), hue + U(-0.1, 0.1) of the circle (TensorFlow's adjust_* definitions: HSV for
   saturation and hue, per-channel image mean for contrast; no clipping between them), then clipped
   to [0, 1];
2. blur with probability 1/2 (`random_blur`, lines 70-83: one of 4 cases): median (cv2.medianBlur on
   the image floored to 8 bits) or bilateral (cv2.bilateralFilter, sigma colour and space 35), with a
   size of 1 or 3 pixels, each with probability 1/2 (`distort_blur`, line 93); then clipped to [0, 1].
   A median of size 1 only floors to 8 bits; OpenCV raises a bilateral diameter of 1 to 3 (radius at
   least 1), so every bilateral one blurs: 3/8 of the images are blurred (1/8 median, 1/4 bilateral).
   On [0, 1] images sigma 35 makes every weight ~1: the bilateral is nearly a 5-pixel cross mean.

Images here are 0..255 (uint8 or float) [B, 3, H, W]; the maths runs on [0, 1] as theirs. Every random
value is drawn per sample from a torch.Generator (`draw_authors`), so the loader draws and the
training process applies (`apply_authors`), on the GPU when `train.jitter_on_device`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

BRIGHTNESS = 16.0 / 255.0
FACTOR_RANGE = (0.8, 1.2)  # saturation and contrast
HUE = 0.1  # of the colour circle
# the orders of distort_color, lines 153-172: 0 brightness, 1 saturation, 2 hue, 3 contrast
ORDERS = ((0, 1, 2, 3), (1, 0, 3, 2), (3, 2, 0, 1), (2, 1, 3, 0))
SIGMA = 35.0  # bilateral sigma colour and sigma space (on [0, 1] images, so colour weights are ~1)
BLURS = ("none", "median", "bilateral")
# [colour on, order, brightness delta, saturation factor, hue delta, contrast factor, blur kind, kernel size]
NEUTRAL = (0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0)
WIDTH = len(NEUTRAL)


def draw_authors(g: torch.Generator) -> torch.Tensor:
    """[8] float32 parameters for one image; always the same number of draws (determinism by slot seed)."""
    def randint(n: int) -> int:
        return int(torch.randint(0, n, (1,), generator=g))

    def u(lo: float, hi: float) -> float:
        return lo + (hi - lo) * float(torch.rand(1, generator=g, dtype=torch.float64))

    col_r, blu_r, size = randint(8), randint(4), 2 * randint(2) + 1
    values = (u(-BRIGHTNESS, BRIGHTNESS), u(*FACTOR_RANGE), u(-HUE, HUE), u(*FACTOR_RANGE))
    colour = col_r < 4  # cases 0-3: distort_color with that order; 4-7: unchanged
    blur = blu_r + 1 if blu_r < 2 else 0  # case 0 median, 1 bilateral, 2-3 none
    return torch.tensor([float(colour), float(col_r % 4), *values, float(blur), float(size)], dtype=torch.float32)


def rgb_to_hsv(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """TensorFlow's rgb_to_hsv kernel on [N, 3, H, W] (any values): hue in [0, 1), saturation, value."""
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    v = x.amax(1)
    rng = v - x.amin(1)
    s = torch.where(v > 0, rng / torch.where(v > 0, v, torch.ones_like(v)), torch.zeros_like(v))
    norm = 1.0 / (6.0 * torch.where(rng > 0, rng, torch.ones_like(rng)))
    h = torch.where(r == v, norm * (g - b), torch.where(g == v, norm * (b - r) + 2.0 / 6.0, norm * (r - g) + 4.0 / 6.0))
    h = torch.where(rng > 0, h, torch.zeros_like(h))
    h = torch.where(h < 0, h + 1, h)
    return h, s, v


def hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """TensorFlow's hsv_to_rgb kernel (six hue sectors) -> [N, 3, H, W]."""
    c = s * v
    m = v - c
    dh = h * 6
    sector = dh.floor().clamp(0, 5)
    x = c * (1 - (torch.remainder(dh, 2.0) - 1).abs())
    zero = torch.zeros_like(c)
    table = ((c, x, zero), (x, c, zero), (zero, c, x), (zero, x, c), (x, zero, c), (c, zero, x))
    out = []
    for ch in range(3):
        val = zero
        for k, row in enumerate(table):
            val = torch.where(sector == k, row[ch], val)
        out.append(val + m)
    return torch.stack(out, 1)


def _brightness(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    return x + p[:, 2].view(-1, 1, 1, 1)


def _saturation(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    h, s, v = rgb_to_hsv(x)
    return hsv_to_rgb(h, (s * p[:, 3].view(-1, 1, 1)).clamp(0, 1), v)


def _hue(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    h, s, v = rgb_to_hsv(x)
    return hsv_to_rgb(torch.remainder(h + p[:, 4].view(-1, 1, 1), 1.0), s, v)


def _contrast(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    mean = x.mean(dim=(2, 3), keepdim=True)
    return (x - mean) * p[:, 5].view(-1, 1, 1, 1) + mean


_OPS = (_brightness, _saturation, _hue, _contrast)


def median3(x: torch.Tensor) -> torch.Tensor:
    """cv2.medianBlur(ksize 3) on [N, C, H, W]: the median of each 3x3 window, edges replicated."""
    n, c, h, w = x.shape
    cols = F.unfold(F.pad(x.reshape(n * c, 1, h, w), (1, 1, 1, 1), mode="replicate"), 3)
    return cols.median(dim=1).values.view(n, c, h, w)


def bilateral3(x: torch.Tensor, sigma_colour: float = SIGMA, sigma_space: float = SIGMA) -> torch.Tensor:
    """cv2.bilateralFilter(d 3) on float [N, 3, H, W]: the centre and its 4 neighbours (radius 1), weights
    exp(-r^2 / 2 sigma_space^2) * exp(-(sum of |channel differences|)^2 / 2 sigma_colour^2), edges reflected."""
    n, c, h, w = x.shape
    pad = F.pad(x, (1, 1, 1, 1), mode="reflect")
    num = torch.zeros_like(x)
    den = torch.zeros((n, 1, h, w), dtype=x.dtype, device=x.device)
    for dy, dx in ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1)):
        nb = pad[:, :, 1 + dy:1 + dy + h, 1 + dx:1 + dx + w]
        alpha = (nb - x).abs().sum(1, keepdim=True)
        wgt = torch.exp(-alpha ** 2 / (2 * sigma_colour ** 2)) * torch.exp(
            torch.tensor(-(dy * dy + dx * dx) / (2 * sigma_space ** 2), dtype=x.dtype, device=x.device))
        num += wgt * nb
        den += wgt
    return num / den


def _colour(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    on = p[:, 0] > 0.5
    if not bool(on.any()):
        return x
    idx = on.nonzero().flatten()
    y, q = x[idx], p[idx]
    order = torch.tensor(ORDERS, device=x.device)[q[:, 1].long()]  # [n, 4] op per position
    for pos in range(4):
        for op, fn in enumerate(_OPS):
            sel = (order[:, pos] == op).nonzero().flatten()
            if len(sel):
                y[sel] = fn(y[sel], q[sel])
    x = x.clone()
    x[idx] = y.clamp(0, 1)
    return x


def _blur(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    kind, size = p[:, 6].round().long(), p[:, 7].round().long()
    median = (kind == 1).nonzero().flatten()
    bilateral = (kind == 2).nonzero().flatten()  # size 1 or 3: OpenCV uses radius 1 for both
    if not len(median) and not len(bilateral):
        return x
    x = x.clone()
    if len(median):  # 8-bit quantisation always (their uint8 cast), the window only for size 3
        q = (x[median] * 255 + 1e-4).floor() / 255  # + 1e-4: a byte that went through /255 stays itself
        big = size[median] == 3
        if bool(big.any()):
            q[big] = median3(q[big])
        x[median] = q
    if len(bilateral):
        x[bilateral] = bilateral3(x[bilateral])
    return x.clamp(0, 1)


def apply_authors(images: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """uint8 or float [B, 3, H, W] in 0..255 + [B, 8] parameters -> float [B, 3, H, W] in 0..255."""
    x = images.float() / 255.0
    p = params.to(x.device, torch.float32)
    return _blur(_colour(x, p), p) * 255.0
