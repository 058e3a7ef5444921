"""The paper augmentation (timm ``rand-m9-mstd0.5-inc1``) on real images: every op at every magnitude
the policy can draw, posterize's 0-bit case, and a 100k-draw soak of the whole train transform."""

from __future__ import annotations

import concurrent.futures
import copy
import math
import multiprocessing

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits

from dnrt.data import seeded_rng
from dnrt.data.randaugment import POSTERIZE_OPS, posterize
from dnrt.data.transforms import RAND_AUGMENT, array_transform

CIFAR_MEAN, CIFAR_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
DIGITS_MEAN, DIGITS_STD = (0.3053,), (0.3759,)


def digit_images(n: int = 4) -> list[np.ndarray]:
    """Real handwritten digits (8x8, 0..16) upscaled 4x to uint8 32x32 by pixel repetition."""
    digits = load_digits().images[:n]
    return [np.kron(np.round(d * 255 / 16), np.ones((4, 4))).astype(np.uint8) for d in digits]


def generated_image(seed: int = 0) -> np.ndarray:
    """uint8 [32, 32, 3]: colour gradients, a bright square and noise, using the whole 0..255 range."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:32, 0:32]
    img = np.stack([yy * 8, xx * 8, (yy + xx) * 4], axis=-1) + rng.integers(0, 16, (32, 32, 3))
    img[8:20, 10:22] = 255
    return np.clip(img, 0, 255).astype(np.uint8)


def sample_images(mode: str) -> list[Image.Image]:
    rgb = [generated_image(0)] + [np.repeat(d[..., None], 3, axis=-1) for d in digit_images()]
    if mode == "RGB":
        return [Image.fromarray(a) for a in rgb]
    return [Image.fromarray(d) for d in digit_images()] + [Image.fromarray(rgb[0]).convert("L")]


def paper_transform(mode: str):
    mean, std = (CIFAR_MEAN, CIFAR_STD) if mode == "RGB" else (DIGITS_MEAN, DIGITS_STD)
    return array_transform("paper", train=True, native_size=32, size=32, mean=mean, std=std,
                           train_interpolation="random")


def rand_augment_ops(transform) -> list:
    """The timm AugmentOps of the (single) RandAugment inside a Compose."""
    ra = [t for t in transform.transforms if hasattr(t, "ops")]
    assert len(ra) == 1, transform
    return list(ra[0].ops)


# ----------------------------------------------------------------------------------------------
# Posterize itself


@pytest.mark.parametrize("mode", ["RGB", "L"])
@pytest.mark.parametrize("bits", range(0, 9))
def test_posterize_keeps_the_top_bits_and_zero_bits_is_black(mode, bits):
    img = sample_images(mode)[0]
    out = posterize(img, bits)
    assert out.mode == img.mode and out.size == img.size
    # Reference: the bit mask written out (0 bits: mask 0, every pixel black, as Pillow <= 12 gave).
    mask = (0xFF << (8 - bits)) & 0xFF
    np.testing.assert_array_equal(np.asarray(out), np.asarray(img) & mask)
    if bits == 0:
        assert not np.asarray(out).any() and np.asarray(img).any()


def test_paper_policy_uses_our_posterize_and_draws_zero_bits():
    """The policy really is rand-m9-mstd0.5-inc1, its posterize op is ours, and at magnitude 10 timm's
    PosterizeIncreasing asks for 0 bits (the case Pillow 13 refuses)."""
    assert RAND_AUGMENT == "rand-m9-mstd0.5-inc1"
    ops = rand_augment_ops(paper_transform("RGB"))
    assert len(ops) == 15 and all(op.magnitude == 9 and op.magnitude_std == 0.5 for op in ops)
    post = [op for op in ops if op.name in POSTERIZE_OPS]
    assert [op.name for op in post] == ["PosterizeIncreasing"] and post[0].aug_fn is posterize
    assert post[0].level_fn(10.0, post[0].hparams) == (0,)
    assert post[0].level_fn(9.0, post[0].hparams) == (1,)


# ----------------------------------------------------------------------------------------------
# Every op the policy can pick, at every magnitude it can draw, on real images in RGB and L


def _fixed(op, magnitude: float | None):
    """A copy of ``op`` applied always, at ``magnitude`` (None: the policy's own noisy draw)."""
    op = copy.copy(op)
    op.prob = 1.0
    if magnitude is not None:
        op.magnitude, op.magnitude_std = magnitude, 0.0
    return op


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_every_op_at_every_magnitude_returns_same_size_and_mode(mode):
    ops = rand_augment_ops(paper_transform(mode))
    images = sample_images(mode)
    calls = 0
    with seeded_rng(0):  # the noisy draws come from ``random``; restored afterwards
        for op in ops:
            for magnitude in (0.0, 9.0, 10.0, *([None] * 25)):
                applied = _fixed(op, magnitude)
                for img in images:
                    out = applied(img)
                    assert isinstance(out, Image.Image), (op.name, magnitude)
                    assert (out.mode, out.size) == (img.mode, img.size), (op.name, magnitude, mode)
                    calls += 1
    assert calls == 15 * 28 * len(images)


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_whole_paper_transform_on_real_images(mode):
    t = paper_transform(mode)
    channels = 3 if mode == "RGB" else 1
    with seeded_rng(1):
        for img in sample_images(mode) * 50:
            x = t(img)
            assert x.shape == (channels, 32, 32) and x.dtype == torch.float32 and torch.isfinite(x).all()


# ----------------------------------------------------------------------------------------------
# Soak: the full train transform 40,000 times


def expected_zero_bit_rate(num_ops: int = 15, layers: int = 2, prob: float = 0.5, magnitude: float = 9.0,
                           std: float = 0.5, top: float = 10.0) -> float:
    """P(an image gets at least one 0-bit posterize): each of ``layers`` picks one of ``num_ops``
    with replacement, applies it with ``prob``, and its magnitude N(9, 0.5) clipped to 10 must
    reach 10 (int(10 / 10 * 4) = 4 -> 4 - 4 = 0 bits)."""
    p_top = 0.5 * math.erfc((top - magnitude) / (std * math.sqrt(2)))
    per_layer = prob / num_ops * p_top
    return 1 - (1 - per_layer) ** layers


def _soak(seed: int, draws: int) -> tuple[int, int, int]:
    """``draws`` runs of the RGB paper transform on generated 32-px images from ``seed``; returns
    (images that got a 0-bit posterize, 0-bit calls whose output was all black, draws done)."""
    torch.set_num_threads(1)
    t = paper_transform("RGB")
    zero_bit_images: set[int] = set()
    current, black = [0], [0]

    def counting(img, bits, **kw):
        out = posterize(img, bits, **kw)
        if bits <= 0:
            zero_bit_images.add(current[0])
            black[0] += not np.asarray(out).any()
        return out

    for op in rand_augment_ops(t):
        if op.name in POSTERIZE_OPS:
            op.aug_fn = counting
    images = [Image.fromarray(generated_image(s)) for s in range(8)]
    done = 0
    with seeded_rng(seed):
        for i in range(draws):
            current[0] = i
            done += t(images[i % len(images)]).shape == (3, 32, 32)
    return len(zero_bit_images), black[0], done


@pytest.mark.slow
def test_soak_40k_draws_of_the_paper_transform():
    """40,000 draws (two processes of 20,000 with fixed seeds); the share of images whose posterize kept
    0 bits must match the policy's rate (about 61 expected, +- 8: the 4-sigma band leaves out 0)."""
    draws, procs = 40_000, 2
    ctx = multiprocessing.get_context("fork")  # the workers inherit the imported modules
    with concurrent.futures.ProcessPoolExecutor(procs, mp_context=ctx) as pool:
        parts = list(pool.map(_soak, [1234 + k for k in range(procs)], [draws // procs] * procs))
    n, black, done = (sum(col) for col in zip(*parts))
    assert done == draws
    p = expected_zero_bit_rate()
    sigma = math.sqrt(draws * p * (1 - p))
    print(f"\n0-bit posterize: {n} of {draws} images ({n / draws:.4%}; expected {p:.4%} = {draws * p:.0f} "
          f"+- {sigma:.0f})")
    assert abs(n - draws * p) < 4 * sigma, (n, draws * p, sigma)
    assert black >= n > 0


def test_paper_path_benchmark_runs_per_worker_count(tmp_path):
    """The `make bench` section on a tiny file set: one rate per worker count (figures unchecked)."""
    from benchmarks.loader import measure_paper_path, write_cifar10

    write_cifar10(tmp_path, num_train=40, num_test=8)
    out = measure_paper_path(str(tmp_path), torch.device("cpu"), batch_size=16, workers=(0, 1))
    assert set(out["imgs_per_s_by_workers"]) == {"0", "1"}
    assert all(v > 0 for v in out["imgs_per_s_by_workers"].values())
