"""The data layer's sampling: long-tailed class counts, stratified fractions and DDP slices of an
epoch on both loader paths (the formats and loaders themselves: tests/test_data.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dnrt.data import (
    CifarLongTailData,
    DeviceLoader,
    DigitsData,
    PILLoader,
    SeededDataset,
    SyntheticData,
    array_transform,
    long_tail_counts,
)
from dnrt.data.pil import ArraySource
from dnrt.testing import write_cifar10
from tests.test_data import CIFAR10_MEAN, CIFAR10_STD, collect


def test_long_tail_counts():
    for ratio, total in ((10, 20431), (50, 13996), (100, 12406)):
        counts = long_tail_counts(5000, 10, ratio)
        assert counts[0] == 5000 and counts[-1] == 5000 // ratio and sum(counts) == total
        assert all(a > b for a, b in zip(counts, counts[1:]))
    assert long_tail_counts(5000, 10, 100) == [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]


def test_long_tail_dataset_counts(tmp_path):
    root = tmp_path / "c10"
    write_cifar10(root, per_class_train=20, per_class_test=3)
    data = CifarLongTailData(root=str(root), imbalance_ratio=10, augment="none")
    expected = long_tail_counts(20, 10, 10)
    assert data.class_counts() == expected and expected[0] == 20 and expected[-1] == 2
    train, val = data.loaders(batch_size=1000, seed=0, device="cpu")
    _, y = collect(train)
    assert torch.bincount(y, minlength=10).tolist() == expected
    assert torch.bincount(collect(val)[1], minlength=10).tolist() == [3] * 10  # balanced test
    s0, s1 = data.splits(0)[0], data.splits(1)[0]
    assert not torch.equal(s0.images, s1.images)  # subset follows the run seed...
    fixed = CifarLongTailData(root=str(root), imbalance_ratio=10, subset_seed=7)
    assert torch.equal(fixed.splits(0)[0].images, fixed.splits(1)[0].images)  # ...unless pinned


def test_fraction_is_stratified_and_seeded():
    full = DigitsData().splits(0)[0]
    per_class = torch.bincount(full.labels, minlength=10)
    train, _ = DigitsData(fraction=0.1).loaders(batch_size=1000, seed=0, device="cpu")
    _, y = collect(train)
    assert torch.bincount(y, minlength=10).tolist() == [int(np.floor(0.1 * n + 0.5)) for n in per_class.tolist()]
    tiny, tiny_val = DigitsData(fraction=0.001).loaders(batch_size=1000, seed=0, device="cpu")
    assert tiny.num_samples == 10 and tiny_val.num_samples == 10  # at least one per class
    a = collect(DigitsData(fraction=0.1).loaders(batch_size=1000, seed=0, device="cpu")[1])[0]
    b = collect(DigitsData(fraction=0.1).loaders(batch_size=1000, seed=1, device="cpu")[1])[0]
    assert a.shape != b.shape or not torch.equal(a, b)


@pytest.mark.parametrize("path", ["device", "pil"])
def test_ddp_ranks_are_disjoint_and_cover_the_epoch(path):
    n, batch = 48, 6
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8)
    ids = torch.arange(n)  # labels = sample ids, so the batches say which samples they hold
    seen = []
    for rank in range(2):
        common = dict(batch_size=batch, device="cpu", seed=5, train=True, rank=rank, world_size=2)
        if path == "device":
            loader = DeviceLoader(images, ids, mean=CIFAR10_MEAN, std=CIFAR10_STD, augment="standard", **common)
        else:
            tf = array_transform("standard", train=True, native_size=32, size=32, mean=CIFAR10_MEAN,
                                 std=CIFAR10_STD)
            loader = PILLoader(SeededDataset(ArraySource.from_nchw(images), ids, tf), **common)
        loader.set_epoch(1)
        assert len(loader) == n // 2 // batch
        batches = [y for _, y in loader]
        assert all(y.numel() == batch for y in batches)
        seen.append(torch.cat(batches).tolist())
    assert not set(seen[0]) & set(seen[1])
    assert sorted(seen[0] + seen[1]) == list(range(n))


def test_small_split_single_batch_and_val_not_sharded():
    data = SyntheticData(num_samples=10, val_samples=10, num_classes=2, img_size=8)
    train, val = data.loaders(batch_size=16, seed=0, device="cpu", rank=1, world_size=2)
    assert len(train) == 1 and next(iter(train))[0].shape[0] == 5  # fewer than a batch: no drop
    assert len(val) == 1 and next(iter(val))[0].shape[0] == 10  # every rank sees all of val
