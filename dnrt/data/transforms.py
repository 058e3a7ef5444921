"""PIL-side transforms (the DataLoader path): PIL image -> normalised float32 [C, S, S].

The ``none``, ``standard`` and ``flip`` recipes for in-memory arrays are the device recipes of
:mod:`dnrt.data.augment` written with torchvision ops; ``paper`` is the authors' DeiT-style recipe
through timm's ``create_transform`` (RandomResizedCrop + flip + RandAugment ``rand-m9-mstd0.5-inc1``
+ random erasing p=0.25; bicubic, or the authors' random bilinear/bicubic with
``train_interpolation='random'``), and ``paper_lite`` is the same without RandAugment. RandAugment's
posterize keeps the authors' 0-bit semantics (:mod:`dnrt.data.randaugment`).

Evaluation of small images is the full image (``crop_pct=None``), or, as the authors evaluate,
Resize(floor(size / crop_pct), bilinear) + CenterCrop(size): 36 then 32 at crop_pct 0.875.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from PIL import Image
from timm.data import create_transform
from torchvision import transforms as T

from .augment import crop_padding
from .randaugment import use_black_posterize

AUGMENTS = ("none", "standard", "flip", "paper", "paper_lite")
# Train interpolations of RandomResizedCrop (and RandAugment's geometric ops); timm's ``random``
# draws bilinear or bicubic per image.
INTERPOLATIONS = ("bicubic", "bilinear", "random")
RAND_AUGMENT = "rand-m9-mstd0.5-inc1"
RANDOM_ERASING_P = 0.25

Transform = Callable[[Image.Image], torch.Tensor]


def check_augment(augment: str) -> str:
    if augment not in AUGMENTS:
        raise ValueError(f"augment must be one of {AUGMENTS}, got {augment!r}")
    return augment


def check_interpolation(interpolation: str) -> str:
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"dataset.train_interpolation must be one of {INTERPOLATIONS} or null, "
                         f"got {interpolation!r}")
    return interpolation


def check_crop_pct(crop_pct: float | None) -> float | None:
    if crop_pct is not None and not 0.0 < float(crop_pct) <= 1.0:
        raise ValueError(f"dataset.crop_pct must be in (0, 1] or null (the full image), got {crop_pct!r}")
    return None if crop_pct is None else float(crop_pct)


def eval_resize_size(size: int, crop_pct: float) -> int:
    """Side of the evaluation resize before the center crop: floor(size / crop_pct) (36 for 32, 0.875)."""
    return math.floor(size / crop_pct)


def _timm_train(augment: str, size: int, mean: Sequence[float], std: Sequence[float],
                interpolation: str, color_jitter: float | None) -> Transform:
    paper = augment == "paper"
    transform = create_transform(
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
    if paper and not use_black_posterize(transform):
        raise RuntimeError("timm's RandAugment has no posterize op to fix: check dnrt.data.randaugment")
    return transform


def array_transform(augment: str, *, train: bool, native_size: int, size: int, mean: Sequence[float],
                    std: Sequence[float], crop_pct: float | None = None,
                    train_interpolation: str | None = None) -> Transform:
    """Transform for small in-memory images (CIFAR, digits, synthetic) of side ``native_size``.

    ``crop_pct`` (evaluation only): None keeps the full image; a value resizes to
    floor(size / crop_pct), bilinear, and center-crops ``size`` (timm's eval transform).
    ``train_interpolation`` (``paper``/``paper_lite`` only): None is bicubic.
    """
    check_augment(augment)
    if train and augment in ("paper", "paper_lite"):
        interpolation = check_interpolation(train_interpolation or "bicubic")
        return _timm_train(augment, size, mean, std, interpolation, color_jitter=None)
    if not train and check_crop_pct(crop_pct) is not None:
        return create_transform(size, is_training=False, interpolation="bilinear", crop_pct=crop_pct,
                                mean=tuple(mean), std=tuple(std))
    steps: list[Callable] = []
    if train and augment == "standard":
        steps += [T.RandomCrop(native_size, padding=crop_padding(native_size)), T.RandomHorizontalFlip()]
    elif train and augment == "flip":
        steps.append(T.RandomHorizontalFlip())
    if size != native_size:
        steps.append(T.Resize((size, size), interpolation=T.InterpolationMode.BILINEAR, antialias=True))
    steps += [T.ToTensor(), T.Normalize(mean, std)]
    return T.Compose(steps)


def folder_transform(augment: str, *, train: bool, size: int, mean: Sequence[float], std: Sequence[float],
                     crop_pct: float = 0.875, interpolation: str = "bicubic",
                     train_interpolation: str | None = None, eval_interpolation: str | None = None) -> Transform:
    """Transform for full-size photos (ImageFolder): train RandomResizedCrop + flip (+ recipe) with
    ``train_interpolation`` (None: ``interpolation``), evaluation (and ``augment='none'``) resize to
    size/crop_pct then center crop with ``eval_interpolation`` (None: ``interpolation``, bilinear
    where that is ``random``);
    ``flip`` is the evaluation transform with a horizontal flip (p=0.5) on the normalised tensor."""
    check_augment(augment)
    if train and augment not in ("none", "flip"):
        interp = check_interpolation(train_interpolation or interpolation)
        return _timm_train(augment, size, mean, std, interp, color_jitter=None)
    resize = eval_interpolation or ("bilinear" if interpolation == "random" else interpolation)
    evaluation = create_transform(size, is_training=False, crop_pct=crop_pct, mean=tuple(mean), std=tuple(std),
                                  interpolation=resize)
    # A per-channel normalisation commutes with a mirror, so flipping the tensor is flipping the photo.
    return T.Compose([evaluation, T.RandomHorizontalFlip()]) if train and augment == "flip" else evaluation
