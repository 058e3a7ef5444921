"""Batched augmentation on the device, mirroring the PIL recipes in :mod:`dnrt.data.transforms`.

Images enter as uint8 [B, C, H, W] and leave as normalised float32 [B, C, S, S]. The float path
is ``x.float().div(255).sub(mean).div(std)``: the same operations, in the same order, as
torchvision's ``ToTensor`` + ``Normalize``, so un-augmented images are bit-identical to the PIL path.

Recipes (``augment`` names shared with the PIL path):

- ``none``: nothing.
- ``standard``: zero-pad by H//8 (4 px at 32), random crop back to H x W, horizontal flip p=0.5.
- ``flip``: horizontal flip p=0.5 only (the paper's "weak augmentation" of its Figure 3).
- ``paper_lite``: RandomResizedCrop (scale 0.08-1, ratio 3/4-4/3, bicubic; bilinear, or either per
  image with ``interpolation='random'``) + flip p=0.5 +
  random erasing p=0.25 with per-pixel normal noise on the normalised image (timm's ``pixel`` mode).
  This is the authors' recipe without RandAugment, which exists only as PIL operations
  (timm ``rand-m9-mstd0.5-inc1``): ``paper`` therefore always runs on the PIL path.

Resizing to another output size happens after the crop, in float, and is rounded back to the
uint8 grid as PIL would; interpolation kernels differ slightly from PIL's (torch bicubic uses
a=-0.75, PIL a=-0.5), so resized or resized-cropped outputs agree with the PIL path in
distribution, not bit for bit. Evaluation with ``crop_pct`` resizes to floor(S / crop_pct)
(bilinear) and takes the center S x S, as torchvision's Resize + CenterCrop.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

DEVICE_AUGMENTS = ("none", "standard", "flip", "paper_lite")


def crop_padding(size: int) -> int:
    """Padding of the ``standard`` random crop: 4 px for 32 px images (the usual CIFAR recipe)."""
    return max(1, size // 8)


def to_unit_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 [B, C, H, W] -> float32 in [0, 1], exactly as ``ToTensor``."""
    return x.float().div_(255)


def quantize_(x: torch.Tensor) -> torch.Tensor:
    """Round float images in [0, 1] to the uint8 grid, as a PIL resize would store them."""
    return x.mul_(255).round_().clamp_(0, 255).div_(255)


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """float [B, C, H, W] in [0, 1] -> [B, C, size, size]; bilinear with antialias, like PIL's."""
    if x.shape[-2:] == (size, size):
        return x
    out = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return quantize_(out)


@functools.lru_cache(maxsize=16)
def _crop_offsets(c: int, h: int, w: int, pad: int, device: torch.device) -> torch.Tensor:
    """Flat offsets into a padded [C, H+2p, W+2p] image of the crop at (0, 0): int64 [2, C*H*W],
    row 0 unflipped, row 1 flipped; a crop at (top, left) adds top * (W+2p) + left."""
    hp, wp = h + 2 * pad, w + 2 * pad
    rows = torch.arange(h, device=device).view(1, h, 1) * wp
    chans = (torch.arange(c, device=device) * (hp * wp)).view(c, 1, 1)
    cols = torch.arange(w, device=device).view(1, 1, w)
    return torch.stack([chans + rows + cols, chans + rows + (w - 1 - cols)]).view(2, -1)


def random_crop_flip(x: torch.Tensor, pad: int, gen: torch.Generator) -> torch.Tensor:
    """uint8 [B, C, H, W] -> uint8 [B, C, H, W]: zero-pad by ``pad``, crop H x W, flip half.

    One gather over precomputed flat offsets does crop and flip together, which is several
    times faster on the CPU than per-sample slicing or unfold-indexing.
    """
    b, c, h, w = x.shape
    dev = x.device
    padded = F.pad(x, (pad, pad, pad, pad))
    top = torch.randint(0, 2 * pad + 1, (b,), generator=gen, device=dev)
    left = torch.randint(0, 2 * pad + 1, (b,), generator=gen, device=dev)
    flip = (torch.rand(b, generator=gen, device=dev) < 0.5).long()
    offsets = _crop_offsets(c, h, w, pad, dev).index_select(0, flip)
    offsets.add_((top * (w + 2 * pad) + left).view(b, 1))
    return padded.view(b, -1).gather(1, offsets).view(b, c, h, w)


def random_flip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """[B, C, H, W] -> [B, C, H, W]: each image mirrored left-right with probability 0.5 (one draw per image)."""
    flip = torch.rand(x.shape[0], generator=gen, device=x.device) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)


def _resized_crop_params(b: int, h: int, w: int, gen: torch.Generator, dev: torch.device,
                         scale: tuple[float, float], ratio: tuple[float, float],
                         attempts: int = 10) -> tuple[torch.Tensor, ...]:
    """torchvision's RandomResizedCrop.get_params, vectorised: (top, left, height, width), float [B]."""
    area = h * w
    target = area * torch.empty(b, attempts, device=dev).uniform_(scale[0], scale[1], generator=gen)
    log_r = torch.empty(b, attempts, device=dev).uniform_(math.log(ratio[0]), math.log(ratio[1]),
                                                           generator=gen)
    aspect = torch.exp(log_r)
    cw = torch.round(torch.sqrt(target * aspect))
    ch = torch.round(torch.sqrt(target / aspect))
    ok = (cw > 0) & (cw <= w) & (ch > 0) & (ch <= h)
    first = ok.float().argmax(dim=1, keepdim=True)  # the first attempt that fits, as the loop would take
    cw = cw.gather(1, first).squeeze(1)
    ch = ch.gather(1, first).squeeze(1)
    # No attempt fits: the whole image, clamped to the ratio range (torchvision's fallback).
    in_ratio = w / h
    if in_ratio < ratio[0]:
        fw, fh = w, round(w / ratio[0])
    elif in_ratio > ratio[1]:
        fw, fh = round(h * ratio[1]), h
    else:
        fw, fh = w, h
    any_ok = ok.any(dim=1)
    cw = torch.where(any_ok, cw, torch.full_like(cw, fw))
    ch = torch.where(any_ok, ch, torch.full_like(ch, fh))
    u = torch.rand(2, b, generator=gen, device=dev)
    top = torch.where(any_ok, torch.floor(u[0] * (h - ch + 1)), (h - ch).div(2).floor())
    left = torch.where(any_ok, torch.floor(u[1] * (w - cw + 1)), (w - cw).div(2).floor())
    return top, left, ch, cw


def random_resized_crop_flip(x: torch.Tensor, size: int, gen: torch.Generator,
                             scale: tuple[float, float] = (0.08, 1.0),
                             ratio: tuple[float, float] = (3 / 4, 4 / 3),
                             interpolation: str = "bicubic") -> torch.Tensor:
    """float [B, C, H, W] in [0, 1] -> [B, C, size, size]: random resized crop, flip half.

    Crop box, resize and flip are one affine map per sample, so one ``grid_sample`` does all three.
    ``interpolation``: bicubic, bilinear, or ``random`` (each sample draws one of the two, as timm).
    """
    if interpolation not in ("bicubic", "bilinear", "random"):
        raise ValueError(f"interpolation must be bicubic, bilinear or random, got {interpolation!r}")
    b, _, h, w = x.shape
    dev = x.device
    top, left, ch, cw = _resized_crop_params(b, h, w, gen, dev, scale, ratio)
    sign = torch.where(torch.rand(b, generator=gen, device=dev) < 0.5, -1.0, 1.0)
    theta = torch.zeros(b, 2, 3, device=dev)
    # Normalised coordinates with align_corners=False: -1 and 1 are the outer pixel edges.
    theta[:, 0, 0] = sign * cw / w
    theta[:, 0, 2] = (2 * left + cw) / w - 1
    theta[:, 1, 1] = ch / h
    theta[:, 1, 2] = (2 * top + ch) / h - 1
    grid = F.affine_grid(theta, [b, x.shape[1], size, size], align_corners=False)
    if interpolation != "random":
        out = F.grid_sample(x, grid, mode=interpolation, padding_mode="border", align_corners=False)
        return quantize_(out)
    # Drawn after the crop and flip, so the default modes' random stream is unchanged.
    bilinear = (torch.rand(b, generator=gen, device=dev) < 0.5).view(b, 1, 1, 1)
    out = torch.where(bilinear,
                      F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False),
                      F.grid_sample(x, grid, mode="bicubic", padding_mode="border", align_corners=False))
    return quantize_(out)


def center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """[B, C, H, W] -> [B, C, size, size], the center as torchvision's CenterCrop takes it."""
    h, w = x.shape[-2:]
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return x[..., top:top + size, left:left + size]


def random_erasing(x: torch.Tensor, gen: torch.Generator, p: float = 0.25,
                    area: tuple[float, float] = (0.02, 1 / 3), min_aspect: float = 0.3,
                    attempts: int = 10, noise_where_erased: bool = False) -> torch.Tensor:
    """timm's RandomErasing (mode ``pixel``, one box) on normalised float [B, C, H, W].

    ``noise_where_erased``: draw the normal noise only for the images that are erased (the same
    distribution, a quarter of the draws at p=0.25; the default keeps ``paper_lite``'s stream).
    """
    b, c, h, w = x.shape
    dev = x.device
    apply = torch.rand(b, generator=gen, device=dev) < p
    target = h * w * torch.empty(b, attempts, device=dev).uniform_(area[0], area[1], generator=gen)
    log_r = torch.empty(b, attempts, device=dev).uniform_(math.log(min_aspect), -math.log(min_aspect),
                                                           generator=gen)
    aspect = torch.exp(log_r)
    eh = torch.round(torch.sqrt(target * aspect))
    ew = torch.round(torch.sqrt(target / aspect))
    ok = (ew < w) & (eh < h)
    first = ok.float().argmax(dim=1, keepdim=True)
    eh = eh.gather(1, first).squeeze(1)
    ew = ew.gather(1, first).squeeze(1)
    apply = apply & ok.any(dim=1)
    u = torch.rand(2, b, generator=gen, device=dev)
    top = torch.floor(u[0] * (h - eh + 1))
    left = torch.floor(u[1] * (w - ew + 1))
    ys = torch.arange(h, device=dev).view(1, h, 1)
    xs = torch.arange(w, device=dev).view(1, 1, w)
    inside = ((ys >= top.view(b, 1, 1)) & (ys < (top + eh).view(b, 1, 1))
              & (xs >= left.view(b, 1, 1)) & (xs < (left + ew).view(b, 1, 1)))
    mask = (inside & apply.view(b, 1, 1)).unsqueeze(1)
    if not noise_where_erased:
        noise = torch.randn(x.shape, generator=gen, device=dev, dtype=x.dtype)
        return torch.where(mask, noise, x)
    idx = torch.nonzero(apply).squeeze(1)
    noise = torch.randn((idx.numel(), *x.shape[1:]), generator=gen, device=dev, dtype=x.dtype)
    x = x.clone()
    x[idx] = torch.where(mask[idx], noise, x[idx])
    return x


def device_transform(x: torch.Tensor, *, augment: str, size: int, mean: torch.Tensor, std: torch.Tensor,
                     gen: torch.Generator | None, crop_pct: float | None = None,
                     interpolation: str = "bicubic") -> torch.Tensor:
    """uint8 [B, C, H, W] -> normalised float32 [B, C, size, size] on x's device.

    ``mean``/``std``: float32 [1, C, 1, 1] on the same device. ``gen`` may be None only for
    ``augment='none'``. ``crop_pct`` (``augment='none'`` only, i.e. evaluation): resize to
    floor(size / crop_pct), bilinear, then center-crop ``size``. ``interpolation``: ``paper_lite``'s.
    """
    if augment not in DEVICE_AUGMENTS:
        raise ValueError(f"device augment must be one of {DEVICE_AUGMENTS}, got {augment!r}")
    if augment == "standard":
        x = random_crop_flip(x, crop_padding(x.shape[-1]), gen)
    elif augment == "flip":
        x = random_flip(x, gen)
    out = to_unit_float(x)
    if augment == "paper_lite":
        out = random_resized_crop_flip(out, size, gen, interpolation=interpolation)
    elif crop_pct is not None and augment == "none":
        out = center_crop(resize(out, math.floor(size / crop_pct)), size)
    else:
        out = resize(out, size)
    out = out.sub_(mean).div_(std)
    if augment == "paper_lite":
        out = random_erasing(out, gen)
    return out
