"""PVT v1 (Pyramid Vision Transformer, Wang et al. 2021) on timm's layers; timm ships only PVT v2.

Four stages, each: a non-overlapping patch embedding (conv, kernel = stride = patch size, then
LayerNorm), a learned position embedding, and blocks of spatial-reduction attention (keys and
values from a conv with kernel = stride = SR ratio plus LayerNorm) and an MLP. Stage 4 prepends a
class token; the head reads it after a final LayerNorm.

The position embeddings are sized for ``pos_img_size`` (224 px: grids 56/28/14/7) whatever the
input; other input sizes interpolate them bilinearly, as the reference definition does when it
is run on 32-px images (grids 8/4/2/1).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from timm.layers import DropPath, Mlp, resample_abs_pos_embed, trunc_normal_
from timm.models.pvt_v2 import Attention as SpatialReductionAttention
from torch import nn

# Total down-sampling: patch 4, then 2, 2, 2. Smaller inputs leave nothing for the last stages.
TOTAL_STRIDE = 32


class PatchEmbed(nn.Module):
    """(B, C, H, W) -> tokens (B, H/p * W/p, D) and their grid (H/p, W/p)."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        x = self.proj(x)
        grid = (x.shape[2], x.shape[3])
        return self.norm(x.flatten(2).transpose(1, 2)), grid


class Block(nn.Module):
    """Pre-norm transformer block with spatial-reduction attention: (B, N, D) -> (B, N, D)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, sr_ratio: int, drop_path: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = SpatialReductionAttention(dim, num_heads=num_heads, sr_ratio=sr_ratio, qkv_bias=True)
        self.drop_path1 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, hidden_features=int(dim * mlp_ratio), act_layer=nn.GELU)
        self.drop_path2 = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        x = x + self.drop_path1(self.attn(self.norm1(x), grid))
        return x + self.drop_path2(self.mlp(self.norm2(x)))


class Stage(nn.Module):
    """Patch embedding, position embedding (+ class token in the last stage) and blocks."""

    def __init__(self, patch_size: int, in_chans: int, dim: int, pos_grid: int, depth: int, num_heads: int,
                 mlp_ratio: float, sr_ratio: int, drop_path: Sequence[float], cls_token: bool):
        super().__init__()
        self.patch_embed = PatchEmbed(patch_size, in_chans, dim)
        self.pos_grid = (pos_grid, pos_grid)
        self.num_prefix_tokens = int(cls_token)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if cls_token else None
        self.pos_embed = nn.Parameter(torch.zeros(1, pos_grid * pos_grid + self.num_prefix_tokens, dim))
        self.blocks = nn.ModuleList(Block(dim, num_heads, mlp_ratio, sr_ratio, dp) for dp in drop_path)

    def pos_embed_for(self, grid: tuple[int, int]) -> torch.Tensor:
        """(1, prefix + H*W, D): the stored embedding, bilinearly resized to ``grid`` if it differs."""
        return resample_abs_pos_embed(self.pos_embed, list(grid), list(self.pos_grid),
                                      num_prefix_tokens=self.num_prefix_tokens, interpolation="bilinear",
                                      antialias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, D, H', W') or, with a class token, (B, 1 + H'W', D)."""
        x, grid = self.patch_embed(x)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = x + self.pos_embed_for(grid)
        for block in self.blocks:
            x = block(x, grid)
        if self.cls_token is not None:
            return x
        return x.transpose(1, 2).reshape(x.shape[0], -1, *grid)


class PyramidVisionTransformer(nn.Module):
    """PVT v1: images (B, C, H, W), H and W >= 32 -> logits (B, num_classes) from the class token."""

    def __init__(self, num_classes: int = 1000, in_chans: int = 3, pos_img_size: int = 224,
                 patch_sizes: Sequence[int] = (4, 2, 2, 2), embed_dims: Sequence[int] = (64, 128, 320, 512),
                 num_heads: Sequence[int] = (1, 2, 5, 8), mlp_ratios: Sequence[float] = (8, 8, 4, 4),
                 depths: Sequence[int] = (2, 2, 2, 2), sr_ratios: Sequence[int] = (8, 4, 2, 1),
                 drop_path_rate: float = 0.0):
        super().__init__()
        dpr = torch.linspace(0, drop_path_rate, sum(depths)).tolist()  # stochastic depth grows with depth
        stages, grid, chans, start = [], pos_img_size, in_chans, 0
        for i, depth in enumerate(depths):
            grid //= patch_sizes[i]
            stages.append(Stage(patch_sizes[i], chans, embed_dims[i], grid, depth, num_heads[i], mlp_ratios[i],
                                sr_ratios[i], dpr[start:start + depth], cls_token=i == len(depths) - 1))
            chans, start = embed_dims[i], start + depth
        self.stages = nn.ModuleList(stages)
        self.norm = nn.LayerNorm(embed_dims[-1], eps=1e-6)
        self.head = nn.Linear(embed_dims[-1], num_classes) if num_classes else nn.Identity()
        self.apply(self._init_weights)
        for stage in self.stages:
            trunc_normal_(stage.pos_embed, std=0.02)
            if stage.cls_token is not None:
                trunc_normal_(stage.cls_token, std=0.02)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> normalised last-stage tokens (B, 1 + H/32 * W/32, D)."""
        if min(x.shape[-2:]) < TOTAL_STRIDE:
            raise ValueError(f"PVT v1 down-samples by {TOTAL_STRIDE}; got {tuple(x.shape[-2:])}-px inputs")
        for stage in self.stages:
            x = stage(x)
        return self.norm(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x)[:, 0])
