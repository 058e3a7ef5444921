"""Long-tailed CIFAR (Cao et al. 2019): exponentially decaying class sizes, balanced test split."""

from __future__ import annotations

import math

import numpy as np
import torch

from .base import Split
from .cifar import CifarData
from .sampling import cpu_generator


def long_tail_counts(n_max: int, num_classes: int, ratio: float) -> list[int]:
    """Per-class sizes n_k = floor(n_max * ratio^(-k / (K - 1))), k = 0..K-1.

    The first class keeps n_max, the last n_max / ratio; e.g. (5000, 10, 100) -> 5000 ... 50.
    """
    if n_max < 1 or num_classes < 1:
        raise ValueError(f"need n_max >= 1 and num_classes >= 1, got {n_max}, {num_classes}")
    if ratio < 1:
        raise ValueError(f"imbalance ratio must be >= 1, got {ratio}")
    if num_classes == 1:
        return [int(n_max)]
    # The epsilon keeps exact products (5000 * 100^-1 = 50) from flooring to one less.
    return [max(1, math.floor(n_max * ratio ** (-k / (num_classes - 1)) + 1e-9)) for k in range(num_classes)]


SELECTIONS = ("seed", "ldam")


def long_tail_indices(labels: torch.Tensor, counts: list[int], seed: int, selection: str = "seed") -> torch.Tensor:
    """Sorted indices taking ``counts[k]`` random samples of class k (fixed by ``seed``).

    ``selection='ldam'``: the long-tail literature's subset (Cao et al.'s LDAM-DRW code, which later
    papers reuse): numpy's legacy generator seeded with ``seed``, then, class by class, a shuffle of
    the class's indices and its first ``counts[k]``."""
    labels = labels.cpu()
    if selection not in SELECTIONS:
        raise ValueError(f"dataset.selection must be one of {SELECTIONS}, got {selection!r}")
    if selection == "ldam":
        rng, targets, keep_np = np.random.RandomState(seed), labels.numpy(), []
        for k, n_k in enumerate(counts):
            idx = np.where(targets == k)[0]
            if idx.size < n_k:
                raise ValueError(f"class {k} has {idx.size} samples, fewer than the {n_k} requested")
            rng.shuffle(idx)
            keep_np.append(idx[:n_k])
        return torch.sort(torch.from_numpy(np.concatenate(keep_np)).long()).values
    gen = cpu_generator(seed, "long_tail")
    keep = []
    for k, n_k in enumerate(counts):
        members = torch.nonzero(labels == k).flatten()
        if members.numel() < n_k:
            raise ValueError(f"class {k} has {members.numel()} samples, fewer than the {n_k} requested")
        keep.append(members[torch.randperm(members.numel(), generator=gen)[:n_k]])
    return torch.sort(torch.cat(keep)).values


class CifarLongTailData(CifarData):
    """CIFAR-10-LT (or CIFAR-100-LT with ``variant='cifar100'``): the train split cut to
    :func:`long_tail_counts` with n_max = the smallest class of the stored train split (5000 for
    real CIFAR-10); the test split stays balanced. ``subset_seed`` fixes which images are kept;
    None uses the run seed (``selection='seed'``) or 0 (``selection='ldam'``, the subset every
    CIFAR-10-LT paper trains on: see :func:`long_tail_indices`). The paper's ratios are 10, 50 and 100.
    """

    def __init__(self, name: str = "cifar10_lt", root: str = "data/cifar10", imbalance_ratio: float = 100,
                 subset_seed: int | None = None, selection: str = "seed", download: bool = False, img_size: int = 32,
                 fraction: float = 1.0, augment: str = "standard", device_resident: bool = True,
                 variant: str = "cifar10", **recipe):
        if imbalance_ratio < 1:
            raise ValueError(f"imbalance_ratio must be >= 1, got {imbalance_ratio}")
        super().__init__(name=name, root=root, download=download, img_size=img_size, fraction=fraction,
                         augment=augment, device_resident=device_resident, variant=variant, **recipe)
        self.imbalance_ratio = float(imbalance_ratio)
        self.subset_seed = subset_seed
        if selection not in SELECTIONS:
            raise ValueError(f"dataset.selection must be one of {SELECTIONS}, got {selection!r}")
        self.selection = selection

    def class_counts(self) -> list[int]:
        """Train images per class after the long-tail cut (before ``fraction``)."""
        train, _ = self.base_splits()
        n_max = int(torch.bincount(train.labels, minlength=self.num_classes).min())
        return long_tail_counts(n_max, self.num_classes, self.imbalance_ratio)

    def nominal_train_counts(self) -> list[int]:
        """:meth:`class_counts` of the published train split, without reading a file."""
        full = super().nominal_train_counts()
        return long_tail_counts(min(full), len(full), self.imbalance_ratio)

    def splits(self, seed: int) -> tuple[Split, Split]:
        train, test = self.base_splits()
        default = 0 if self.selection == "ldam" else seed
        pick_seed = default if self.subset_seed is None else int(self.subset_seed)
        return train.subset(long_tail_indices(train.labels, self.class_counts(), pick_seed, self.selection)), test
