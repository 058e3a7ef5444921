"""Shared pieces of the data sets: the missing-data error and the in-memory array data set base."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from .loader import DeviceLoader, EpochLoader
from .pil import ArraySource, PILLoader, SeededDataset
from .sampling import check_drop_last, derive_seed, stratified_subset
from .transforms import array_transform, check_augment, check_crop_pct, check_interpolation

log = logging.getLogger(__name__)

NORMALIZATIONS = ("standard", "paper")
# Where ``augment='paper'`` runs: pil = timm's transform per image in the DataLoader (the reference);
# device = the same recipe as batched ops on the device (dnrt/data/device_paper.py, docs/augment.md).
AUG_BACKENDS = ("pil", "device")


def check_aug_backend(backend: str) -> str:
    if backend not in AUG_BACKENDS:
        raise ValueError(f"dataset.aug_backend must be one of {AUG_BACKENDS}, got {backend!r}")
    return backend


def check_normalization(normalization: str) -> str:
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"dataset.normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
    return normalization


class DatasetNotFoundError(FileNotFoundError):
    """The data set's files are not where the config says (raised before any training starts)."""


class DataFileError(ValueError):
    """A data file that is there but cannot be read as the data set needs it (truncated, corrupt,
    wrong content); the message starts with the file's path."""


def file_key(path: Path) -> tuple[str, int, int]:
    """``(path, size, mtime)``: a cache key that changes when the file does (checks run once per file
    per process, not once per sweep cell)."""
    st = path.stat()
    return str(path.resolve()), st.st_size, st.st_mtime_ns


@dataclass
class Split:
    """One split held in memory: images uint8 [N, C, H, W] and labels int64 [N], on the CPU."""

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(f"images must be uint8 [N, C, H, W], got {self.images.dtype} "
                             f"{tuple(self.images.shape)}")
        self.labels = torch.as_tensor(self.labels, dtype=torch.long)
        if self.labels.shape != self.images.shape[:1]:
            raise ValueError(f"{self.images.shape[0]} images but labels of shape {tuple(self.labels.shape)}")

    def __len__(self) -> int:
        return self.labels.numel()

    def subset(self, idx: torch.Tensor) -> Split:
        if idx.numel() == len(self):
            return self
        return Split(self.images.index_select(0, idx), self.labels.index_select(0, idx))


class ArrayData:
    """Base of the data sets that fit in memory as uint8 arrays (digits, CIFAR, synthetic).

    Subclasses set ``name``, ``num_classes``, ``in_chans``, ``native_size``, ``mean``, ``std`` and
    implement :meth:`splits`. ``loaders`` subsamples each split (``fraction``, stratified, fixed by
    the run seed) and serves it either device-resident (:class:`DeviceLoader`) or through the PIL
    path (:class:`PILLoader`). With ``augment='paper'`` the train split takes the PIL path (timm's
    own transform) unless ``aug_backend='device'`` (and ``device_resident``), which runs the same
    recipe as batched ops on the device; validation stays device-resident.

    The authors' data recipe, each key defaulting to the behaviour from before it existed:
    ``crop_pct`` (evaluation resize to floor(S / crop_pct) + center crop; None: the full image),
    ``train_interpolation`` (bicubic when None; bilinear; random), ``normalization`` (``standard``
    or ``paper``: the authors' constants where they differ, CIFAR-10's std), ``drop_last``
    (False keeps the last partial training batch; ``odd`` is the authors' rule),
    ``eval_interpolation`` (the evaluation resize: bilinear, the only one of the array path, or None)
    and ``aug_backend`` (``pil`` or ``device``).
    """

    name: str
    num_classes: int
    in_chans: int
    native_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __init__(self, *, name: str, img_size: int | None, fraction: float, augment: str,
                 device_resident: bool, crop_pct: float | None = None, train_interpolation: str | None = None,
                 normalization: str = "standard", drop_last: bool | str = True,
                 eval_interpolation: str | None = None, aug_backend: str = "pil"):
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")
        self.name = str(name)
        self.img_size = int(img_size or self.native_size)
        self.fraction = float(fraction)
        self.augment = check_augment(augment)
        self.device_resident = bool(device_resident)
        self.crop_pct = check_crop_pct(crop_pct)
        self.train_interpolation = None if train_interpolation is None else check_interpolation(train_interpolation)
        self.normalization = check_normalization(normalization)
        self.drop_last = check_drop_last(drop_last)
        if eval_interpolation not in (None, "bilinear"):
            raise ValueError(f"dataset.eval_interpolation of in-memory images must be bilinear or null, "
                             f"got {eval_interpolation!r}")
        self.eval_interpolation = eval_interpolation
        self.aug_backend = check_aug_backend(aug_backend)

    def splits(self, seed: int) -> tuple[Split, Split]:
        """(train, val) before ``fraction`` subsampling; may depend on the run seed (e.g. digits)."""
        raise NotImplementedError

    def loaders(self, batch_size: int, seed: int, device: torch.device | str, rank: int = 0,
                world_size: int = 1, workers: int = 0) -> tuple[EpochLoader, EpochLoader]:
        train, val = self.splits(seed)
        train = train.subset(stratified_subset(train.labels, self.fraction, derive_seed(seed, "train")))
        val = val.subset(stratified_subset(val.labels, self.fraction, derive_seed(seed, "val")))
        common = dict(batch_size=batch_size, device=device, seed=seed, rank=rank, world_size=world_size,
                      drop_last=self.drop_last)
        return (self._loader(train, train=True, workers=workers, **common),
                self._loader(val, train=False, workers=workers, **common))

    def _loader(self, split: Split, *, train: bool, workers: int, **common) -> EpochLoader:
        augment = self.augment if train else "none"
        if self.device_resident and (augment != "paper" or self.aug_backend == "device"):
            return DeviceLoader(split.images, split.labels, mean=self.mean, std=self.std, train=train,
                                augment=augment, img_size=self.img_size, crop_pct=self.crop_pct,
                                train_interpolation=self.train_interpolation, **common)
        if self.device_resident:
            log.info("%s: augment=paper with aug_backend=pil: the train split uses the PIL path", self.name)
        transform = array_transform(augment, train=train, native_size=self.native_size, size=self.img_size,
                                    mean=self.mean, std=self.std, crop_pct=self.crop_pct,
                                    train_interpolation=self.train_interpolation)
        dataset = SeededDataset(ArraySource.from_nchw(split.images), split.labels, transform)
        return PILLoader(dataset, train=train, workers=workers, **common)
