"""The paper's vision transformers, with the patch size (or stem) adapted to the input size.

ARR taps the output of every transformer block; the response is the class token where the
sequence carries one, else the token mean (docs/design.md §3).
"""

from __future__ import annotations

import timm
from timm.models.pvt_v2 import OverlapPatchEmbed
from torch import nn

from .pvt import TOTAL_STRIDE, PyramidVisionTransformer
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


# The distilled DeiT: class and distillation tokens (tokens 0 and 1), one head each. Trained without
# a teacher, the model's output is the mean of both heads in training and evaluation alike (timm's
# behaviour while distilled_training is off). ARR taps the class token.
@register_model("deit_tiny", taps=["blocks.*"], pooling="cls", family="vit",
                note="timm deit_tiny_distilled_patch16_224 (class + distillation token, output = mean of "
                     "the two heads); patch size 4 at 32 px")
def deit_tiny(num_classes: int, img_size: int, in_chans: int, drop_path: float) -> nn.Module:
    return _timm_vit("deit_tiny_distilled_patch16_224", num_classes, img_size, in_chans, drop_path)


# CaiT's 24 self-attention blocks see patch tokens only (the class token joins in the 2 class-
# attention blocks, which return just that token, shape (B, 1, C)). One pooling fits both:
# mean_tokens is the patch-token mean for `blocks.*` and the class token itself for
# `blocks_token_only.*`.
@register_model("cait_xxs", taps=["blocks.*", "blocks_token_only.*"], pooling="mean_tokens", family="vit",
                note="timm cait_xxs24_224; patch size 4 at 32 px; taps: token mean of the 24 SA blocks, "
                     "class token of the 2 class-attention blocks")
def cait_xxs(num_classes: int, img_size: int, in_chans: int, drop_path: float) -> nn.Module:
    return _timm_vit("cait_xxs24_224", num_classes, img_size, in_chans, drop_path)


@register_model("pvt_tiny", taps=["stages.*.blocks.*"], pooling="mean_tokens", family="pyramid",
                note="PVT v1 Tiny (dnrt.models.pvt): patch 4 then 2/2/2, widths 64-128-320-512, class token "
                     "in stage 4; position embeddings for 224 px, bilinearly resized to other inputs "
                     "(grids 8/4/2/1 at 32 px); needs inputs of at least 32 px")
def pvt_tiny(num_classes: int, img_size: int, in_chans: int, drop_path: float) -> nn.Module:
    if img_size < TOTAL_STRIDE:
        raise ValueError(f"pvt_tiny (PVT v1) down-samples by {TOTAL_STRIDE} and needs inputs of at least "
                         f"{TOTAL_STRIDE} px, got {img_size} px: set dataset.img_size={TOTAL_STRIDE} or more")
    return PyramidVisionTransformer(num_classes=num_classes, in_chans=in_chans, drop_path_rate=drop_path)


@register_model("pvt_v2_b1_cifar", taps=["stages.*.blocks.*"], pooling="mean_tokens", family="pyramid",
                note="timm pvt_v2_b1 (PVT v2: overlapping patch embeddings, conv in the MLP, no class token); "
                     "<=64 px: 3x3 stride-1 stem (was 7x7 stride 4), a 32-16-8-4 pyramid at 32 px")
def pvt_v2_b1_cifar(num_classes: int, img_size: int, in_chans: int, drop_path: float) -> nn.Module:
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
                note="timm tnt_s_legacy_patch16_224 (the original block layout, no qkv bias); patch 16 with "
                     "an inner stride of 4 (4x4 inner pixels) at 224 px, patch 4 with stride 4 (one inner "
                     "pixel per patch) at 32 px")
def tnt_small(num_classes: int, img_size: int, in_chans: int, drop_path: float) -> nn.Module:
    # The pixel embedding is a 7x7 conv of stride first_stride over the whole image, unfolded into
    # ceil(patch / first_stride)^2 inner pixels per patch; below 16 px the stride falls to the patch size.
    first_stride = min(4, patch_size_for(img_size))
    return _timm_vit("tnt_s_legacy_patch16_224", num_classes, img_size, in_chans, drop_path,
                     first_stride=first_stride)
