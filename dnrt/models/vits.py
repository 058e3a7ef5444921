"""The paper's vision transformers, with the patch size (or stem) adapted to the input size.

ARR taps the output of every transformer block; the response is the class token where the
sequence carries one, else the token mean (DESIGN §3).
"""

from __future__ import annotations

import timm
from timm.models.pvt_v2 import OverlapPatchEmbed
from torch import nn

from .registry import patch_size_for, register_model

SMALL_INPUT_MAX = 64  # at or below: small-input stem for the pyramid model (PVT)


def _timm_vit(timm_name: str, num_classes: int, img_size: int, in_chans: int, drop_path: float,
              **extra) -> nn.Module:
    """A timm ViT-style model with its patch size from :func:`patch_size_for`."""
    return timm.create_model(timm_name, num_classes=num_classes, img_size=img_size,
                             patch_size=patch_size_for(img_size), in_chans=in_chans,
                             drop_path_rate=drop_path, pretrained=False, **extra)


@register_model("vit_tiny", taps=["blocks.*"], pooling="cls", family="vit",
                note="timm vit_tiny_patch16_224; patch size 4 at 32 px (an 8x8 token grid)")
def vit_tiny(num_classes: int, img_size: int, in_chans: int, drop_path: float) -> nn.Module:
    return _timm_vit("vit_tiny_patch16_224", num_classes, img_size, in_chans, drop_path)


@register_model("deit_tiny", taps=["blocks.*"], pooling="cls", family="vit",
                note="timm deit_tiny_patch16_224 (no distillation token); patch size 4 at 32 px")
def deit_tiny(num_classes: int, img_size: int, in_chans: int, drop_path: float) -> nn.Module:
    return _timm_vit("deit_tiny_patch16_224", num_classes, img_size, in_chans, drop_path)


# CaiT's 24 self-attention blocks see patch tokens only (the class token joins in the 2 class-
# attention blocks, which return just that token, shape (B, 1, C)). One pooling fits both:
# mean_tokens is the patch-token mean for `blocks.*` and the class token itself for
# `blocks_token_only.*`.
@register_model("cait_xxs", taps=["blocks.*", "blocks_token_only.*"], pooling="mean_tokens", family="vit",
                note="timm cait_xxs24_224; patch size 4 at 32 px; taps: token mean of the 24 SA blocks, "
                     "class token of the 2 class-attention blocks")
def cait_xxs(num_classes: int, img_size: int, in_chans: int, drop_path: float) -> nn.Module:
    return _timm_vit("cait_xxs24_224", num_classes, img_size, in_chans, drop_path)


@register_model("pvt_tiny", taps=["stages.*.blocks.*"], pooling="mean_tokens", family="vit",
                note="timm pvt_v2_b1 stands in for PVT(v1)-Tiny (timm has no v1): same depths 2-2-2-2, "
                     "widths 64-128-320-512, heads, MLP ratios and SR ratios, but v2's overlapping patch "
                     "embeddings, conv positional encoding in the MLP and no class token; "
                     "<=64 px: 3x3 stride-1 stem (was 7x7 stride 4), a 32-16-8-4 pyramid at 32 px")
def pvt_tiny(num_classes: int, img_size: int, in_chans: int, drop_path: float) -> nn.Module:
    model = timm.create_model("pvt_v2_b1", num_classes=num_classes, in_chans=in_chans,
                              drop_path_rate=drop_path, pretrained=False)
    if img_size <= SMALL_INPUT_MAX:
        # a stride-4 stem would leave a 1x1 last stage at 32 px and SR-reduce stage 1 to one key
        dim = model.patch_embed.proj.out_channels
        model.patch_embed = OverlapPatchEmbed(patch_size=3, stride=1, in_chans=in_chans, embed_dim=dim)
    return model


# TNT blocks return (pixel_embed, patch_embed); pool_response takes the last element, the outer
# (patch-level) sequence, whose token 0 is the class token: the same response as a ViT block.
@register_model("tnt_small", taps=["blocks.*"], pooling="cls", family="vit",
                note="timm tnt_s_patch16_224; patch size 4 at 32 px with an inner stride of 1, so each "
                     "patch keeps TNT's 4x4 inner pixel grid")
def tnt_small(num_classes: int, img_size: int, in_chans: int, drop_path: float) -> nn.Module:
    # first_stride sets the inner pixel grid: patch 16 / stride 4 at 224 px, patch 4 / stride 1 at 32 px
    first_stride = max(1, patch_size_for(img_size) // 4)
    return _timm_vit("tnt_s_patch16_224", num_classes, img_size, in_chans, drop_path,
                     first_stride=first_stride)
