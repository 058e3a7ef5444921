"""Generalized divisive normalization (GDN; Ballé, Laparra and Simoncelli, ICLR 2016).

    y_i = x_i / sqrt(beta_i + sum_j gamma_ij x_j^2)

beta > 0 and gamma >= 0 are kept by a lower-bounded square-root reparameterisation (the form of
Ballé et al.'s later compression models): the module stores ``v = sqrt(p + pedestal)`` and uses
``p = max(v, sqrt(floor + pedestal))^2 - pedestal``. The square root evens out the gradient scale
of small and large values; the tiny pedestal keeps the square root's slope finite near 0; the
bound's gradient lets an optimiser step move ``v`` back up off the bound but never further below it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

PEDESTAL = 2.0 ** -36  # (2^-18)^2
BETA_MIN = 1e-6


class _LowerBound(torch.autograd.Function):
    """max(x, bound) whose gradient also flows below the bound when descent would raise x: a
    parameter stuck on the bound (gamma's zero off-diagonal at init) can still leave it."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, bound: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.bound = bound
        return x.clamp_min(bound)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        pass_through = (x >= ctx.bound) | (grad < 0)
        return grad * pass_through.to(grad.dtype), None


def _bounded(v: torch.Tensor, floor: float) -> torch.Tensor:
    """Effective parameter ``max(v, sqrt(floor + pedestal))^2 - pedestal`` (>= floor)."""
    return _LowerBound.apply(v, (floor + PEDESTAL) ** 0.5).square() - PEDESTAL


def _raw(p: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`_bounded` for values at or above the floor."""
    return torch.sqrt(p + PEDESTAL)


class GDN(nn.Module):
    """Generalized divisive normalization over the channel axis.

    Args:
        num_features: C, the size of the channel axis.
        channel_dim: ``-1`` for tokens (B, N, C) or (B, C); ``1`` for NCHW maps (B, C, ...).
        beta_init: initial beta (every channel), > 0.
        gamma_init: initial diagonal of gamma (off-diagonal 0), >= 0.

    Attributes ``beta`` [C] and ``gamma`` [C, C] are the effective (reparameterised) values;
    ``beta_raw`` / ``gamma_raw`` are the stored parameters. Shape: the output has the input's shape.
    """

    def __init__(self, num_features: int, channel_dim: int = -1, beta_init: float = 1.0, gamma_init: float = 0.1):
        super().__init__()
        if channel_dim not in (1, -1):
            raise ValueError(f"GDN channel_dim must be 1 (NCHW) or -1 (tokens), got {channel_dim!r}")
        if int(num_features) < 1:
            raise ValueError(f"GDN num_features must be >= 1, got {num_features!r}")
        if beta_init <= 0 or gamma_init < 0:
            raise ValueError(f"GDN needs beta_init > 0 and gamma_init >= 0, got {beta_init}, {gamma_init}")
        self.num_features = int(num_features)
        self.channel_dim = channel_dim
        self.beta_raw = nn.Parameter(torch.empty(self.num_features))
        self.gamma_raw = nn.Parameter(torch.empty(self.num_features, self.num_features))
        self.set_params(torch.full((self.num_features,), float(beta_init)),
                        gamma_init * torch.eye(self.num_features))

    @property
    def beta(self) -> torch.Tensor:
        """Effective beta [C], >= BETA_MIN."""
        return _bounded(self.beta_raw, BETA_MIN)

    @property
    def gamma(self) -> torch.Tensor:
        """Effective gamma [C, C] (row i weighs x_j^2 in channel i's denominator), >= 0."""
        return _bounded(self.gamma_raw, 0.0)

    @torch.no_grad()
    def set_params(self, beta: torch.Tensor, gamma: torch.Tensor) -> None:
        """Store effective ``beta`` [C] (> 0) and ``gamma`` [C, C] (>= 0) through the reparameterisation."""
        c = self.num_features
        if tuple(beta.shape) != (c,) or tuple(gamma.shape) != (c, c):
            raise ValueError(f"GDN with C={c} needs beta [{c}] and gamma [{c}, {c}], "
                             f"got {tuple(beta.shape)} and {tuple(gamma.shape)}")
        if bool((beta < BETA_MIN).any()) or bool((gamma < 0).any()):
            raise ValueError(f"GDN needs beta >= {BETA_MIN} and gamma >= 0")
        self.beta_raw.copy_(_raw(beta.to(self.beta_raw)))
        self.gamma_raw.copy_(_raw(gamma.to(self.gamma_raw)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim < 2 or x.shape[self.channel_dim] != self.num_features:
            raise ValueError(
                f"GDN expected {self.num_features} features on dim {self.channel_dim}, got shape {tuple(x.shape)}"
            )
        beta, gamma = self.beta.to(x.dtype), self.gamma.to(x.dtype)
        if self.channel_dim == -1:
            norm = F.linear(x * x, gamma, beta)
        elif x.ndim == 4:  # a 1x1 convolution over the squared map
            norm = F.conv2d(x * x, gamma[:, :, None, None], beta)
        else:  # (B, C, ...) of another rank
            norm = torch.einsum("ij,bj...->bi...", gamma, x * x) + beta.view(-1, *([1] * (x.ndim - 2)))
        return x * torch.rsqrt(norm)

    def extra_repr(self) -> str:
        return f"{self.num_features}, channel_dim={self.channel_dim}"
