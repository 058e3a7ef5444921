"""The paper's vision transformers, with the patch size adapted to the input size."""

from __future__ import annotations

import timm
from torch import nn

from .registry import patch_size_for, register_model


@register_model("vit_tiny", taps=["blocks.*"], pooling="cls", family="vit",
                note="timm vit_tiny_patch16_224; patch size 4 at 32 px (an 8x8 token grid)")
def vit_tiny(num_classes: int, img_size: int, in_chans: int, drop_path: float) -> nn.Module:
    return timm.create_model("vit_tiny_patch16_224", num_classes=num_classes, img_size=img_size,
                             patch_size=patch_size_for(img_size), in_chans=in_chans,
                             drop_path_rate=drop_path, pretrained=False)
