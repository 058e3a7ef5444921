"""Per-class running mean of aggregated responses, the memory behind ARR (docs/design.md §3).

Samples are taken in batch order, one by one::

    mu_k <- r                        if n_k == 0
    mu_k <- (1 - m) mu_k + m r       otherwise;   n_k += 1;   target(r) = mu_k after the update

Vectorised by *rank within class*: the j-th sample of every class in the batch is processed in
one step, all classes and all features (all ARR taps, concatenated) at once. Within a step no
class appears twice, so gathers and scatters are exact, and the steps run in batch order per
class, so the result equals the one-by-one loop. A batch of B samples over many classes needs
only max-count-per-class steps (about 8 at B=256 with 100 classes); the step boundaries are read
with one host sync per batch, shared with the label-range check.
"""

from __future__ import annotations

import torch
from torch import nn


def check_labels(labels: torch.Tensor, num_classes: int) -> None:
    """Raise a ValueError naming the range when a label is outside [0, num_classes)."""
    if labels.numel():
        lo, hi = (int(v) for v in torch.aminmax(labels))
        if lo < 0 or hi >= num_classes:
            raise ValueError(f"labels must be in [0, {num_classes}), got values in [{lo}, {hi}]")


def seen_classes(count: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Bool [B]: whether each label's class has a stored mean."""
    return count[labels] > 0


def stored_targets(mean: torch.Tensor, count: torch.Tensor, responses: torch.Tensor, labels: torch.Tensor
                   ) -> torch.Tensor:
    """Eval-mode targets [B, D]: the stored class mean, or the response itself for a class never
    seen (so it contributes no loss)."""
    return torch.where(seen_classes(count, labels)[:, None], mean[labels], responses)


def ema_update(mean: torch.Tensor, count: torch.Tensor, responses: torch.Tensor, labels: torch.Tensor,
               momentum: float) -> torch.Tensor:
    """Apply the one-by-one update of ``responses`` [B, D] with ``labels`` [B] to ``mean`` [K, D]
    and ``count`` [K] in place; return each sample's target [B, D] (the mean right after its own
    update)."""
    b = labels.shape[0]
    targets = torch.empty_like(responses)
    if b == 0:
        return targets
    k = mean.shape[0]
    idx = torch.arange(b, device=labels.device)
    # rank of each sample among its class's samples in the batch (0-based), in batch order
    by_class = torch.argsort(labels * b + idx)
    sorted_labels = labels[by_class]
    starts = torch.searchsorted(sorted_labels, sorted_labels, right=False)
    rank = torch.empty_like(labels)
    rank[by_class] = torch.arange(b, device=labels.device) - starts
    by_rank = torch.argsort(rank * b + idx)
    steps = torch.bincount(rank, minlength=1).tolist()  # the one host sync
    seen = count > 0
    # work in rank order, so every step reads and writes contiguous slices; permute back once
    r_sorted, cls_sorted = responses.index_select(0, by_rank), labels[by_rank]
    t_sorted = torch.empty_like(r_sorted)
    offset = 0
    for j, n in enumerate(steps):
        cls, out = cls_sorted[offset:offset + n], t_sorted[offset:offset + n]
        r = r_sorted[offset:offset + n]
        torch.lerp(mean.index_select(0, cls), r, momentum, out=out)  # (1 - m) mu + m r
        if j == 0:
            torch.where(seen[cls, None], out, r, out=out)  # a class's first response initialises it
        mean.index_copy_(0, cls, out)
        offset += n
    targets.index_copy_(0, by_rank, t_sorted)
    count += torch.bincount(labels, minlength=k)
    return targets


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

    def check(self, responses: torch.Tensor, labels: torch.Tensor) -> None:
        if responses.ndim != 2 or responses.shape[1] != self.num_features:
            raise ValueError(
                f"responses must be [B, {self.num_features}], got shape {tuple(responses.shape)}"
            )
        if labels.shape != responses.shape[:1]:
            raise ValueError(f"labels must be [B={responses.shape[0]}], got shape {tuple(labels.shape)}")

    def seen(self, labels: torch.Tensor) -> torch.Tensor:
        """Bool [B]: whether each label's class has a stored mean."""
        return seen_classes(self.count, labels)

    @torch.no_grad()
    def forward(self, responses: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        self.check(responses, labels)
        check_labels(labels, self.num_classes)
        r = responses.detach().to(self.mean.dtype)
        labels = labels.long()
        if not self.training:
            return stored_targets(self.mean, self.count, r, labels)
        return ema_update(self.mean, self.count, r, labels, self.momentum)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, num_features={self.num_features}, momentum={self.momentum}"
