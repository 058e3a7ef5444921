"""timm's RandAugment ``rand-m9-mstd0.5-inc1`` on image batches: the 15 ops and their sampling.

Images are float [B, C, H, W] holding integer grey levels 0..255, C = 1 or 3, on any device. Each
op reproduces the Pillow call timm makes (``timm/data/auto_augment.py``), operation for operation:

- point ops on the uint8 grid: Invert, PosterizeIncreasing (0 bits: black, as
  :mod:`dnrt.data.randaugment`), SolarizeIncreasing, SolarizeAdd, AutoContrast (per channel,
  double-precision lookup table), Equalize (per channel, Pillow's histogram steps);
- enhance ops, ``Image.blend(degenerate, img, factor)`` with a float32 factor, truncated:
  Brightness (black), Color (Pillow's integer RGB->L grey), Contrast (grey mean rounded to an
  integer), Sharpness (Pillow's SMOOTH 3x3 kernel in float32, the 1-pixel border unchanged);
- geometric ops through :func:`dnrt.data.device_geometry.affine`: Rotate, ShearX/Y,
  TranslateX/YRel, filled with timm's ``img_mean``, bilinear or bicubic per image.

Sampling (:func:`sample_policy`): per image and layer (2), an op drawn uniformly from the 15 (with
replacement), applied with probability 0.5, magnitude N(9, 0.5) clipped to [0, 10], the argument's
sign flipped with probability 0.5 where timm negates, the filter bilinear or bicubic with
probability 0.5 each (``interpolation='random'``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import NamedTuple

import torch

from .device_geometry import affine, rotate_matrix, shear_translate_matrix

OPS = ("AutoContrast", "Equalize", "Invert", "Rotate", "PosterizeIncreasing", "SolarizeIncreasing",
       "SolarizeAdd", "ColorIncreasing", "ContrastIncreasing", "BrightnessIncreasing",
       "SharpnessIncreasing", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel")
# Ops whose argument timm negates with probability 0.5.
SIGNED = frozenset({"Rotate", "ColorIncreasing", "ContrastIncreasing", "BrightnessIncreasing",
                    "SharpnessIncreasing", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel"})
GEOMETRIC = ("Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel")
LEVEL_DENOM = 10.0
TRANSLATE_PCT = 0.45


@dataclass
class PolicyDraw:
    """One batch's draws, each [B, layers]: op index into :data:`OPS`, applied, magnitude (float64,
    clipped), negate (the sign flip), bicubic (the filter of a geometric op)."""

    op: torch.Tensor
    applied: torch.Tensor
    magnitude: torch.Tensor
    negate: torch.Tensor
    bicubic: torch.Tensor


def sample_policy(batch: int, gen: torch.Generator, device: torch.device | str, *, layers: int = 2,
                  prob: float = 0.5, magnitude: float = 9.0, std: float = 0.5, interpolation: str = "random",
                  num_ops: int = len(OPS)) -> PolicyDraw:
    """Draw the RandAugment parameters of ``batch`` images (see the module docstring)."""
    shape = (batch, layers)
    op = torch.randint(0, num_ops, shape, generator=gen, device=device)
    u = torch.rand((3, *shape), generator=gen, device=device, dtype=torch.float64)
    noise = torch.randn(shape, generator=gen, device=device, dtype=torch.float64)
    mag = (magnitude + std * noise).clamp_(0.0, LEVEL_DENOM)
    if interpolation == "random":
        bicubic = u[2] < 0.5
    else:
        bicubic = torch.full(shape, interpolation == "bicubic", device=device)
    # timm skips an op when random() > prob and negates when random() > 0.5.
    return PolicyDraw(op=op, applied=u[0] <= prob, magnitude=mag, negate=u[1] > 0.5, bicubic=bicubic)


# The argument formula of each op (timm's ``LEVEL_TO_ARG``): 0 none, 1 signed linear (the scale
# below), 2 enhance factor, 3 posterize bits, 4 solarize threshold, 5 solarize-add amount.
_FORMULA = {"Rotate": 1, "ShearX": 1, "ShearY": 1, "TranslateXRel": 1, "TranslateYRel": 1,
            "ColorIncreasing": 2, "ContrastIncreasing": 2, "BrightnessIncreasing": 2, "SharpnessIncreasing": 2,
            "PosterizeIncreasing": 3, "SolarizeIncreasing": 4, "SolarizeAdd": 5}
_LINEAR_SCALE = {"Rotate": 30.0, "ShearX": 0.3, "ShearY": 0.3, "TranslateXRel": TRANSLATE_PCT,
                 "TranslateYRel": TRANSLATE_PCT}


def op_args(op: torch.Tensor, magnitude: torch.Tensor, negate: torch.Tensor) -> torch.Tensor:
    """timm's level -> argument of ops ``op`` (indices into :data:`OPS`, [n]), in its operation
    order: float64 [n]. Every formula runs on all n and each image takes its own op's, so a batch of
    mixed ops costs a fixed number of kernels."""
    table = _tables(op.device)
    level = magnitude.to(torch.float64) / LEVEL_DENOM
    sign = torch.where(negate, -1.0, 1.0).to(torch.float64)
    scale, formula = table.linear_scale[op], table.formula[op]
    candidates = torch.stack([
        torch.zeros_like(level),  # AutoContrast, Equalize, Invert take no argument
        sign * (level * scale),
        torch.clamp(1.0 + sign * (level * 0.9), min=0.1),
        4 - torch.floor(level * 4),
        256 - torch.clamp(torch.floor(level * 256), max=256),
        torch.clamp(torch.floor(level * 110), max=128),
    ])
    return candidates.gather(0, formula.unsqueeze(0)).squeeze(0)


def level_to_arg(name: str, magnitude: torch.Tensor, negate: torch.Tensor) -> torch.Tensor:
    """timm's level -> argument for op ``name`` (float64 [n]): :func:`op_args` of one op."""
    return op_args(torch.full(negate.shape, OPS.index(name), device=negate.device), magnitude, negate)


# ----------------------------------------------------------------------------------------------
# Point ops


def _per_image(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return v.to(x.dtype).view(-1, *([1] * (x.dim() - 1)))


def invert(x: torch.Tensor) -> torch.Tensor:
    return 255 - x


def posterize(x: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    """Keep ``bits`` [n] high bits per image; >= 8 keeps the image, <= 0 gives black."""
    step = _per_image(torch.exp2(8 - bits.clamp(0, 8).to(torch.float64)), x)
    out = torch.floor(x / step) * step
    return torch.where(_per_image(bits, x) <= 0, torch.zeros_like(x), out)


def solarize(x: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """Pillow's solarize: values >= ``threshold`` [n] inverted."""
    return torch.where(x < _per_image(threshold, x), x, 255 - x)


def solarize_add(x: torch.Tensor, add: torch.Tensor, threshold: float = 128) -> torch.Tensor:
    """timm's solarize_add: ``add`` [n] added (capped at 255) to values below ``threshold``."""
    return torch.where(x < threshold, (x + _per_image(add, x)).clamp_(max=255), x)


def _histogram(x: torch.Tensor) -> torch.Tensor:
    """float [n, C, H, W] grey levels -> int64 counts [n, C, 256]."""
    n, c = x.shape[:2]
    idx = x.reshape(n * c, -1).long()
    hist = torch.zeros(n * c, 256, dtype=torch.long, device=x.device)
    hist.scatter_add_(1, idx, torch.ones_like(idx))
    return hist.view(n, c, 256)


def _apply_lut(x: torch.Tensor, lut: torch.Tensor) -> torch.Tensor:
    """Per-(image, channel) lookup: x [n, C, H, W], lut [n, C, 256] -> [n, C, H, W]."""
    n, c = x.shape[:2]
    out = lut.to(x.dtype).gather(2, x.reshape(n, c, -1).long())
    return out.view_as(x)


def autocontrast(x: torch.Tensor) -> torch.Tensor:
    """Pillow's ``ImageOps.autocontrast`` (no cutoff): each channel stretched to 0..255."""
    n, c = x.shape[:2]
    flat = x.reshape(n, c, -1).to(torch.float64)
    lo, hi = flat.amin(dim=2, keepdim=True), flat.amax(dim=2, keepdim=True)
    # torch.div, not 255.0 / t: the reflected division multiplies by a reciprocal, one rounding more.
    scale = torch.div(torch.full_like(lo, 255.0), (hi - lo).clamp(min=1))
    offset = -lo * scale
    levels = torch.arange(256, device=x.device, dtype=torch.float64).view(1, 1, 256)
    lut = torch.trunc(levels * scale + offset).clamp_(0, 255)
    lut = torch.where(hi > lo, lut, levels)
    return _apply_lut(x, lut)


def equalize(x: torch.Tensor) -> torch.Tensor:
    """Pillow's ``ImageOps.equalize``, per channel: step = (#values - #values at the highest level present)
    // 255, lut[i] = (step // 2 + #values below i) // step."""
    hist = _histogram(x)
    nonzero = hist > 0
    levels = torch.arange(256, device=x.device)
    last = torch.where(nonzero, levels, -1).amax(dim=2, keepdim=True)  # highest level present
    last_count = hist.gather(2, last.clamp(min=0))
    step = (hist.sum(dim=2, keepdim=True) - last_count) // 255
    below = torch.cumsum(hist, dim=2) - hist
    lut = (step // 2 + below) // step.clamp(min=1)
    keep = (nonzero.sum(dim=2, keepdim=True) <= 1) | (step == 0)
    lut = torch.where(keep, levels.view(1, 1, 256), lut.clamp(max=255))
    return _apply_lut(x, lut)


# ----------------------------------------------------------------------------------------------
# Enhance ops


def blend(degenerate: torch.Tensor, x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Pillow's ``Image.blend(degenerate, x, factor)`` on the uint8 grid: float32 arithmetic,
    clipped to 0..255 and truncated. ``factor``: [n]."""
    alpha = factor.to(torch.float32).view(-1, 1, 1, 1)
    deg = degenerate.to(torch.float32)
    out = deg + alpha * (x.to(torch.float32) - deg)
    return out.clamp_(0, 255).trunc_().to(x.dtype)


def grey(x: torch.Tensor) -> torch.Tensor:
    """Pillow's RGB -> L (ITU-R 601-2 luma in 16-bit fixed point): [n, 3, H, W] -> [n, 1, H, W];
    a 1-channel image is its own grey."""
    if x.shape[1] == 1:
        return x
    xi = x.to(torch.int64)
    luma = (xi[:, 0] * 19595 + xi[:, 1] * 38470 + xi[:, 2] * 7471 + 0x8000) >> 16
    return luma.unsqueeze(1).to(x.dtype)


def brightness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return blend(torch.zeros_like(x), x, factor)


def color(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Saturation: blend with the grey image (a grey input is unchanged)."""
    return blend(grey(x).expand_as(x), x, factor)


def contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend with a flat image at the grey mean rounded to an integer, as Pillow's Contrast."""
    g = grey(x).to(torch.float64)
    mean = torch.floor(g.mean(dim=(1, 2, 3), keepdim=True) + 0.5)
    return blend(mean.to(x.dtype).expand_as(x), x, factor)


_SMOOTH = (1.0, 1.0, 1.0, 1.0, 5.0, 1.0, 1.0, 1.0, 1.0)  # Pillow's ImageFilter.SMOOTH, scale 13


def smooth(x: torch.Tensor) -> torch.Tensor:
    """Pillow's SMOOTH filter (3x3, float32, rounded), the outermost pixels copied unchanged."""
    k = torch.tensor(_SMOOTH, dtype=torch.float64).div(13.0).to(torch.float32).tolist()
    f = x.to(torch.float32)
    h, w = f.shape[-2:]
    inner = torch.full(f[..., 1:-1, 1:-1].shape, 0.5, dtype=torch.float32, device=f.device)
    # Pillow's summation order: the row below (kernel row 0), the row itself, the row above.
    for kr, dy in ((0, 2), (1, 1), (2, 0)):
        rows = f[..., dy:h - 2 + dy, :]
        inner = inner + (rows[..., :-2] * k[3 * kr] + rows[..., 1:-1] * k[3 * kr + 1] + rows[..., 2:] * k[3 * kr + 2])
    out = f.clone()
    out[..., 1:-1, 1:-1] = inner.clamp_(0, 255).trunc_()
    return out.to(x.dtype)


def sharpness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return blend(smooth(x), x, factor)


# ----------------------------------------------------------------------------------------------
# Dispatch


# The ops that read only the pixels and the per-image argument: (x [n, C, H, W], arg [n]) -> x.
PIXEL_OPS = {
    "AutoContrast": lambda x, arg: autocontrast(x),
    "Equalize": lambda x, arg: equalize(x),
    "Invert": lambda x, arg: invert(x),
    "PosterizeIncreasing": posterize,
    "SolarizeIncreasing": solarize,
    "SolarizeAdd": solarize_add,
    "ColorIncreasing": color,
    "ContrastIncreasing": contrast,
    "BrightnessIncreasing": brightness,
    "SharpnessIncreasing": sharpness,
}


# The ops that move one coordinate (affine's ``axis``: False along x, True along y).
_ONE_AXIS = ("ShearX", "ShearY", "TranslateXRel", "TranslateYRel")


def shear_translate(x: torch.Tensor, op: torch.Tensor, arg: torch.Tensor, bicubic: torch.Tensor | bool,
                    fill: torch.Tensor) -> torch.Tensor:
    """ShearX/Y and TranslateX/YRel (``op``: indices into :data:`OPS`, [n], mixed) in one call."""
    h, w = x.shape[-2:]
    kind = _tables(x.device).one_axis_kind[op]  # 0 ShearX, 1 ShearY, 2 TranslateXRel, 3 TranslateYRel
    return affine(x, shear_translate_matrix(kind, arg, h, w), bicubic, fill, axis=kind % 2 == 1)


def apply_op(name: str, x: torch.Tensor, arg: torch.Tensor, bicubic: torch.Tensor | bool,
             fill: torch.Tensor) -> torch.Tensor:
    """Op ``name`` on grey-level images [n, C, H, W] with per-image ``arg`` [n] (from
    :func:`level_to_arg`), geometric filter ``bicubic`` (bool [n], or one bool for all) and ``fill``
    [C] (0..255)."""
    h, w = x.shape[-2:]
    if name in PIXEL_OPS:
        return PIXEL_OPS[name](x, arg)
    if name == "Rotate":
        return affine(x, rotate_matrix(arg, h, w), bicubic, fill)
    if name in _ONE_AXIS:
        return shear_translate(x, torch.full(arg.shape, OPS.index(name), device=arg.device), arg, bicubic, fill)
    raise ValueError(f"unknown RandAugment op {name!r}; known: {', '.join(OPS)}")


def img_mean(mean: tuple[float, ...] | list[float]) -> tuple[int, ...]:
    """timm's fill colour of the geometric ops: the normalisation mean on the 0..255 grid."""
    return tuple(min(255, round(255 * m)) for m in mean)


# The runs of one layer, in sort order: each non-geometric op; Rotate per filter; the four
# shear/translate ops together per filter (one call each, one filter computed); then the images
# whose op is not applied. The run of (op, bicubic) is _RUN_OF[op][bicubic].
_SHEAR_TRANSLATE = "ShearTranslate"
_RUNS: tuple[tuple[str, bool], ...] = (
    tuple((name, False) for name in OPS if name not in GEOMETRIC)
    + (("Rotate", False), ("Rotate", True), (_SHEAR_TRANSLATE, False), (_SHEAR_TRANSLATE, True)))
_RUN_OF = [[_RUNS.index((_SHEAR_TRANSLATE if name in _ONE_AXIS else name, cubic and name in GEOMETRIC))
            for cubic in (False, True)] for name in OPS] + [[len(_RUNS)] * 2]


class _Tables(NamedTuple):
    """The per-op constants as tensors on one device, indexed by op (into :data:`OPS`)."""

    linear_scale: torch.Tensor  # float64 [len(OPS)]: _LINEAR_SCALE, 0 elsewhere
    formula: torch.Tensor  # [len(OPS)]: _FORMULA, 0 elsewhere
    one_axis_kind: torch.Tensor  # [len(OPS)]: the index in _ONE_AXIS (shear_translate_matrix's kind), -1 elsewhere
    run_of: torch.Tensor  # [len(OPS) + 1, 2]: _RUN_OF


@functools.lru_cache(maxsize=8)
def _tables(device: torch.device) -> _Tables:
    """:class:`_Tables` on ``device``, made once (they are read on every batch)."""
    return _Tables(
        torch.tensor([_LINEAR_SCALE.get(n, 0.0) for n in OPS], dtype=torch.float64, device=device),
        torch.tensor([_FORMULA.get(n, 0) for n in OPS], device=device),
        torch.tensor([_ONE_AXIS.index(n) if n in _ONE_AXIS else -1 for n in OPS], device=device),
        torch.tensor(_RUN_OF, device=device))


def rand_augment(x: torch.Tensor, draw: PolicyDraw, fill: torch.Tensor) -> torch.Tensor:
    """Apply ``draw`` (:func:`sample_policy`) to grey-level images x [B, C, H, W], layer by layer.

    Each layer sorts the images into runs (:data:`_RUNS`) and transforms each run with one call: a
    fixed number of batched kernels whatever the batch size, one gather per layer, one filter per
    geometric call. The order is undone once at the end.
    """
    n_ops = len(OPS)
    dev = x.device
    run_of = _tables(dev).run_of
    perm = torch.arange(x.shape[0], device=dev)  # xs[i] is image perm[i]
    xs = x
    for layer in range(draw.op.shape[1]):
        op = torch.where(draw.applied[:, layer], draw.op[:, layer], n_ops)  # n_ops: not applied
        key = run_of[op, draw.bicubic[:, layer].long()][perm]
        order = torch.argsort(key, stable=True)
        counts = torch.bincount(key, minlength=len(_RUNS) + 1).tolist()
        perm = perm[order]
        op = op[perm]
        xs = xs.index_select(0, order)
        args = op_args(op.clamp(max=n_ops - 1), draw.magnitude[perm, layer], draw.negate[perm, layer])
        start = 0
        for (name, cubic), n in zip(_RUNS, counts):
            run = slice(start, start + n)
            start += n
            if n == 0:
                continue
            if name == _SHEAR_TRANSLATE:
                xs[run] = shear_translate(xs[run], op[run], args[run], cubic, fill)
            else:
                xs[run] = apply_op(name, xs[run], args[run], cubic, fill)
    return xs.index_select(0, torch.argsort(perm))  # a gather: index_copy_ runs serially on a CPU
