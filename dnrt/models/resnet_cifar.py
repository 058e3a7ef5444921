"""CIFAR ResNet-32 (He et al. 2016, Sec. 4.2), the long-tailed-CIFAR literature's backbone.

A 3x3 stem conv with 16 channels, then 3 stages of 5 basic blocks with 16, 32 and 64 channels (the
first block of stages 2 and 3 halves the map), global average pooling and one linear layer:
6n + 2 = 32 weight layers for n = 5. Shortcuts are identities ("option A"): where a block halves
the map and doubles the width, the shortcut takes every other pixel and pads the new channels with
zeros, so shortcuts add no parameters (464,154 in all for 10 classes).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import DropPath
from torch import nn

from .registry import register_model

WIDTHS = (16, 32, 64)
BLOCKS_PER_STAGE = 5


class PadShortcut(nn.Module):
    """Option-A shortcut: subsample by ``stride`` and zero-pad ``out_chans - in_chans`` channels
    (split evenly on both sides). Shape: (B, C_in, H, W) -> (B, C_out, H / stride, W / stride)."""

    def __init__(self, in_chans: int, out_chans: int, stride: int):
        super().__init__()
        self.stride = stride
        extra = out_chans - in_chans
        self.pad = (extra // 2, extra - extra // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, ::self.stride, ::self.stride]
        return F.pad(x, (0, 0, 0, 0, *self.pad))


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN, plus the shortcut, then ReLU. Each ReLU is its own module, so
    activation surgery gives every call site its own replacement."""

    def __init__(self, in_chans: int, out_chans: int, stride: int = 1, drop_path: float = 0.0):
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, out_chans, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_chans)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_chans, out_chans, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_chans)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.shortcut = (PadShortcut(in_chans, out_chans, stride) if stride != 1 or in_chans != out_chans
                         else nn.Identity())
        self.act2 = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x)))))
        return self.act2(self.drop_path(out) + self.shortcut(x))


class CifarResNet(nn.Module):
    """A CIFAR ResNet of 3 stages (``layer1``-``layer3``) of ``blocks`` basic blocks each.

    ``drop_path``: stochastic depth on the residual branches, rising linearly to this rate at the last
    block (0 = the original network). Shape: (B, in_chans, H, W) -> (B, num_classes).
    """

    def __init__(self, blocks: int = BLOCKS_PER_STAGE, num_classes: int = 10, in_chans: int = 3,
                 widths: tuple[int, ...] = WIDTHS, drop_path: float = 0.0):
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, widths[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.act1 = nn.ReLU(inplace=True)
        total = blocks * len(widths)
        rates = [drop_path * i / max(1, total - 1) for i in range(total)]
        in_chans_ = widths[0]
        for s, width in enumerate(widths):
            stage = []
            for b in range(blocks):
                stride = 2 if s > 0 and b == 0 else 1
                stage.append(BasicBlock(in_chans_, width, stride, rates[s * blocks + b]))
                in_chans_ = width
            self.add_module(f"layer{s + 1}", nn.Sequential(*stage))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[-1], num_classes)
        self.num_stages = len(widths)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.kaiming_normal_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.bn1(self.conv1(x)))
        for s in range(self.num_stages):
            x = getattr(self, f"layer{s + 1}")(x)
        return self.fc(torch.flatten(self.pool(x), 1))


@register_model("resnet32", taps=["layer*.*"], pooling="avg2d",
                note="CIFAR ResNet-32 (He et al. 2016): 3 stages x 5 basic blocks, 16/32/64 channels, "
                     "identity (zero-padding) shortcuts, 0.46 M parameters; the same network at every input size")
def resnet32(num_classes: int, img_size: int, in_chans: int, drop_path: float) -> nn.Module:
    return CifarResNet(BLOCKS_PER_STAGE, num_classes=num_classes, in_chans=in_chans, drop_path=drop_path)
