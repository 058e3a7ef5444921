"""Response-Adaptive Activation (RAA), docs/design.md §3.

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
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)


class _TokenRAAGelu(torch.autograd.Function):
    """Fused RAA_gelu for the ``token`` variant: y = x * Phi(x + w.x + b).

    Eager autograd of that expression materialises z, Phi(z), the product and each gradient
    separately. Here Phi comes from the vectorised ``erf`` kernel (``special.ndtr`` is about twice
    as slow on the CPU), buffers are reused in place, and the backward recomputes only phi(z).
    Saved: x, w, the per-token shift s and Phi(z).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, channel_dim: int) -> torch.Tensor:
        s = _token_shift(x, weight, bias, channel_dim)
        cdf = torch.add(x, s).mul_(_INV_SQRT_2).erf_().add_(1.0).mul_(0.5)  # Phi(z)
        ctx.save_for_backward(x, weight, s, cdf)
        ctx.channel_dim = channel_dim
        return x * cdf

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight, s, cdf = ctx.saved_tensors
        cd = ctx.channel_dim
        grad_z = torch.add(x, s).square_().mul_(-0.5).exp_().mul_(x).mul_(grad)  # g * x * phi(z) * sqrt(2 pi)
        grad_x = torch.mul(cdf, grad).add_(grad_z, alpha=_INV_SQRT_2PI)
        grad_s = grad_z.sum(cd, keepdim=True).mul_(_INV_SQRT_2PI)  # one per token / position
        w_shape = [1] * x.ndim
        w_shape[cd] = -1
        grad_x.addcmul_(grad_s, weight.view(w_shape))
        if cd == -1:
            grad_w = grad_s.reshape(1, -1).mm(x.reshape(-1, x.shape[-1])).view(-1)
        else:  # per image: [C, HW] @ [HW, 1], summed over the batch (bmm is ~6x faster than einsum here)
            b, c = x.shape[:2]
            grad_w = torch.bmm(x.reshape(b, c, -1), grad_s.reshape(b, -1, 1)).sum(0).view(-1)
        return grad_x, grad_w, grad_s.sum().view(1), None


def _token_shift(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, channel_dim: int) -> torch.Tensor:
    """s = w.x + b per token (channel_dim=-1: [..., 1]) or per position (channel_dim=1: [B, 1, ...])."""
    if torch.compiler.is_compiling():
        # a multiply-reduce the compiler fuses with the activation around it (forward and backward);
        # a BLAS matrix-vector call would be an opaque kernel with its own passes over x
        w_shape = [1] * x.ndim
        w_shape[channel_dim] = -1
        return (x * weight.view(w_shape).to(x.dtype)).sum(channel_dim, keepdim=True) + bias.to(x.dtype)
    if channel_dim == -1:
        return F.linear(x, weight.unsqueeze(0), bias)
    if x.ndim == 4:  # a 1x1 convolution with one output channel
        return F.conv2d(x, weight.view(1, -1, 1, 1).to(x.dtype), bias.to(x.dtype))
    return torch.einsum("bc...,c->b...", x, weight).unsqueeze(1) + bias


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
        if self.variant == "token":
            return _token_shift(x, self.weight, self.bias, self.channel_dim)
        if self.channel_dim == -1:
            return F.linear(x, self.weight, self.bias)
        return torch.einsum("bc...,dc->bd...", x, self.weight) + self.bias.view(-1, *([1] * (x.ndim - 2)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.base == "gelu" and self.variant == "token" and not torch.compiler.is_compiling():
            if x.shape[self.channel_dim] != self.num_features:
                self.shift(x)  # raises the named shape error
            return _TokenRAAGelu.apply(x, self.weight, self.bias, self.channel_dim)
        z = x + self.shift(x)
        if self.base == "relu":
            return F.relu(z)
        return x * torch.special.ndtr(z)  # under torch.compile this fuses into one kernel

    def extra_repr(self) -> str:
        return f"{self.num_features}, base={self.base}, channel_dim={self.channel_dim}, variant={self.variant}"
