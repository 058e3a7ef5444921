"""Per-class running mean of aggregated responses, the memory behind ARR (DESIGN §3).

Samples are taken in batch order, one by one::

    mu_k <- r                        if n_k == 0
    mu_k <- (1 - m) mu_k + m r       otherwise;   n_k += 1;   target(r) = mu_k after the update

Closed form used here, with j the 1-based rank of a sample among its class's samples in the batch
and mu0 the stored mean (or, for a class unseen so far, the class's first response in the batch,
which makes the n_k == 0 rule a special case):

    target_j = (1-m)^j mu0 + m * sum_{i<=j} (1-m)^(j-i) r_i

The sum is a (B x B) masked weight matrix times the (B x d) responses: one matmul, no per-sample
loop and no host-device sync beyond the single label-range check.
"""

from __future__ import annotations

import torch
from torch import nn


class ClassResponseMemory(nn.Module):
    """Running per-class mean response.

    Args:
        num_classes: K.
        num_features: d, the size of an aggregated response.
        momentum: m in (0, 1].

    Call: ``memory(responses[B, d], labels[B]) -> targets[B, d]`` (detached). Train mode updates
    the memory; eval mode only reads it, and a class never seen gets its own response as target
    (zero loss). Buffers: ``mean[K, d]``, ``count[K]``.
    """

    def __init__(self, num_classes: int, num_features: int, momentum: float = 0.1):
        super().__init__()
        if not 0.0 < momentum <= 1.0:
            raise ValueError(f"ARR momentum must be in (0, 1], got {momentum}")
        if num_classes < 1 or num_features < 1:
            raise ValueError(f"need num_classes >= 1 and num_features >= 1, got {num_classes}, {num_features}")
        self.num_classes = int(num_classes)
        self.num_features = int(num_features)
        self.momentum = float(momentum)
        self.register_buffer("mean", torch.zeros(num_classes, num_features))
        self.register_buffer("count", torch.zeros(num_classes, dtype=torch.long))

    def _check(self, responses: torch.Tensor, labels: torch.Tensor) -> None:
        if responses.ndim != 2 or responses.shape[1] != self.num_features:
            raise ValueError(
                f"responses must be [B, {self.num_features}], got shape {tuple(responses.shape)}"
            )
        if labels.shape != responses.shape[:1]:
            raise ValueError(f"labels must be [B={responses.shape[0]}], got shape {tuple(labels.shape)}")
        if labels.numel():
            lo, hi = torch.aminmax(labels)
            lo, hi = int(lo), int(hi)  # one sync per batch, so a bad label never becomes a device assert
            if lo < 0 or hi >= self.num_classes:
                raise ValueError(f"labels must be in [0, {self.num_classes}), got values in [{lo}, {hi}]")

    def seen(self, labels: torch.Tensor) -> torch.Tensor:
        """Bool [B]: whether each label's class has a stored mean."""
        return self.count[labels] > 0

    @torch.no_grad()
    def forward(self, responses: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        self._check(responses, labels)
        r = responses.detach().to(self.mean.dtype)
        labels = labels.long()
        if not self.training:
            return torch.where(self.seen(labels)[:, None], self.mean[labels], r)
        return self._update(r, labels)

    def _update(self, r: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        b = r.shape[0]
        m = self.momentum
        idx = torch.arange(b, device=r.device)
        same = labels[:, None] == labels[None, :]
        earlier_or_self = same & (idx[None, :] <= idx[:, None])  # [a, i]: i is a's class-mate, i <= a
        rank = earlier_or_self.sum(1)  # j, 1-based
        first = torch.where(same, idx[None, :], b).amin(1)
        mu0 = torch.where(self.seen(labels)[:, None], self.mean[labels], r[first])
        # weight of r_i in target_a: m (1-m)^(j_a - j_i)
        gap = (rank[:, None] - rank[None, :]).clamp(min=0).to(r.dtype)
        weights = torch.where(earlier_or_self, m * (1.0 - m) ** gap, torch.zeros((), dtype=r.dtype, device=r.device))
        targets = (1.0 - m) ** rank.to(r.dtype)[:, None] * mu0 + weights @ r

        batch_count = torch.zeros_like(self.count).index_add_(0, labels, torch.ones_like(labels))
        is_last = rank == batch_count[labels]
        last_targets = torch.zeros_like(self.mean).index_add_(0, labels, targets * is_last[:, None].to(r.dtype))
        self.mean.copy_(torch.where(batch_count[:, None] > 0, last_targets, self.mean))
        self.count.add_(batch_count)
        return targets

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, num_features={self.num_features}, momentum={self.momentum}"
