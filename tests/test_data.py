"""The data layer: real on-disk formats written here, both loader paths, determinism, DDP slices."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from dnrt.data import (
    CifarData,
    DatasetNotFoundError,
    DeviceLoader,
    DigitsData,
    ImageFolderData,
    PILLoader,
    SeededDataset,
    SyntheticData,
    array_transform,
    stratified_split,
)
from dnrt.data.pil import ArraySource
from dnrt.testing import write_cifar10, write_cifar100, write_image_folder
from tests.harness.config import CONF

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


@pytest.fixture
def cifar10(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    root = tmp_path / "cifar10"
    return root, write_cifar10(root)


def collect(loader) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*list(loader))
    return torch.cat(xs), torch.cat(ys)


def to_uint8(x: torch.Tensor, mean, std) -> torch.Tensor:
    m = torch.tensor(mean).view(1, -1, 1, 1)
    s = torch.tensor(std).view(1, -1, 1, 1)
    return (x * s + m).mul(255).round().clamp(0, 255).to(torch.uint8)


# ----------------------------------------------------------------------------------------------
# Digits


def test_digits_shapes_and_classes():
    data = DigitsData()
    assert (data.name, data.num_classes, data.in_chans, data.img_size) == ("digits", 10, 1, 8)
    train, val = data.loaders(batch_size=64, seed=0, device="cpu")
    assert train.num_samples + val.num_samples == 1797
    assert abs(val.num_samples / 1797 - 0.2) < 0.01
    assert len(train) == train.num_samples // 64  # drop_last
    assert len(val) == -(-val.num_samples // 64)  # no drop
    x, y = next(iter(train))
    assert x.shape == (64, 1, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.int64
    xv, yv = collect(val)
    assert xv.shape == (val.num_samples, 1, 8, 8)
    assert set(yv.tolist()) == set(range(10))
    assert abs(xv.mean().item()) < 0.1 and abs(xv.std().item() - 1) < 0.1  # normalised


def test_digits_read_without_sklearn_equal_sklearns_load_digits(monkeypatch):
    """Jobs read sklearn's digits file directly (importing sklearn.datasets would cost each job about
    0.8 s); the result must be load_digits()'s images (0..16, here scaled to 0..255) and labels."""
    import sys

    from sklearn.datasets import load_digits

    from dnrt.data import digits

    reference = load_digits()
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # any import of it now fails
    digits._load.cache_clear()
    images, labels = digits._load()
    assert images.shape == (1797, 1, 8, 8) and images.dtype == torch.uint8
    assert torch.equal(labels, torch.from_numpy(reference.target).long())
    back = (images[:, 0].double() * 16 / 255).round()  # undo the 0..255 scaling
    assert torch.equal(back, torch.from_numpy(reference.images)) and images.max() == 255


def test_digits_split_deterministic_disjoint_and_seed_dependent():
    from sklearn.datasets import load_digits

    labels = torch.from_numpy(load_digits().target)
    tr0, va0 = stratified_split(labels, 0.2, seed=0)
    tr0b, va0b = stratified_split(labels, 0.2, seed=0)
    tr1, va1 = stratified_split(labels, 0.2, seed=1)
    assert torch.equal(va0, va0b) and torch.equal(tr0, tr0b)
    assert not torch.equal(va0, va1)
    assert not set(tr0.tolist()) & set(va0.tolist())
    assert sorted(tr0.tolist() + va0.tolist()) == list(range(1797))
    data = DigitsData()
    a, b, c = data.splits(0)[1], data.splits(0)[1], data.splits(1)[1]
    assert torch.equal(a.images, b.images) and not torch.equal(a.images, c.images)


def test_digits_resize_on_device():
    train, _ = DigitsData(img_size=16).loaders(batch_size=8, seed=0, device="cpu")
    assert next(iter(train))[0].shape == (8, 1, 16, 16)


# ----------------------------------------------------------------------------------------------
# CIFAR reader


def test_cifar10_round_trip(cifar10):
    root, written = cifar10
    data = CifarData(name="cifar10", root=str(root), augment="none")
    assert data.num_classes == 10 and data.class_names[3] == "class3"
    train, val = data.loaders(batch_size=7, seed=0, device="cpu")
    assert (train.num_samples, val.num_samples) == (40, 20)
    xv, yv = collect(val)
    assert torch.equal(to_uint8(xv, CIFAR10_MEAN, CIFAR10_STD), torch.from_numpy(written["test_x"]))
    assert yv.tolist() == written["test_y"].tolist()
    # Train: shuffled, but every stored image and label comes out exactly once over an epoch.
    train_full, _ = data.loaders(batch_size=40, seed=0, device="cpu")
    xt, yt = collect(train_full)
    order = train_full.epoch_indices()
    assert torch.equal(to_uint8(xt, CIFAR10_MEAN, CIFAR10_STD), torch.from_numpy(written["train_x"])[order])
    assert yt.tolist() == written["train_y"][order.numpy()].tolist()


def test_cifar100_round_trip(tmp_path):
    written = write_cifar100(tmp_path / "c100")
    data = CifarData(name="cifar100", root=str(tmp_path / "c100"), augment="none", device_resident=False)
    assert data.num_classes == 100
    _, val = data.loaders(batch_size=32, seed=0, device="cpu")
    xv, yv = collect(val)
    mean, std = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
    assert torch.equal(to_uint8(xv, mean, std), torch.from_numpy(written["test_x"]))
    assert yv.tolist() == written["test_y"].tolist()


def test_missing_cifar_names_path_and_download(tmp_path):
    data = CifarData(name="cifar10", root=str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError) as err:
        data.loaders(batch_size=8, seed=0, device="cpu")
    msg = str(err.value)
    assert isinstance(err.value, DatasetNotFoundError)
    assert str((tmp_path / "nowhere" / "cifar-10-batches-py").resolve()) in msg
    assert "data_batch_1" in msg and "dataset.download=true" in msg
    with pytest.raises(DatasetNotFoundError, match="cifar-100-python"):
        _ = CifarData(name="cifar100", root=str(tmp_path)).num_classes


def test_partial_cifar_lists_missing_files(cifar10):
    root, _ = cifar10
    (root / "cifar-10-batches-py" / "data_batch_4").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"missing: data_batch_4\)"):
        _ = CifarData(root=str(root)).num_classes


# ----------------------------------------------------------------------------------------------
# Determinism


@pytest.mark.parametrize("device_resident", [True, False])
def test_set_epoch_determinism(cifar10, device_resident):
    root, _ = cifar10
    data = CifarData(root=str(root), augment="standard", device_resident=device_resident)
    train, _ = data.loaders(batch_size=8, seed=3, device="cpu")
    train.set_epoch(2)
    first = list(train)
    second = list(train)
    resumed, _ = data.loaders(batch_size=8, seed=3, device="cpu")  # a fresh process resuming at epoch 2
    torch.manual_seed(1234)  # the global RNG must not matter
    resumed.set_epoch(2)
    third = list(resumed)
    for (a, ya), (b, yb), (c, yc) in zip(first, second, third):
        assert torch.equal(a, b) and torch.equal(a, c) and torch.equal(ya, yb) and torch.equal(ya, yc)
    train.set_epoch(3)
    other = list(train)
    assert not torch.equal(train.epoch_indices(), resumed.epoch_indices())
    assert not all(torch.equal(a, b) for (a, _), (b, _) in zip(first, other))
    other_seed, _ = data.loaders(batch_size=8, seed=4, device="cpu")
    other_seed.set_epoch(2)
    assert not torch.equal(other_seed.epoch_indices(), resumed.epoch_indices())
    torch.manual_seed(0)
    rng_before = torch.get_rng_state()
    list(train)
    assert torch.equal(torch.get_rng_state(), rng_before)


# ----------------------------------------------------------------------------------------------
# Device path vs PIL path


def _both_paths(images: torch.Tensor, labels: torch.Tensor, augment: str, seed: int = 0, batch: int = 16):
    common = dict(batch_size=batch, device="cpu", seed=seed, train=True)
    dev = DeviceLoader(images, labels, mean=CIFAR10_MEAN, std=CIFAR10_STD, augment=augment, **common)
    tf = array_transform(augment, train=True, native_size=32, size=32, mean=CIFAR10_MEAN, std=CIFAR10_STD)
    pil = PILLoader(SeededDataset(ArraySource.from_nchw(images), labels, tf), **common)
    return dev, pil


def test_device_and_pil_paths_identical_without_augmentation(cifar10):
    _, w = cifar10
    images, labels = torch.from_numpy(w["train_x"]), torch.from_numpy(w["train_y"])
    dev, pil = _both_paths(images, labels, "none")
    assert torch.equal(dev.epoch_indices(), pil.epoch_indices())
    (xd, yd), (xp, yp) = collect(dev), collect(pil)
    assert torch.equal(xd, xp) and torch.equal(yd, yp)  # bit-identical normalisation
    # Sorted back by sample index, both are the stored images.
    idx = torch.cat(dev.batch_indices())
    restored = to_uint8(xd, CIFAR10_MEAN, CIFAR10_STD)[torch.argsort(idx)]
    assert torch.equal(restored, images[torch.sort(idx).values])


def _matching_crop(out: torch.Tensor, src: torch.Tensor, pad: int = 4) -> tuple[int, int, bool] | None:
    padded = torch.nn.functional.pad(src, (pad, pad, pad, pad))
    for top in range(2 * pad + 1):
        for left in range(2 * pad + 1):
            crop = padded[:, top:top + 32, left:left + 32]
            for flip in (False, True):
                if torch.equal(out, crop.flip(-1) if flip else crop):
                    return top, left, flip
    return None


@pytest.mark.parametrize("path", ["device", "pil"])
def test_standard_augment_outputs_are_padded_crops(cifar10, path):
    _, w = cifar10
    images, labels = torch.from_numpy(w["train_x"]), torch.from_numpy(w["train_y"])
    loader = dict(zip(("device", "pil"), _both_paths(images, labels, "standard")))[path]
    x, _ = collect(loader)
    idx = torch.cat(loader.batch_indices())
    seen = set()
    for out, i in zip(to_uint8(x, CIFAR10_MEAN, CIFAR10_STD), idx.tolist()):
        match = _matching_crop(out, images[i])
        assert match is not None, f"output for sample {i} is no padded crop of it"
        seen.add(match)
    assert {m[2] for m in seen} == {False, True}  # both flip states happen
    assert len({m[:2] for m in seen}) > 10  # many offsets happen


def test_standard_augment_statistics_match_across_paths(tmp_path):
    root = tmp_path / "c10"
    w = write_cifar10(root, per_class_train=40, per_class_test=1)
    images, labels = torch.from_numpy(w["train_x"]), torch.from_numpy(w["train_y"])
    dev, pil = _both_paths(images, labels, "standard", batch=100)
    (xd, _), (xp, _) = collect(dev), collect(pil)
    for stat in (lambda t: t.mean(dim=(0, 2, 3)), lambda t: t.std(dim=(0, 2, 3))):
        assert torch.allclose(stat(xd), stat(xp), atol=0.03), (stat(xd), stat(xp))
    # Zero padding shows: the fraction of black (padded) pixels agrees too, and is not zero.
    frac = [(to_uint8(t, CIFAR10_MEAN, CIFAR10_STD) == 0).all(dim=1).float().mean().item() for t in (xd, xp)]
    assert 0.05 < frac[0] < 0.2 and abs(frac[0] - frac[1]) < 0.02


def test_paper_lite_on_both_paths(cifar10):
    _, w = cifar10
    images, labels = torch.from_numpy(w["train_x"]), torch.from_numpy(w["train_y"])
    dev, pil = _both_paths(images, labels, "paper_lite", batch=40)
    (xd, _), (xp, _) = collect(dev), collect(pil)
    assert xd.shape == xp.shape == (40, 3, 32, 32)
    plain, _ = collect(_both_paths(images, labels, "none", batch=40)[0])
    assert not torch.equal(xd, plain)
    assert torch.equal(xd, collect(dev)[0])
    assert abs(xd.mean().item() - xp.mean().item()) < 0.25


def test_paper_augment_falls_back_to_pil_path(cifar10):
    root, _ = cifar10
    train, val = CifarData(root=str(root), augment="paper").loaders(batch_size=8, seed=0, device="cpu")
    assert isinstance(train, PILLoader) and isinstance(val, DeviceLoader)
    x, _ = next(iter(train))
    assert x.shape == (8, 3, 32, 32)


# ----------------------------------------------------------------------------------------------
# ImageFolder, synthetic, configs


def test_imagefolder_tree(tmp_path):
    written = write_image_folder(tmp_path / "tree")
    data = ImageFolderData(root=str(tmp_path / "tree"), img_size=32, crop_pct=1.0)
    assert data.classes == ["cat", "dog", "emu"] and data.num_classes == 3
    train, val = data.loaders(batch_size=4, seed=0, device="cpu")
    assert (train.num_samples, val.num_samples) == (9, 6)
    x, y = next(iter(train))
    assert x.shape == (4, 3, 32, 32) and x.dtype == torch.float32
    xv, yv = collect(val)
    assert yv.tolist() == [0, 0, 1, 1, 2, 2]
    from timm.data.constants import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
    back = to_uint8(xv, IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD)
    stored = [a for cls in ("cat", "dog", "emu") for a in written[cls]]
    for out, arr in zip(back, stored):
        if arr is not None:  # PNG is lossless: pixels must come back exactly
            assert torch.equal(out, torch.from_numpy(arr).permute(2, 0, 1))


def test_imagefolder_missing_root(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=str((tmp_path / "nope" / "train").resolve())):
        _ = ImageFolderData(root=str(tmp_path / "nope")).num_classes


def test_synthetic_fixed_by_seed():
    data = SyntheticData(num_classes=4, img_size=16, in_chans=2, num_samples=64, val_samples=16)
    a, b, c = data.splits(0)[0], data.splits(0)[0], data.splits(1)[0]
    assert torch.equal(a.images, b.images) and not torch.equal(a.images, c.images)
    train, _ = data.loaders(batch_size=8, seed=0, device="cpu")
    x, y = next(iter(train))
    assert x.shape == (8, 2, 16, 16) and int(y.max()) < 4


@pytest.mark.parametrize("name", sorted(p.stem for p in (CONF / "dataset").glob("*.yaml")))
def test_dataset_configs_instantiate(name, tmp_path):
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        cfg = compose("config", overrides=[f"dataset={name}", f"data_dir={tmp_path}"])
    data = instantiate(cfg.dataset)
    assert data.name == name
    if getattr(data, "task", "image") == "image":  # node data sets have no image keys (tests/test_graph.py)
        assert {"name", "fraction", "augment", "img_size"} <= set(cfg.dataset)
        assert data.img_size == cfg.dataset.img_size
        assert isinstance(data.in_chans, int)
    if hasattr(data, "root"):
        assert Path(data.root) == tmp_path / cfg.dataset.root.split("/")[-1]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_device_loader_on_cuda(cifar10):
    root, w = cifar10
    train, val = CifarData(root=str(root), augment="standard").loaders(batch_size=8, seed=0, device="cuda")
    x, y = next(iter(train))
    assert x.is_cuda and y.is_cuda and x.shape == (8, 3, 32, 32)
    xv, _ = collect(val)
    assert torch.equal(to_uint8(xv.cpu(), CIFAR10_MEAN, CIFAR10_STD), torch.from_numpy(w["test_x"]))
