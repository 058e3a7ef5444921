"""Response-Adaptive Activation (RAA), DESIGN §3.

    s(x) = w . x + b                     one scalar per token / spatial position
    RAA_gelu(x) = x * Phi(x + s(x))      Phi = standard normal CDF (exact erf form)
    RAA_relu(x) = max(0, x + s(x))

With w = 0 and b = 0 (the initialisation) RAA equals GELU / ReLU exactly.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

BASES = ("gelu", "relu")
VARIANTS = ("token", "simple", "elementwise")
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


class _ShiftedGelu(torch.autograd.Function):
    """y = x * Phi(z). One saved pair and a hand-written backward: eager autograd of
    `x * ndtr(z)` launches about twice as many element-wise kernels."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, z)
        return x * torch.special.ndtr(z)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, z = ctx.saved_tensors
        grad_x = grad * torch.special.ndtr(z)
        grad_z = grad * x * torch.exp(-0.5 * z * z) * _INV_SQRT_2PI
        return grad_x, grad_z


def shifted_gelu(x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """x * Phi(z), elementwise; `z` broadcasts against `x`."""
    if torch.compiler.is_compiling():
        return x * torch.special.ndtr(z)  # let the compiler fuse and differentiate it
    return _ShiftedGelu.apply(x, z.expand_as(x))


class RAA(nn.Module):
    """Response-adaptive activation.

    Args:
        num_features: C, the size of the channel axis.
        base: ``"gelu"`` or ``"relu"``.
        channel_dim: ``-1`` for tokens (B, N, C) or (B, C); ``1`` for NCHW feature maps.
        variant: ``"token"`` (s = w.x + b, one shift per token; the paper's RAA),
            ``"simple"`` (one learnable scalar shift per layer) or
            ``"elementwise"`` (s = W x + b, W in R^{CxC}: one shift per channel).

    Shape: any tensor whose ``channel_dim`` axis has size C; the output has the input's shape.
    """

    def __init__(self, num_features: int, base: str = "gelu", channel_dim: int = -1, variant: str = "token"):
        super().__init__()
        if base not in BASES:
            raise ValueError(f"RAA base must be one of {BASES}, got {base!r}")
        if variant not in VARIANTS:
            raise ValueError(f"RAA variant must be one of {VARIANTS}, got {variant!r}")
        if channel_dim not in (1, -1):
            raise ValueError(f"RAA channel_dim must be 1 (NCHW) or -1 (tokens), got {channel_dim!r}")
        if int(num_features) < 1:
            raise ValueError(f"RAA num_features must be >= 1, got {num_features!r}")
        self.num_features = int(num_features)
        self.base = base
        self.channel_dim = channel_dim
        self.variant = variant
        if variant == "token":
            self.weight = nn.Parameter(torch.zeros(self.num_features))
            self.bias = nn.Parameter(torch.zeros(1))
        elif variant == "simple":
            self.weight = None
            self.bias = nn.Parameter(torch.zeros(1))
        else:
            self.weight = nn.Parameter(torch.zeros(self.num_features, self.num_features))
            self.bias = nn.Parameter(torch.zeros(self.num_features))

    def shift(self, x: torch.Tensor) -> torch.Tensor:
        """s(x), broadcastable to x: (..., 1) for ``token``, (1,) for ``simple``, x's shape for
        ``elementwise`` (the channel axis where ``channel_dim`` says)."""
        if x.shape[self.channel_dim] != self.num_features:
            raise ValueError(
                f"RAA expected {self.num_features} features on dim {self.channel_dim}, got shape {tuple(x.shape)}"
            )
        if self.variant == "simple":
            return self.bias
        if self.channel_dim == -1:
            w = self.weight.unsqueeze(0) if self.variant == "token" else self.weight
            return F.linear(x, w, self.bias)
        if self.variant == "token":  # NCHW: 1x1 "conv" with one output channel
            return torch.einsum("bc...,c->b...", x, self.weight).unsqueeze(1) + self.bias
        return torch.einsum("bc...,dc->bd...", x, self.weight) + self.bias.view(-1, *([1] * (x.ndim - 2)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.shift(x)
        if self.base == "relu":
            return F.relu(x + s)
        return shifted_gelu(x, x + s)

    def extra_repr(self) -> str:
        return f"{self.num_features}, base={self.base}, channel_dim={self.channel_dim}, variant={self.variant}"
