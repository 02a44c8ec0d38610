"""The fast loader path (opt-in): crops read straight from a memory-mapped uint8 cache, colour jitter on the batch.

Why: from the PNG cache at the paper's scale a sample cost ~55 ms on one core (~17 ms decoding the
whole cached photo and label, ~30 ms of colour jitter's uint8 RGB <-> HSV), 18 img/s per core. Here
(1) `labeltree prepare` with `train.cache_format: npy` stores photos and labels as .npy arrays, so a
random crop reads only its window (np.load(mmap_mode='r')), and (2) with `train.jitter_on_device`
the loader only draws each sample's jitter factors; the training process applies them to the whole
batch after the transfer (`apply_jitter`, float ops on the GPU).

Determinism: the crop window, the flip and the jitter factors are drawn from a torch.Generator
seeded with the sample's slot seed, a pure function of (seed, step, rank, slot) (MixedBatchSampler),
so resuming reproduces the batches exactly.

The jitter is brightness, contrast, saturation (torchvision's definitions: scale; blend with the
image's mean grey; blend with the per-pixel grey) and hue as a rotation of the YIQ chroma plane by
2 pi h (a linear map, unlike torchvision's HSV shift), applied in that fixed order. When a dataset
uses `augment: authors`, each sample's parameters carry 8 more columns (train.authors_aug), applied
after the jitter; datasets without it get that part's neutral values.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from labeltree.train import authors_aug
from labeltree.train.config import Augment

# jitter factors per sample: brightness, contrast, saturation (1 = unchanged), hue shift in turns (0 = none)
NEUTRAL = (1.0, 1.0, 1.0, 0.0)
_GREY = (0.299, 0.587, 0.114)
_RGB2YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]],
                        dtype=torch.float64)


def has_jitter(a: Augment) -> bool:
    return bool(a.brightness or a.contrast or a.saturation or a.hue)


def has_augment(a: Augment) -> bool:
    """Anything for `apply_jitter` to do on this dataset's images."""
    return has_jitter(a) or a.style == "authors"


def param_width(augments: list[Augment]) -> int:
    """Columns of every sample's parameters: 4 jitter factors, + 8 when any dataset uses the authors' style."""
    return len(NEUTRAL) + (authors_aug.WIDTH if any(a.style == "authors" for a in augments) else 0)


def draw_params(a: Augment, g: torch.Generator, width: int) -> torch.Tensor:
    """[width] parameters of one sample: jitter factors (neutral when none), then the authors' (neutral when none)."""
    jit = draw_jitter(a, g) if has_jitter(a) else torch.tensor(NEUTRAL)
    if width == len(NEUTRAL):
        return jit
    extra = authors_aug.draw_authors(g) if a.style == "authors" else torch.tensor(authors_aug.NEUTRAL)
    return torch.cat([jit, extra])


def draw_jitter(a: Augment, g: torch.Generator) -> torch.Tensor:
    """[4] float32 factors (brightness, contrast, saturation, hue) for one sample."""
    def u(lo: float, hi: float) -> float:
        return lo + (hi - lo) * float(torch.rand(1, generator=g, dtype=torch.float64))

    return torch.tensor([u(max(0.0, 1 - a.brightness), 1 + a.brightness) if a.brightness else 1.0,
                         u(max(0.0, 1 - a.contrast), 1 + a.contrast) if a.contrast else 1.0,
                         u(max(0.0, 1 - a.saturation), 1 + a.saturation) if a.saturation else 1.0,
                         u(-a.hue, a.hue) if a.hue else 0.0], dtype=torch.float32)


def _hue_matrices(h: torch.Tensor) -> torch.Tensor:
    """[B, 3, 3] RGB -> RGB maps that rotate the YIQ chroma plane by 2 pi h."""
    t = h.double() * 2 * math.pi
    c, s = torch.cos(t), torch.sin(t)
    rot = torch.zeros(len(h), 3, 3, dtype=torch.float64, device=h.device)
    rot[:, 0, 0] = 1
    rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = c, -s, s, c
    m = _RGB2YIQ.to(h.device)
    return (torch.linalg.inv(m) @ rot @ m).float()


def apply_jitter(images: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """uint8 or float [B, 3, H, W] in 0..255 + [B, 4] factors -> float [B, 3, H, W] in 0..255 (on their device).

    [B, 12] parameters (`param_width`): the jitter, then the authors' augmentation (train.authors_aug).
    """
    if params.shape[1] > len(NEUTRAL):
        return authors_aug.apply_authors(apply_jitter(images, params[:, :len(NEUTRAL)]), params[:, len(NEUTRAL):])
    x = images.float()
    p = params.to(x.device, torch.float32)
    grey_w = torch.tensor(_GREY, device=x.device).view(1, 3, 1, 1)
    b, c, s, h = (p[:, k].view(-1, 1, 1, 1) for k in range(4))
    x = (x * b).clamp(0, 255)
    mean = (x * grey_w).sum(1, keepdim=True).mean(dim=(2, 3), keepdim=True)
    x = ((x - mean) * c + mean).clamp(0, 255)
    grey = (x * grey_w).sum(1, keepdim=True)
    x = ((x - grey) * s + grey).clamp(0, 255)
    if bool((p[:, 3] != 0).any()):
        m = _hue_matrices(p[:, 3])
        x = torch.bmm(m, x.flatten(2)).view_as(x).clamp(0, 255)
    return x


def crop_from(img: np.ndarray, lab: np.ndarray, crop: tuple[int, int], pad_value: int, hflip: bool,
              g: torch.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A random (crop H, crop W) window of a (memory-mapped) photo and label; only the window is read.

    Frames smaller than the crop are padded at the bottom / right (photo 0, label `pad_value`).
    """
    h, w = lab.shape[:2]
    ch, cw = crop
    y0 = int(torch.randint(0, h - ch + 1, (1,), generator=g)) if h > ch else 0
    x0 = int(torch.randint(0, w - cw + 1, (1,), generator=g)) if w > cw else 0
    im = np.zeros((ch, cw, 3), np.uint8)
    lb = np.full((ch, cw), pad_value, np.int32)
    sub_i = img[y0:y0 + ch, x0:x0 + cw]
    sub_l = lab[y0:y0 + ch, x0:x0 + cw]
    im[:sub_i.shape[0], :sub_i.shape[1]] = sub_i
    lb[:sub_l.shape[0], :sub_l.shape[1]] = sub_l
    if hflip and float(torch.rand(1, generator=g)) < 0.5:
        im, lb = im[:, ::-1], lb[:, ::-1]
    return np.ascontiguousarray(im), np.ascontiguousarray(lb)
