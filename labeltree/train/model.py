"""The network of docs/design.md §2.7: dilated backbone (output stride 8), shared 1x1 reduction, one head
per tree classifier (bottleneck + 1x1 logits + hybrid upsampling). Heads come from the tree, so a
changed tree changes the network without code changes.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from labeltree.errors import LabeltreeError
from labeltree.fsutil import MAX_MODEL_BYTES, check_input
from labeltree.train.config import ModelCfg


def _conv_bn_relu(cin: int, cout: int, k: int = 3, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    pad = dilation * (k // 2)
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, pad, dilation=dilation, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class TinyBackbone(nn.Module):
    """A few conv layers down to stride 8: fast enough for CPU tests and the demo."""

    def __init__(self, channels: tuple[int, int, int, int]):
        super().__init__()
        c0, c1, c2, c3 = channels
        self.layers = nn.Sequential(
            _conv_bn_relu(3, c0, stride=2), _conv_bn_relu(c0, c1, stride=2), _conv_bn_relu(c1, c1),
            _conv_bn_relu(c1, c2, stride=2), _conv_bn_relu(c2, c3, dilation=2), _conv_bn_relu(c3, c3, dilation=4))
        self.out_channels = c3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def _dilate_basic_layer(layer: nn.Sequential, dilation: int) -> None:
    """Turn a stride-2 BasicBlock stage into a dilated stride-1 one (torchvision refuses dilation>1)."""
    for i, block in enumerate(layer):
        first = dilation // 2 if i == 0 else dilation  # like torchvision's Bottleneck: previous dilation first
        for conv, d in ((block.conv1, max(first, 1)), (block.conv2, dilation)):
            conv.stride = (1, 1)
            conv.dilation = (d, d)
            conv.padding = (d, d)
        if block.downsample is not None:
            block.downsample[0].stride = (1, 1)


class ResNetBackbone(nn.Module):
    def __init__(self, arch: str):
        super().__init__()
        from torchvision import models

        if arch == "resnet50":
            net = models.resnet50(weights=None, replace_stride_with_dilation=[False, True, True])
            self.out_channels = 2048
        elif arch == "resnet18":
            net = models.resnet18(weights=None)
            _dilate_basic_layer(net.layer3, 2)
            _dilate_basic_layer(net.layer4, 4)
            self.out_channels = 512
        else:
            raise ValueError(arch)
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))

    def load_torchvision(self, path: Path) -> None:
        """Load a torchvision ImageNet state dict (fc.* dropped); name mismatches are an error."""
        try:
            sd = torch.load(check_input(path, "pretrained weights", MAX_MODEL_BYTES), map_location="cpu",
                            weights_only=True)
        except LabeltreeError:
            raise
        except Exception as e:  # noqa: BLE001 - any unpickling problem is bad input
            raise LabeltreeError(f"cannot read a state dict ({e})", path) from None
        if isinstance(sd, dict) and "state_dict" in sd:
            sd = sd["state_dict"]
        mapped = {}
        for k, v in sd.items():
            if k.startswith("fc."):
                continue
            for a, b in (("conv1.", "stem.0."), ("bn1.", "stem.1.")):
                if k.startswith(a):
                    k = b + k[len(a):]
            mapped[k] = v
        missing, unexpected = self.load_state_dict(mapped, strict=False)
        if missing or unexpected:
            raise LabeltreeError(f"not a torchvision state dict of this backbone: {len(missing)} missing keys "
                                 f"(e.g. {missing[:2]}), {len(unexpected)} unexpected (e.g. {unexpected[:2]})", path)


class Bottleneck(nn.Module):
    """ResNet bottleneck with identity shortcut (width -> mid -> width)."""

    def __init__(self, width: int, mid: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(width, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
            nn.Conv2d(mid, mid, 3, padding=1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
            nn.Conv2d(mid, width, 1, bias=False), nn.BatchNorm2d(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.body(x))


def _bilinear_kernel(channels: int, k: int) -> torch.Tensor:
    f = (k + 1) // 2
    c = f - 1 if k % 2 == 1 else f - 0.5
    og = torch.arange(k, dtype=torch.float32)
    filt = 1 - (og - c).abs() / f
    kernel = filt[:, None] * filt[None, :]
    w = torch.zeros(channels, channels, k, k)
    w[range(channels), range(channels)] = kernel
    return w


def he_init_transposed(up: nn.ConvTranspose2d) -> None:
    """The authors' upsampler init (TF-slim variance_scaling_initializer: factor 2, fan in, truncated normal
    with stddev sqrt(1.3 * 2 / fan_in) cut at 2 stddev); TF counts a transposed kernel's fan in as
    k * k * output channels. Bias zero."""
    k = up.kernel_size[0] * up.kernel_size[1]
    std = math.sqrt(1.3 * 2.0 / (k * up.out_channels))
    nn.init.trunc_normal_(up.weight, std=std, a=-2 * std, b=2 * std)
    if up.bias is not None:
        nn.init.zeros_(up.bias)


class Head(nn.Module):
    """Bottleneck -> 1x1 logits at 1/8 -> transposed conv x2 (`upsample_init`) -> bilinear to input size."""

    def __init__(self, width: int, mid: int, n_classes: int, upsample_init: str = "bilinear"):
        super().__init__()
        self.block = Bottleneck(width, mid)
        self.logits = nn.Conv2d(width, n_classes, 1)
        he = upsample_init == "he"
        self.up = nn.ConvTranspose2d(n_classes, n_classes, 4, stride=2, padding=1, bias=he)
        with torch.no_grad():
            if he:
                he_init_transposed(self.up)
            else:
                self.up.weight.copy_(_bilinear_kernel(n_classes, 4))

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        y = self.up(self.logits(self.block(x)))
        return F.interpolate(y, size=size, mode="bilinear", align_corners=False)


class SegNet(nn.Module):
    """Backbone + shared reduction + one head per entry of `head_sizes` (classifier order)."""

    def __init__(self, cfg: ModelCfg, head_sizes: list[int]):
        super().__init__()
        if cfg.backbone == "tiny":
            self.backbone: nn.Module = TinyBackbone(cfg.tiny_channels)
        else:
            self.backbone = ResNetBackbone(cfg.backbone)
        if cfg.pretrained:
            if cfg.backbone == "tiny":
                raise LabeltreeError("model.pretrained: the tiny backbone has no ImageNet weights; "
                                     "use backbone resnet18/resnet50 or drop model.pretrained")
            self.backbone.load_torchvision(Path(cfg.pretrained).expanduser())
        elif cfg.backbone != "tiny":
            warnings.warn(f"{cfg.backbone}: no model.pretrained given, starting from random weights "
                          "(pass --set model.pretrained=PATH to a torchvision state dict)", stacklevel=2)
        self.reduce = _conv_bn_relu(self.backbone.out_channels, cfg.width, k=1)
        self.heads = nn.ModuleList(Head(cfg.width, cfg.bottleneck, n, cfg.upsample_init) for n in head_sizes)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = cfg.bn_momentum

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        size = (x.shape[-2], x.shape[-1])
        f = self.reduce(self.backbone(x))
        return [h(f, size) for h in self.heads]


def build_model(cfg: ModelCfg, head_sizes: list[int]) -> SegNet:
    return SegNet(cfg, head_sizes)
