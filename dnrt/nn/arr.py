"""Aggregated Response Regularization (ARR), docs/design.md §3.

    L_arr = mean_taps mean_{samples, features} |r - target(r)|,   loss = CE + lambda * L_arr

``average='width'`` is the authors' module: the taps are grouped by response width d, each group's
responses concatenated (one L1 mean per group), and the groups averaged. It equals the mean over taps
whenever every width has the same number of taps (ViTs, ResNet-18, ResNet-32).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch import nn

from .memory import ClassResponseMemory, check_labels, ema_update, stored_targets
from .taps import ResponseTaps


def gather_in_rank_order(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """All ranks' ``x`` (first axis may differ per rank) concatenated in rank order, and the
    offset of this rank's rows. Without an initialised process group: ``(x, 0)``."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x, 0
    world, rank = dist.get_world_size(), dist.get_rank()
    size = torch.tensor([x.shape[0]], device=x.device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    sizes = [int(s) for s in sizes]
    padded = x.new_zeros((max(sizes), *x.shape[1:]))
    padded[: x.shape[0]] = x
    parts = [torch.zeros_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded.contiguous())
    return torch.cat([p[:n] for p, n in zip(parts, sizes)]), sum(sizes[:rank])


AVERAGES = ("tap", "width")
MEMORIES = ("global", "rank")


class ARR(nn.Module):
    """ARR over the tapped layers of ``model``.

    Args:
        model: the network whose layers are tapped (hooks are registered on it).
        num_classes: K.
        taps: dotted glob patterns of module paths (``blocks.*``, ``layer*.*``).
        pooling: ``cls``, ``mean_tokens``, ``avg2d`` or ``auto``.
        momentum: m of every class memory.
        sample: an input batch for the dry run that sizes each tap's memory.
        average: ``tap`` (mean over taps) or ``width`` (mean over widths of each width's mean).
        memory: ``global`` (every rank's samples update one memory, in rank order) or ``rank``
            (each rank keeps its own, updated by its own samples only, as the authors' toolkit).

    Call after ``model(x)``: ``arr(labels) -> scalar loss`` (train mode updates the memories).
    """

    def __init__(self, model: nn.Module, num_classes: int, taps: Sequence[str], pooling: str = "auto",
                 momentum: float = 0.1, sample: torch.Tensor | None = None, average: str = "tap",
                 memory: str = "global"):
        super().__init__()
        if average not in AVERAGES:
            raise ValueError(f"ARR average must be one of {AVERAGES}, got {average!r}")
        if memory not in MEMORIES:
            raise ValueError(f"ARR memory must be one of {MEMORIES}, got {memory!r}")
        self.average, self.memory = average, memory
        self.taps = ResponseTaps(model, taps, pooling)
        if sample is None:
            raise ValueError("ARR needs a sample input to size the memory of each tap")
        was_training = model.training
        model.eval()
        with torch.no_grad():
            model(sample)
        model.train(was_training)
        dims = [r.shape[1] for r in self.taps.responses]
        self.memories = nn.ModuleList(ClassResponseMemory(num_classes, d, momentum) for d in dims)

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        responses = self.taps.responses
        if any(r is None for r in responses):
            raise RuntimeError("ARR called before a forward pass of the tapped model")
        for r, memory in zip(responses, self.memories):
            memory.check(r, labels)
        targets = self._targets(torch.cat([r.detach().float() for r in responses], 1), labels.long())
        losses = []
        valid = self.memories[0].seen(labels).float()[:, None]  # all taps share the class counts
        for r, t in zip(responses, targets.split([m.num_features for m in self.memories], 1)):
            err = (r.float() - t).abs() * valid
            losses.append(err.sum() / (valid.sum() * r.shape[1]).clamp(min=1.0))
        if self.average == "tap":
            return torch.stack(losses).mean()
        by_width: dict[int, list[torch.Tensor]] = {}
        for loss, m in zip(losses, self.memories):
            by_width.setdefault(m.num_features, []).append(loss)
        return torch.stack([torch.stack(group).mean() for group in by_width.values()]).mean()

    @torch.no_grad()
    def _targets(self, flat: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Targets [B, sum d] for this rank's responses ``flat`` [B, sum d]: all taps in one update
        (the label bookkeeping is the same for every tap), over all ranks' samples in rank order."""
        if self.memory == "global":
            all_flat, offset = gather_in_rank_order(flat)
            all_labels, _ = gather_in_rank_order(labels)
        else:
            all_flat, offset, all_labels = flat, 0, labels
        first = self.memories[0]
        check_labels(all_labels, first.num_classes)
        mean = torch.cat([m.mean for m in self.memories], 1)
        if not self.training:
            return stored_targets(mean, first.count, flat, labels)
        count = first.count.clone()
        targets = ema_update(mean, count, all_flat, all_labels, first.momentum)
        for m, part in zip(self.memories, mean.split([m.num_features for m in self.memories], 1)):
            m.mean.copy_(part)
            m.count.copy_(count)
        return targets[offset: offset + flat.shape[0]]
