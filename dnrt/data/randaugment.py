"""RandAugment's posterize with the semantics the paper's recipe was trained with.

With ``inc1`` timm maps a magnitude m to ``4 - int(m / 10 * 4)`` kept bits (PosterizeIncreasing),
and the ``mstd0.5`` noise around m=9, clipped to 10, reaches 10 for about 2% of draws: 0 bits.
Pillow up to 12 posterized to 0 bits as an all-black image (its mask ``~(2**8 - 1)`` clears every
bit); Pillow 13 raises ``ValueError: bits must be between or equal to 1 and 8`` instead, which
kills a CIFAR epoch of the paper recipe almost surely. :func:`posterize` gives Pillow 12's black image
on every Pillow version, and :func:`use_black_posterize` points the posterize ops of a built
timm transform at it (the transform's own ops only: timm's module tables are left alone).
"""

from __future__ import annotations

from PIL import Image, ImageOps

# timm's posterize op names (RandAugment uses PosterizeIncreasing with inc1, Posterize without).
POSTERIZE_OPS = ("Posterize", "PosterizeIncreasing", "PosterizeOriginal")


def posterize(img: Image.Image, bits_to_keep: int, **_) -> Image.Image:
    """Keep the ``bits_to_keep`` most significant bits of every channel; same size and mode.

    8 or more bits: the image itself; 0 or fewer: all black (Pillow <= 12); 1-7: Pillow's posterize.
    Extra keyword arguments (timm passes ``fillcolor`` and ``resample`` to every op) are ignored.
    """
    bits = int(bits_to_keep)
    if bits >= 8:
        return img
    if bits <= 0:
        return Image.new(img.mode, img.size)  # every channel 0, as Pillow 12's all-zero mask gave
    return ImageOps.posterize(img, bits)


def _augment_ops(transform: object) -> list:
    """Every timm ``AugmentOp`` reachable from ``transform`` (Compose lists, RandAugment's ops)."""
    found = []
    stack = [transform]
    while stack:
        t = stack.pop()
        if hasattr(t, "aug_fn") and hasattr(t, "name"):
            found.append(t)
        stack.extend(getattr(t, "transforms", None) or [])
        stack.extend(getattr(t, "ops", None) or [])
        stack.extend(p for sub in getattr(t, "policy", None) or [] for p in sub)  # AutoAugment sub-policies
    return found


def use_black_posterize(transform: object) -> int:
    """Replace the posterize function of every posterize op inside ``transform``; returns how many.

    ``transform``: a timm/torchvision transform (e.g. from ``timm.data.create_transform``), changed
    in place.
    """
    ops = [op for op in _augment_ops(transform) if op.name in POSTERIZE_OPS]
    for op in ops:
        op.aug_fn = posterize
    return len(ops)
