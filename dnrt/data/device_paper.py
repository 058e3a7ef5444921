"""The paper's train recipe on the device: timm's ``create_transform`` pipeline as batched ops.

uint8 [B, C, H, W] -> grey levels float32 [B, C, S, S], in timm's order: RandomResizedCrop
(scale 0.08-1, ratio 3/4-4/3, Pillow's resize of the crop, bilinear or bicubic per image with
``interpolation='random'``), horizontal flip p=0.5, RandAugment ``rand-m9-mstd0.5-inc1``
(:mod:`dnrt.data.device_randaugment`); :func:`paper_transform` then scales, normalises and
applies random erasing (p=0.25, ``pixel`` mode), as timm's ToTensor, Normalize and RandomErasing.

The crop, flip and RandAugment parameters of a batch are drawn first (:func:`draw_paper`), then
applied (:func:`augment_drawn`), a pure function of the images and their draws.

On a CPU the recipe runs with one intra-op thread: it is some hundreds of kernels on a few hundred
thousand values each, too small for a thread pool to pay for its synchronisation, and on a CPU that
other processes keep busy every kernel would wait for its slowest thread (docs/augment.md). Slices
of the batch in Python threads do not help either: each slice runs as many kernels as the whole
batch, and their launches contend for the interpreter lock (two slices measured slower than one).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from .augment import _resized_crop_params, random_erasing
from .device_geometry import resized_crop
from .device_randaugment import PolicyDraw, rand_augment, sample_policy

RAND_AUGMENT_LAYERS = 2
RAND_AUGMENT_MAGNITUDE = 9.0
RAND_AUGMENT_STD = 0.5
RAND_AUGMENT_PROB = 0.5
RANDOM_ERASING_P = 0.25


@dataclass
class PaperDraw:
    """One batch's crop box (top, left, height, width), crop filter (bicubic), flip, each [B], and
    RandAugment draw."""

    top: torch.Tensor
    left: torch.Tensor
    height: torch.Tensor
    width: torch.Tensor
    bicubic: torch.Tensor
    flip: torch.Tensor
    policy: PolicyDraw


def draw_paper(b: int, h: int, w: int, gen: torch.Generator, dev: torch.device, *,
               interpolation: str = "bicubic") -> PaperDraw:
    """Draw the crop, flip and RandAugment parameters of ``b`` images of h x w."""
    top, left, height, width = _resized_crop_params(b, h, w, gen, dev, (0.08, 1.0), (3 / 4, 4 / 3))
    if interpolation == "random":
        bicubic = torch.rand(b, generator=gen, device=dev) >= 0.5
    else:
        bicubic = torch.full((b,), interpolation == "bicubic", device=dev)
    flip = torch.rand(b, generator=gen, device=dev) < 0.5
    policy = sample_policy(b, gen, dev, layers=RAND_AUGMENT_LAYERS, prob=RAND_AUGMENT_PROB,
                           magnitude=RAND_AUGMENT_MAGNITUDE, std=RAND_AUGMENT_STD, interpolation=interpolation)
    return PaperDraw(top, left, height, width, bicubic, flip, policy)


def augment_drawn(x: torch.Tensor, draw: PaperDraw, size: int, fill: torch.Tensor) -> torch.Tensor:
    """uint8 [B, C, H, W] -> float32 grey levels [B, C, size, size]: crop, flip and RandAugment as
    ``draw`` says; ``fill``: float [C], the geometric ops' fill colour (timm's ``img_mean``)."""
    out = resized_crop(x, draw.top, draw.left, draw.height, draw.width, size, draw.bicubic, flip=draw.flip)
    return rand_augment(out, draw.policy, fill.to(x.device))


def paper_augment(x: torch.Tensor, size: int, gen: torch.Generator, *, fill: torch.Tensor,
                  interpolation: str = "bicubic") -> torch.Tensor:
    """uint8 [B, C, H, W] -> float32 grey levels [B, C, size, size] (crop, flip, RandAugment).

    ``fill``: float [C], the geometric ops' fill colour on the 0..255 grid (timm's ``img_mean``);
    ``interpolation``: bicubic, bilinear or random (drawn per image for the crop and per op).
    """
    b, _, h, w = x.shape
    return augment_drawn(x, draw_paper(b, h, w, gen, x.device, interpolation=interpolation), size, fill)


@contextlib.contextmanager
def one_cpu_thread(device: torch.device) -> Iterator[None]:
    """One torch intra-op thread inside the block when ``device`` is a CPU; restored after."""
    if device.type != "cpu":
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def paper_transform(x: torch.Tensor, size: int, gen: torch.Generator, *, mean: torch.Tensor,
                    std: torch.Tensor, fill: torch.Tensor, interpolation: str = "bicubic") -> torch.Tensor:
    """uint8 [B, C, H, W] -> normalised float32 [B, C, size, size]: :func:`paper_augment`, then
    ``/ 255``, ``(x - mean) / std`` (``mean``/``std`` float32 [1, C, 1, 1]) and random erasing."""
    with one_cpu_thread(x.device):
        out = paper_augment(x, size, gen, fill=fill, interpolation=interpolation)
        out = out.div_(255).sub_(mean).div_(std)
        return random_erasing(out, gen, p=RANDOM_ERASING_P, noise_where_erased=True)
