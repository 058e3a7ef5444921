"""Epoch-deterministic loaders; :class:`DeviceLoader` is the device-resident path.

Both loader kinds (this one and :class:`dnrt.data.pil.PILLoader`) share the contract the engine
relies on: iterate ``(x, y)`` with x float32 [B, C, S, S] normalised and y int64 [B], both on the
target device; ``len()`` is batches per epoch on this rank; ``set_epoch(e)`` selects the epoch;
``num_samples`` is the size of the split. Order and augmentation are pure functions of
(seed, epoch, rank), so iterating the same epoch twice, or after a resume, gives identical batches.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from .augment import DEVICE_AUGMENTS, device_transform
from .sampling import device_generator, drops_last, epoch_order, num_batches

Batch = tuple[torch.Tensor, torch.Tensor]


class EpochLoader:
    """Order bookkeeping shared by both paths. Train: shuffled, DDP-sharded, drop_last (when there is
    more than one batch; ``drop_last=False`` keeps the last partial batch; ``"odd"``, the authors'
    loader, drops it when the split size or this rank's batch is odd).
    Validation: identity order, whole split on every rank, no drop."""

    def __init__(self, num_samples: int, *, batch_size: int, seed: int, train: bool, rank: int = 0,
                 world_size: int = 1, drop_last: bool | str = True):
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.num_samples = int(num_samples)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.train = bool(train)
        self.drop_last = drops_last(drop_last, self.num_samples, self.batch_size) and self.train
        self.rank = int(rank) if train else 0
        self.world_size = int(world_size) if train else 1
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    @property
    def samples_per_rank(self) -> int:
        return self.num_samples // self.world_size

    def __len__(self) -> int:
        return num_batches(self.samples_per_rank, self.batch_size, drop_last=self.drop_last)

    def epoch_indices(self) -> torch.Tensor:
        """Indices into the split this rank visits this epoch, in order: int64 [n] on the CPU
        (the tail a drop_last would discard is included)."""
        return epoch_order(self.num_samples, seed=self.seed, epoch=self.epoch, shuffle=self.train,
                           rank=self.rank, world_size=self.world_size, batch_size=self.batch_size)

    def batch_indices(self) -> list[torch.Tensor]:
        """The index chunks of this epoch's batches (what ``__iter__`` will yield, in order)."""
        order = self.epoch_indices()
        return [order[i * self.batch_size:(i + 1) * self.batch_size] for i in range(len(self))]


class DeviceLoader(EpochLoader):
    """Batches from an in-memory uint8 image tensor kept on the device, augmented there in batches.

    Args:
        images: uint8 [N, C, H, W] (moved to ``device`` once, no copy if already there).
        labels: int [N].
        mean, std: per-channel normalisation of images scaled to [0, 1].
        augment: a device recipe (``none``/``standard``/``paper_lite``); ignored for validation.
        img_size: output side S (default H); other sizes are resized on the device.
        crop_pct: validation only: None keeps the full image; a value resizes to
            floor(S / crop_pct) (bilinear) and center-crops S, as the PIL path.
        train_interpolation: ``paper_lite``'s resized crop: bicubic (None), bilinear or random.
        drop_last: train only; False keeps the last partial batch (ceil(N / B) steps); ``"odd"``
            drops it only when N or B is odd (the authors' rule).

    No worker processes: indexing, crops, flips and normalisation are a handful of batched kernels,
    and their randomness comes from a generator on ``device`` seeded by (seed, epoch, rank).
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, *, batch_size: int,
                 device: torch.device | str, mean: Sequence[float], std: Sequence[float], seed: int,
                 train: bool, augment: str = "none", img_size: int | None = None, rank: int = 0,
                 world_size: int = 1, crop_pct: float | None = None, train_interpolation: str | None = None,
                 drop_last: bool | str = True):
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"images must be uint8 [N, C, H, W], got {images.dtype} {tuple(images.shape)}")
        if labels.shape != images.shape[:1]:
            raise ValueError(f"labels must be [{images.shape[0]}], got {tuple(labels.shape)}")
        if len(mean) != images.shape[1] or len(std) != images.shape[1]:
            raise ValueError(f"mean/std need {images.shape[1]} channels, got {len(mean)}/{len(std)}")
        augment = augment if train else "none"
        if augment not in DEVICE_AUGMENTS:
            raise ValueError(f"DeviceLoader augment must be one of {DEVICE_AUGMENTS}, got {augment!r} "
                             "(RandAugment, in 'paper', needs the PIL path: use PILLoader)")
        super().__init__(images.shape[0], batch_size=batch_size, seed=seed, train=train, rank=rank,
                         world_size=world_size, drop_last=drop_last)
        self.device = torch.device(device)
        self.images = images.to(self.device)
        self.labels = labels.to(device=self.device, dtype=torch.long)
        self.augment = augment
        self.img_size = int(img_size or images.shape[-1])
        self.crop_pct = None if train else crop_pct
        self.train_interpolation = train_interpolation or "bicubic"
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)

    def __iter__(self) -> Iterator[Batch]:
        order = self.epoch_indices().to(self.device, non_blocking=True)
        gen = None
        if self.augment != "none":
            gen = device_generator(self.device, self.seed, "aug", self.epoch, self.rank)
        for i in range(len(self)):
            sel = order[i * self.batch_size:(i + 1) * self.batch_size]
            x = device_transform(self.images.index_select(0, sel), augment=self.augment,
                                 size=self.img_size, mean=self.mean, std=self.std, gen=gen,
                                 crop_pct=self.crop_pct, interpolation=self.train_interpolation)
            yield x, self.labels.index_select(0, sel)
