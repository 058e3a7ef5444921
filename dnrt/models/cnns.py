"""The paper's CNNs, with a CIFAR stem below 64 px."""

from __future__ import annotations

import timm
from torch import nn

from .registry import register_model


@register_model("resnet18", taps=["layer*.*"], pooling="avg2d",
                note="timm resnet18; below 64 px a CIFAR stem: 3x3 conv, stride 1, no max-pool")
def resnet18(num_classes: int, img_size: int, in_chans: int, drop_path: float) -> nn.Module:
    model = timm.create_model("resnet18", num_classes=num_classes, in_chans=in_chans,
                              drop_path_rate=drop_path, pretrained=False)
    if img_size <= 64:
        model.conv1 = nn.Conv2d(in_chans, 64, kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    return model
