"""Seed derivation, per-epoch orders, DDP sharding and stratified subsets.

Every random choice in the data layer draws from a private ``torch.Generator`` seeded by
:func:`derive_seed`, never from the global RNG, so a run resumed at an epoch boundary (or a second
process) sees exactly the same samples and augmentations.
"""

from __future__ import annotations

import hashlib
import math

import torch


def derive_seed(*keys: int | str) -> int:
    """A 63-bit seed that is a pure function of ``keys`` (stable across processes, unlike ``hash``)."""
    digest = hashlib.blake2b(repr(keys).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


def cpu_generator(*keys: int | str) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed(*keys))


def device_generator(device: torch.device, *keys: int | str) -> torch.Generator:
    """A generator living on ``device`` so augmentation draws never leave it (CPU fallback elsewhere)."""
    try:
        gen = torch.Generator(device=device)
    except RuntimeError:  # a backend without device generators
        gen = torch.Generator()
    return gen.manual_seed(derive_seed(*keys))


def epoch_order(num_samples: int, *, seed: int, epoch: int, shuffle: bool, rank: int = 0,
                world_size: int = 1, batch_size: int = 1) -> torch.Tensor:
    """The indices one rank visits in ``epoch``: int64 [n_rank] on the CPU.

    Shuffled orders come from one permutation per (seed, epoch), shared by all ranks, cut into
    global batches of ``world_size * batch_size``; rank r takes the r-th block of each. So the
    ranks' batches concatenated in rank order are exactly the single-process batch of the same
    global size, and ARR's rank-ordered memory update sees the same sample order as one process.
    The tail (less than a global batch) is split evenly, cut to a multiple of world_size so every
    rank takes the same number of steps (DDP would hang otherwise). Unshuffled orders
    (validation) are the identity, never sharded: every rank may evaluate the whole split.
    """
    if not shuffle:
        return torch.arange(num_samples)
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
    perm = torch.randperm(num_samples, generator=cpu_generator(seed, "perm", epoch))
    if world_size == 1:
        return perm
    span = world_size * batch_size
    full = num_samples // span * span
    blocks = perm[:full].view(-1, world_size, batch_size)[:, rank].reshape(-1)
    tail = perm[full:]
    per_rank = tail.numel() // world_size
    return torch.cat([blocks, tail[: per_rank * world_size].view(world_size, per_rank)[rank]])


def check_drop_last(drop_last: bool | str) -> bool | str:
    """``dataset.drop_last``: true, false, or ``odd`` (the authors' loader: drop the last partial
    batch only when the train set size or the batch is odd)."""
    if not (isinstance(drop_last, bool) or drop_last == "odd"):
        raise ValueError(f"dataset.drop_last must be true, false or odd, got {drop_last!r}")
    return drop_last


def drops_last(drop_last: bool | str, num_samples: int, batch_size: int) -> bool:
    """Whether a train loader of ``num_samples`` and ``batch_size`` drops its last partial batch;
    ``odd``: when either number is odd."""
    if check_drop_last(drop_last) == "odd":
        return bool(num_samples % 2 or batch_size % 2)
    return bool(drop_last)


def num_batches(num_samples: int, batch_size: int, drop_last: bool) -> int:
    """Batches per epoch; ``drop_last`` only applies when there is more than one batch's worth."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if drop_last and num_samples > batch_size:
        return num_samples // batch_size
    return math.ceil(num_samples / batch_size)


def _per_class_count(n: int, fraction: float) -> int:
    return max(1, min(n, math.floor(fraction * n + 0.5)))


def stratified_subset(labels: torch.Tensor, fraction: float, seed: int) -> torch.Tensor:
    """Sorted indices keeping ``round(fraction * n_c)`` (at least 1) samples of every class c.

    ``labels``: int64 [N]. The choice is a pure function of (labels, fraction, seed).
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    labels = labels.cpu()
    if fraction == 1.0:
        return torch.arange(labels.numel())
    gen = cpu_generator(seed, "fraction")
    keep = []
    for c in torch.unique(labels).tolist():
        members = torch.nonzero(labels == c).flatten()
        k = _per_class_count(members.numel(), fraction)
        keep.append(members[torch.randperm(members.numel(), generator=gen)[:k]])
    return torch.sort(torch.cat(keep)).values


def stratified_split(labels: torch.Tensor, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train_idx, val_idx), sorted and disjoint; each class gives ``round(val_fraction * n_c)`` to val.

    A class of one sample stays in train; otherwise each side keeps at least one sample per class.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    labels = labels.cpu()
    gen = cpu_generator(seed, "split")
    train, val = [], []
    for c in torch.unique(labels).tolist():
        members = torch.nonzero(labels == c).flatten()
        n = members.numel()
        k = 0 if n < 2 else min(n - 1, _per_class_count(n, val_fraction))
        shuffled = members[torch.randperm(n, generator=gen)]
        val.append(shuffled[:k])
        train.append(shuffled[k:])
    return torch.sort(torch.cat(train)).values, torch.sort(torch.cat(val)).values
