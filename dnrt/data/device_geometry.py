"""Pillow's resampling on image batches: the affine transform and the resize of a crop.

Images are float [B, C, H, W] holding integer grey levels 0..255 (the uint8 grid), on any device;
every image carries its own parameters and its own filter (``bilinear`` or ``bicubic``), so one call
serves a batch whose images were each given a different transform, as timm's per-image PIL path does.

- :func:`affine` is ``Image.transform(size, AFFINE, (a, b, c, d, e, f), resample, fillcolor=fill)``:
  the output pixel (x, y) samples the input at (a x' + b y' + c, d x' + e y' + f) with x' = x + 0.5,
  y' = y + 0.5; a sample point outside [0, W) x [0, H) takes ``fill``; inside, taps beyond the edge
  repeat the edge pixel. Pillow's transform filters are its own: bilinear, and a cubic convolution
  with a = -1 (not the a = -0.5 of its resize), both in double precision, truncated to the grid.
- :func:`resized_crop` is ``img.crop(box).resize((S, S), resample)``: Pillow's separable
  convolution resize (bilinear support 1, bicubic a = -0.5, antialiased when shrinking), with its
  22-bit fixed-point coefficients, horizontal pass first and the intermediate rounded to uint8.
  Exact wherever no side shrinks (the paper recipe's crops at the native size); when one does,
  Pillow sometimes runs its vertical pass first, and a pixel may differ by one grey level.

The affine sampler computes in float64, as Pillow's; the resize's fixed-point sums are split so
that every step is exact in float32 (:func:`_fixed_point_apply`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch

MODES = ("bilinear", "bicubic")
_PRECISION_BITS = 22  # Pillow's Resample.c: 32 - 8 - 2


# ----------------------------------------------------------------------------------------------
# Affine transform (Pillow's Geometry.c)


def _interp(v: Sequence[torch.Tensor], d: torch.Tensor) -> torch.Tensor:
    """Pillow's BILINEAR (2 taps) or BICUBIC (4 taps, a = -1) macro, in its own operation order
    (``-a + b`` written ``b - a``: the same IEEE result)."""
    if len(v) == 2:
        return (v[1] - v[0]).mul_(d).add_(v[0])
    v1, v2, v3, v4 = v
    p2 = v3 - v1
    p3 = (v1 - v2).mul_(2).add_(v3).sub_(v4)
    p4 = (v2 - v1).sub_(v3).add_(v4)
    return p4.mul_(d).add_(p3).mul_(d).add_(p2).mul_(d).add_(v2)


def _sample(flat: torch.Tensor, u: torch.Tensor, v: torch.Tensor, h: int, w: int, taps: int) -> torch.Tensor:
    """Pillow's filter of ``taps`` taps at source points (u, v) [n, P] (pixel centres at integers)
    of images flat [n, C, H*W] (float64) -> [n, C, P]. Taps start at floor - (taps // 2 - 1): 0 for
    bilinear, -1 for bicubic; taps beyond the edge repeat the edge pixel."""
    n, c = flat.shape[:2]
    u0, v0 = torch.floor(u), torch.floor(v)
    du, dv = (u - u0).unsqueeze(1), (v - v0).unsqueeze(1)
    first = 1 - taps // 2
    cols = [(u0 + (first + k)).clamp_(0, w - 1).long() for k in range(taps)]
    rows = [(v0 + (first + k)).clamp_(0, h - 1).long().mul_(w) for k in range(taps)]
    # One gather per tap keeps every operand contiguous; Pillow interpolates along x within each
    # of the rows first, then along y.
    along_x = []
    for row in rows:
        vals = [flat.gather(2, (row + col).unsqueeze(1).expand(n, c, -1)) for col in cols]
        along_x.append(_interp(vals, du))
    return _interp(along_x, dv)


def affine(x: torch.Tensor, matrix: torch.Tensor, bicubic: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    """float [B, C, H, W] (grey levels) -> the same, transformed as Pillow's AFFINE ``transform``.

    ``matrix``: float [B, 6], Pillow's (a, b, c, d, e, f) per image; ``bicubic``: bool [B]
    (False: bilinear); ``fill``: float [C] or [B, C], the colour of points mapped outside the image.
    """
    b, c, h, w = x.shape
    dev = x.device
    m = matrix.to(device=dev, dtype=torch.float64).view(b, 6, 1)
    ys = (torch.arange(h, device=dev, dtype=torch.float64) + 0.5).repeat_interleave(w).view(1, h * w)
    xs = (torch.arange(w, device=dev, dtype=torch.float64) + 0.5).repeat(h).view(1, h * w)
    u = m[:, 0] * xs + m[:, 1] * ys + m[:, 2]  # [B, H*W] source x
    v = m[:, 3] * xs + m[:, 4] * ys + m[:, 5]
    inside = (u >= 0) & (u < w) & (v >= 0) & (v < h)
    u, v = u - 0.5, v - 0.5
    flat = x.to(torch.float64).reshape(b, c, h * w)
    cubic = bicubic.to(dev)
    out = torch.empty(b, c, h * w, device=dev, dtype=torch.float64)
    for taps, sel in ((2, ~cubic), (4, cubic)):
        idx = torch.nonzero(sel).squeeze(1)
        if idx.numel() == 0:
            continue
        out.index_copy_(0, idx, _sample(flat.index_select(0, idx), u.index_select(0, idx),
                                        v.index_select(0, idx), h, w, taps))
    out = out.clamp_(0, 255).floor_()  # Pillow casts to UINT8: truncation after clipping
    fill = fill.to(device=dev, dtype=torch.float64)
    fill = fill.view(1, c, 1) if fill.dim() == 1 else fill.view(b, c, 1)
    out = torch.where(inside.unsqueeze(1), out, fill)
    return out.view(b, c, h, w).to(x.dtype)


def rotate_matrix(degrees: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """``Image.rotate(degrees)`` (counter-clockwise, about the centre, same size) as AFFINE data: [B, 6]."""
    a = -torch.deg2rad(degrees.to(torch.float64))
    cos = torch.round(torch.cos(a) * 1e15) / 1e15  # Pillow rounds the matrix to 15 decimals
    sin = torch.round(torch.sin(a) * 1e15) / 1e15
    cx, cy = w / 2, h / 2
    c = cos * -cx + sin * -cy + cx
    f = -sin * -cx + cos * -cy + cy
    return torch.stack([cos, sin, c, -sin, cos, f], dim=-1)


# ----------------------------------------------------------------------------------------------
# Resize of a crop (Pillow's Resample.c)


def _bilinear_filter(t: float) -> float:
    t = abs(t)
    return 1.0 - t if t < 1.0 else 0.0


def _bicubic_filter(t: float) -> float:
    a = -0.5
    t = abs(t)
    if t < 1.0:
        return ((a + 2.0) * t - (a + 3.0)) * t * t + 1
    if t < 2.0:
        return (((t - 5) * t + 8) * t - 4) * a
    return 0.0


@functools.lru_cache(maxsize=64)
def _coeff_table(mode: str, in_max: int, out_size: int) -> torch.Tensor:
    """Pillow's fixed-point resize coefficients from every input length 1..in_max to ``out_size``:
    float64 [in_max + 1, out_size, in_max] (row s: an input of length s, taps at columns 0..s-1)."""
    support0, kernel = (1.0, _bilinear_filter) if mode == "bilinear" else (2.0, _bicubic_filter)
    table = torch.zeros(in_max + 1, out_size, in_max, dtype=torch.float64)
    for s in range(1, in_max + 1):
        scale = s / out_size
        filterscale = max(scale, 1.0)
        support = support0 * filterscale
        ss = 1.0 / filterscale  # Pillow multiplies by the reciprocal: one rounding it has, kept
        for xx in range(out_size):
            center = (xx + 0.5) * scale
            xmin = max(int(center - support + 0.5), 0)
            xmax = min(int(center + support + 0.5), s) - xmin
            ks = [kernel((x + xmin - center + 0.5) * ss) for x in range(xmax)]
            total = sum(ks)
            for x, k in enumerate(ks):
                k = k / total if total != 0.0 else k
                fixed = int(-0.5 + k * (1 << _PRECISION_BITS)) if k < 0 else int(0.5 + k * (1 << _PRECISION_BITS))
                table[s, xx, xmin + x] = fixed
    return table


@functools.lru_cache(maxsize=64)
def _coeff_table_on(mode: str, in_max: int, out_size: int, device: torch.device) -> torch.Tensor:
    """:func:`_coeff_table` on ``device``, copied there once."""
    return _coeff_table(mode, in_max, out_size).to(device)


def _crop_weights(table: torch.Tensor, start: torch.Tensor, length: torch.Tensor, full: int) -> torch.Tensor:
    """Per-image weights of a resize of [start, start + length) within ``full``: [B, out, full].

    ``table``: [B, out, in_max], each image's row of :func:`_coeff_table` (its filter, its length)."""
    cols = torch.arange(full, device=start.device).view(1, 1, full) - start.view(-1, 1, 1)
    valid = (cols >= 0) & (cols < length.view(-1, 1, 1))
    shifted = table.gather(2, cols.clamp(0, full - 1).expand(-1, table.shape[1], -1))
    return shifted.masked_fill_(~valid, 0)


def _fixed_point_apply(x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """One resize pass, ``round(x @ weights^T / 2**22)`` clipped to 0..255, exactly as Pillow's
    integer loop: x float32 [n, R, K] (grey levels), weights float64 [n, out, K] (integers) ->
    float32 [n, R, out].

    The 22-bit weights are split at bit 11 into two float32 matmuls whose sums stay below 2**24
    (exact in float32 whatever the summation order). Every factor has at most 11 significant bits,
    so TF32 matmuls are exact too; autocast is switched off here. The rounding shift
    ``(hi * 2**11 + lo + 2**21) >> 22`` is then ``floor((hi + 2**10 + floor(lo / 2**11)) / 2**11)``,
    whose every step is exact in float32.
    """
    wt = weights.transpose(1, 2)
    hi = torch.floor(wt / 2048)
    lo = (wt - hi * 2048).to(torch.float32)
    with torch.autocast(device_type=x.device.type, enabled=False):
        acc_hi = torch.bmm(x, hi.to(torch.float32))
        acc_lo = torch.bmm(x, lo)
    carry = acc_lo.div_(2048).floor_()
    return acc_hi.add_(1 << 10).add_(carry).div_(2048).floor_().clamp_(0, 255)


def resized_crop(x: torch.Tensor, top: torch.Tensor, left: torch.Tensor, height: torch.Tensor,
                 width: torch.Tensor, size: int, bicubic: torch.Tensor,
                 flip: torch.Tensor | None = None) -> torch.Tensor:
    """float [B, C, H, W] (grey levels) -> float32 [B, C, size, size]: each image's box
    (top, left, height, width) (int-valued [B]) resized with its filter (``bicubic``: bool [B]),
    then mirrored left-right where ``flip`` (bool [B]) is set (reversed output columns: exact)."""
    b, c, h, w = x.shape
    dev = x.device
    mode = bicubic.to(dev).long()
    tx = torch.stack([_coeff_table_on(m, w, size, dev) for m in MODES])  # [2, W + 1, S, W]
    ty = tx if h == w else torch.stack([_coeff_table_on(m, h, size, dev) for m in MODES])
    wx = _crop_weights(tx[mode, width.long()], left.long(), width.long(), w)  # [B, S, W]
    wy = _crop_weights(ty[mode, height.long()], top.long(), height.long(), h)  # [B, S, H]
    if flip is not None:
        wx = torch.where(flip.to(dev).view(-1, 1, 1), wx.flip(1), wx)
    rows = _fixed_point_apply(x.to(torch.float32).reshape(b, c * h, w), wx)  # [B, C*H, S]
    # The vertical pass contracts H: [B, S, H] @ [B, H, C*S] after moving C next to the columns.
    cols = rows.view(b, c, h, size).transpose(1, 2).reshape(b, h, c * size)
    out = _fixed_point_apply(cols.transpose(1, 2), wy)  # [B, C*S, S_out]
    return out.view(b, c, size, size).transpose(2, 3).contiguous()


def shear_translate_matrix(kind: torch.Tensor, value: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """timm's ShearX (0), ShearY (1), TranslateXRel (2), TranslateYRel (3) as AFFINE data [B, 6];
    ``value``: the shear factor or the translate fraction of the image side."""
    v = value.to(torch.float64)
    m = torch.zeros(v.shape[0], 6, dtype=torch.float64, device=v.device)
    m[:, 0] = 1
    m[:, 4] = 1
    m[:, 1] = torch.where(kind == 0, v, 0.0)
    m[:, 3] = torch.where(kind == 1, v, 0.0)
    m[:, 2] = torch.where(kind == 2, v * w, 0.0)
    m[:, 5] = torch.where(kind == 3, v * h, 0.0)
    return m


