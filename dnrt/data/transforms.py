"""PIL-side transforms (the DataLoader path): PIL image -> normalised float32 [C, S, S].

The ``none`` and ``standard`` recipes for in-memory arrays are the device recipes of
:mod:`dnrt.data.augment` written with torchvision ops; ``paper`` is the authors' DeiT-style recipe
through timm's ``create_transform`` (RandomResizedCrop + flip + RandAugment ``rand-m9-mstd0.5-inc1``
+ random erasing p=0.25, bicubic), and ``paper_lite`` is the same without RandAugment.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from PIL import Image
from timm.data import create_transform
from torchvision import transforms as T

from .augment import crop_padding

AUGMENTS = ("none", "standard", "paper", "paper_lite")
RAND_AUGMENT = "rand-m9-mstd0.5-inc1"
RANDOM_ERASING_P = 0.25

Transform = Callable[[Image.Image], torch.Tensor]


def check_augment(augment: str) -> str:
    if augment not in AUGMENTS:
        raise ValueError(f"augment must be one of {AUGMENTS}, got {augment!r}")
    return augment


def _timm_train(augment: str, size: int, mean: Sequence[float], std: Sequence[float],
                interpolation: str, color_jitter: float | None) -> Transform:
    paper = augment == "paper"
    return create_transform(
        size,
        is_training=True,
        auto_augment=RAND_AUGMENT if paper else None,
        color_jitter=color_jitter,  # timm drops it whenever RandAugment is on
        re_prob=RANDOM_ERASING_P if augment in ("paper", "paper_lite") else 0.0,
        re_mode="pixel",
        interpolation=interpolation,
        mean=tuple(mean),
        std=tuple(std),
    )


def array_transform(augment: str, *, train: bool, native_size: int, size: int, mean: Sequence[float],
                    std: Sequence[float]) -> Transform:
    """Transform for small in-memory images (CIFAR, digits, synthetic) of side ``native_size``."""
    check_augment(augment)
    if train and augment in ("paper", "paper_lite"):
        return _timm_train(augment, size, mean, std, "bicubic", color_jitter=None)
    steps: list[Callable] = []
    if train and augment == "standard":
        steps += [T.RandomCrop(native_size, padding=crop_padding(native_size)), T.RandomHorizontalFlip()]
    if size != native_size:
        steps.append(T.Resize((size, size), interpolation=T.InterpolationMode.BILINEAR, antialias=True))
    steps += [T.ToTensor(), T.Normalize(mean, std)]
    return T.Compose(steps)


def folder_transform(augment: str, *, train: bool, size: int, mean: Sequence[float], std: Sequence[float],
                     crop_pct: float = 0.875, interpolation: str = "bicubic") -> Transform:
    """Transform for full-size photos (ImageFolder): train RandomResizedCrop + flip (+ recipe),
    evaluation (and ``augment='none'``) resize to size/crop_pct then center crop."""
    check_augment(augment)
    if train and augment != "none":
        return _timm_train(augment, size, mean, std, interpolation, color_jitter=None)
    return create_transform(size, is_training=False, interpolation=interpolation, crop_pct=crop_pct,
                            mean=tuple(mean), std=tuple(std))
