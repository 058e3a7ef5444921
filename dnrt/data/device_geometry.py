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

Both compute in float64: the affine sampler as Pillow's does, the resize because its fixed-point
sums are exact there whatever the summation order (:func:`resized_crop`).
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


def _per_image_filter(taps: Sequence[torch.Tensor], d: torch.Tensor, bicubic: torch.Tensor) -> torch.Tensor:
    """Pillow's interpolation of 4 taps (from floor - 1) at offset ``d``: the cubic of all 4 where
    ``bicubic`` (bool [n, 1, 1]), else the linear of the middle two, bilinear's own taps."""
    return torch.where(bicubic, _interp(taps, d), _interp(taps[1:3], d))


@functools.lru_cache(maxsize=16)
def _pixel_centres(h: int, w: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """x + 0.5 and y + 0.5 of every output pixel, row-major: float64 [1, H*W] each (read only)."""
    ys = (torch.arange(h, device=device, dtype=torch.float64) + 0.5).repeat_interleave(w).view(1, h * w)
    xs = (torch.arange(w, device=device, dtype=torch.float64) + 0.5).repeat(h).view(1, h * w)
    return xs, ys


def affine(x: torch.Tensor, matrix: torch.Tensor, bicubic: torch.Tensor | bool, fill: torch.Tensor,
           axis: torch.Tensor | None = None) -> torch.Tensor:
    """float [B, C, H, W] (grey levels) -> the same, transformed as Pillow's AFFINE ``transform``.

    ``matrix``: float [B, 6], Pillow's (a, b, c, d, e, f) per image; ``bicubic``: bool [B], or one
    bool for all (False: bilinear; one bool computes one filter, a tensor both); ``fill``: float [C]
    or [B, C], the colour of points mapped outside the image.

    ``axis``: bool [B] for matrices that move one coordinate only: False where a matrix keeps rows
    (d = f = 0, e = 1: ShearX, TranslateX), True where it keeps columns (a = 1, b = c = 0: ShearY,
    TranslateY). The other coordinate of every sample point is then an integer, where Pillow's
    interpolation across it returns the tap at the point exactly; so one tap is read there instead
    of 4: the same result for a quarter of the work. None: any matrix (Rotate).
    """
    b, c, h, w = x.shape
    dev = x.device
    m = matrix.to(device=dev, dtype=torch.float64).view(b, 6, 1)
    xs, ys = _pixel_centres(h, w, dev)
    u = m[:, 0] * xs + m[:, 1] * ys + m[:, 2]  # [B, H*W] source x
    v = m[:, 3] * xs + m[:, 4] * ys + m[:, 5]
    inside = (u >= 0) & (u < w) & (v >= 0) & (v < h)
    u, v = u - 0.5, v - 0.5
    flat = x.to(torch.float64).reshape(b, c, h * w)
    cubic = bicubic if isinstance(bicubic, bool) else bicubic.to(dev).view(b, 1, 1)
    # Taps from floor - 1 to floor + 2, the edge pixel repeated beyond the edge; one bool filter reads
    # only its own (bilinear's are the middle two of bicubic's four), a per-image one reads all four.
    offsets = (0, 1) if cubic is False else (-1, 0, 1, 2)

    def read(index: torch.Tensor) -> torch.Tensor:  # [B, H*W] -> [B, C, H*W]
        return flat.gather(2, index.unsqueeze(1).expand(b, c, -1))

    def interp(taps: list[torch.Tensor], d: torch.Tensor) -> torch.Tensor:
        return _interp(taps, d) if isinstance(cubic, bool) else _per_image_filter(taps, d, cubic)

    if axis is None:  # Pillow interpolates along x within each of the rows first, then along y
        u0, v0 = torch.floor(u), torch.floor(v)
        du, dv = (u - u0).unsqueeze(1), (v - v0).unsqueeze(1)
        cols = [(u0 + k).clamp_(0, w - 1).long() for k in offsets]
        rows = [(v0 + k).clamp_(0, h - 1).long().mul_(w) for k in offsets]
        out = interp([interp([read(row + col) for col in cols], du) for row in rows], dv)
    else:
        along_y = axis.to(dev).view(b, 1)
        t = torch.where(along_y, v, u)  # the coordinate that moves
        t0 = torch.floor(t)
        last = torch.where(along_y, h - 1, w - 1)
        stride = torch.where(along_y, w, 1)
        # the pixel index of the coordinate that stays (exact integers: x or y)
        offset = torch.where(along_y, u, v.mul(w)).long()
        taps = [read(torch.minimum((t0 + k).clamp_(min=0), last).long().mul_(stride).add_(offset)) for k in offsets]
        out = interp(taps, (t - t0).unsqueeze(1))
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
def _placed_table(in_max: int, out_size: int, device: torch.device) -> torch.Tensor:
    """:func:`_coeff_table` of both filters, times 2**-22 (exact: a power of two), unflipped and
    with the output order reversed (a mirrored crop), each row placed after ``in_max`` zero columns:
    float64 [2 * (in_max + 1) * 2, out_size, 2 * in_max], row ``(filter * (in_max + 1) + length) * 2
    + flip``. A crop starting at ``start`` reads columns ``in_max - start`` onwards (:func:`_crop_weights`)."""
    table = torch.stack([_coeff_table(m, in_max, out_size) for m in MODES]).flatten(0, 1)
    table = torch.stack([table, table.flip(1)], dim=1).flatten(0, 1)
    placed = torch.zeros(*table.shape[:2], 2 * in_max, dtype=torch.float64)
    placed[..., in_max:] = torch.ldexp(table, torch.tensor(-_PRECISION_BITS))
    return placed.to(device)


def _crop_weights(start: torch.Tensor, length: torch.Tensor, bicubic: torch.Tensor, flip: torch.Tensor,
                  full: int, out_size: int) -> torch.Tensor:
    """Per-image weights of a resize of [start, start + length) within ``full`` to ``out_size``,
    output order reversed where ``flip``: float64 [B, out_size, full]; all arguments [B].

    One indexing of an overlapping view: ``view[row, full - start]`` is the placed row's columns
    ``full - start .. 2 * full - start - 1``, so the taps land at ``start .. start + length - 1``.
    """
    placed = _placed_table(full, out_size, start.device)
    n, s, w2 = placed.shape
    view = placed.as_strided((n, full + 1, s, full), (s * w2, 1, w2, 1))
    row = ((bicubic.long() * (full + 1) + length.long()) * 2 + flip.long())
    return view[row, full - start.long()]


def _round_shift(acc: torch.Tensor) -> torch.Tensor:
    """Pillow's ``clip8``: the fixed-point sum (already scaled by 2**-22) rounded half up, clipped."""
    return acc.add_(0.5).floor_().clamp_(0, 255)


def resized_crop(x: torch.Tensor, top: torch.Tensor, left: torch.Tensor, height: torch.Tensor,
                 width: torch.Tensor, size: int, bicubic: torch.Tensor,
                 flip: torch.Tensor | None = None) -> torch.Tensor:
    """float or uint8 [B, C, H, W] (grey levels) -> float32 [B, C, size, size]: each image's box
    (top, left, height, width) (int-valued [B]) resized with its filter (``bicubic``: bool [B]),
    then mirrored left-right where ``flip`` (bool [B]) is set (reversed output columns: exact).

    Each pass is one batched matmul of the images by their weights, in float64: every product (an
    8-bit level times a coefficient of at most 23 bits, scaled by a power of two) and every partial
    sum fits its 53-bit significand, so the sums are Pillow's integer sums whatever the summation
    order, and :func:`_round_shift` is its rounding. Autocast is off: a lower precision would not be
    exact.
    """
    b, c, h, w = x.shape
    dev = x.device
    bicubic = bicubic.to(dev)
    flip = torch.zeros_like(bicubic) if flip is None else flip.to(dev)
    wx = _crop_weights(left, width, bicubic, flip, w, size)  # [B, S, W]
    wy = _crop_weights(top, height, bicubic, torch.zeros_like(flip), h, size)  # [B, S, H]
    # The layouts make both passes plain batched matmuls and fold the two transposes into the copies
    # that convert to float64 and back: columns first, [B, S, W] @ [B, W, C*H] -> [B, S, C, H]; then
    # rows, [B, S*C, H] @ [B, H, S] -> [B, S (column), C, S (row)].
    cols_first = torch.empty(b, w, c, h, dtype=torch.float64, device=dev)
    cols_first.copy_(x.permute(0, 3, 1, 2))
    with torch.autocast(device_type=dev.type, enabled=False):
        rows = _round_shift(torch.bmm(wx, cols_first.view(b, w, c * h)))
        out = _round_shift(torch.bmm(rows.view(b, size * c, h), wy.transpose(1, 2)))
    result = torch.empty(b, c, size, size, dtype=torch.float32, device=dev)
    return result.copy_(out.view(b, size, c, size).permute(0, 2, 3, 1))


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


