"""The authors' data recipe (dataset.crop_pct, train_interpolation, normalization, drop_last) on
both loader paths, against torchvision's own transforms and loops written here."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dnrt.data import CifarData, DeviceLoader, PILLoader, SeededDataset, array_transform
from dnrt.data.pil import ArraySource, seeded_rng
from dnrt.testing import write_cifar10
from tests.test_data import CIFAR10_MEAN, CIFAR10_STD, collect, to_uint8


@pytest.fixture
def cifar10(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    root = tmp_path / "cifar10"
    return root, write_cifar10(root)



@pytest.mark.parametrize("device_resident", [False, True])
def test_paper_eval_is_resize_36_bilinear_then_center_crop_32(cifar10, device_resident):
    from torchvision import transforms as T

    root, w = cifar10
    data = CifarData(root=str(root), augment="paper", crop_pct=0.875, device_resident=device_resident)
    _, val = data.loaders(batch_size=7, seed=0, device="cpu")
    got = to_uint8(collect(val)[0], CIFAR10_MEAN, CIFAR10_STD)
    ref = T.Compose([T.Resize(36, interpolation=T.InterpolationMode.BILINEAR), T.CenterCrop(32), T.PILToTensor()])
    want = torch.stack([ref(Image.fromarray(x.transpose(1, 2, 0))) for x in w["test_x"]])
    full = torch.from_numpy(w["test_x"])
    assert got.shape == want.shape == full.shape and not torch.equal(want, full)
    if device_resident:  # torch's bilinear upsampling vs PIL's fixed-point one: within one grey level
        assert (got.int() - want.int()).abs().max() <= 1
    else:
        assert torch.equal(got, want)
    # Default (crop_pct null): the full image, as before.
    _, val = CifarData(root=str(root), augment="paper", device_resident=device_resident).loaders(
        batch_size=7, seed=0, device="cpu")
    assert torch.equal(to_uint8(collect(val)[0], CIFAR10_MEAN, CIFAR10_STD), full)


def test_paper_normalization_constants(cifar10):
    root, w = cifar10
    paper_std = (0.2023, 0.1994, 0.2010)
    data = CifarData(root=str(root), augment="none", normalization="paper")
    assert data.mean == CIFAR10_MEAN and data.std == paper_std
    assert CifarData(root=str(root)).std == CIFAR10_STD
    _, val = data.loaders(batch_size=20, seed=0, device="cpu")
    x = collect(val)[0]
    want = (torch.from_numpy(w["test_x"]).float() / 255 - torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)) \
        / torch.tensor(paper_std).view(1, 3, 1, 1)
    assert torch.allclose(x, want, atol=1e-6)
    c100 = CifarData(name="cifar100", root=str(root), normalization="paper")
    assert c100.std == CifarData(name="cifar100", root=str(root)).std == (0.2673, 0.2564, 0.2762)


@pytest.mark.parametrize("augment", ["paper", "paper_lite"])
def test_random_train_interpolation_is_drawn(monkeypatch, augment):
    import torchvision.transforms.functional as TF

    used = []
    real = TF.resized_crop

    def recording(img, top, left, height, width, size, interpolation=TF.InterpolationMode.BILINEAR, **kw):
        used.append(interpolation)
        return real(img, top, left, height, width, size, interpolation, **kw)

    monkeypatch.setattr(TF, "resized_crop", recording)
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8))
    for interp, expected in (("random", {"bilinear", "bicubic"}), (None, {"bicubic"}), ("bilinear", {"bilinear"})):
        used.clear()
        t = array_transform(augment, train=True, native_size=32, size=32, mean=CIFAR10_MEAN, std=CIFAR10_STD,
                            train_interpolation=interp)
        with seeded_rng(0):
            for _ in range(40):
                t(img)
        assert len(used) == 40 and {m.value for m in used} == expected, (interp, used)


def test_random_interpolation_on_the_device_mixes_both_kernels():
    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    ids = torch.arange(64)
    out = {}
    for interp in ("bicubic", "bilinear", "random"):
        loader = DeviceLoader(images, ids, batch_size=64, device="cpu", mean=CIFAR10_MEAN, std=CIFAR10_STD,
                              seed=0, train=True, augment="paper_lite", train_interpolation=interp)
        out[interp] = collect(loader)[0]
    # Same crops and flips (the coin is drawn after them); erasing boxes differ, so compare untouched samples.
    same_bic = [(out["random"][i] == out["bicubic"][i]).float().mean() > 0.6 for i in range(64)]
    same_bil = [(out["random"][i] == out["bilinear"][i]).float().mean() > 0.6 for i in range(64)]
    assert 10 < sum(same_bic) < 54 and 10 < sum(same_bil) < 54


@pytest.mark.parametrize("path", ["device", "pil"])
@pytest.mark.parametrize("n", [50, 47])
def test_keep_last_batch_visits_every_sample_once(path, n):
    batch = 8
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8)
    ids = torch.arange(n)  # labels = sample ids
    common = dict(batch_size=batch, device="cpu", seed=2, train=True, drop_last=False)
    if path == "device":
        loader = DeviceLoader(images, ids, mean=CIFAR10_MEAN, std=CIFAR10_STD, augment="standard", **common)
    else:
        tf = array_transform("paper", train=True, native_size=32, size=32, mean=CIFAR10_MEAN, std=CIFAR10_STD)
        loader = PILLoader(SeededDataset(ArraySource.from_nchw(images), ids, tf), **common)
    for epoch in (0, 1):
        loader.set_epoch(epoch)
        batches = [y for _, y in loader]
        assert len(loader) == len(batches) == -(-n // batch)
        assert [b.numel() for b in batches] == [batch] * (n // batch) + ([n % batch] if n % batch else [])
        assert sorted(torch.cat(batches).tolist()) == list(range(n))
    dropped = DeviceLoader(images, ids, mean=CIFAR10_MEAN, std=CIFAR10_STD, augment="standard",
                           **{**common, "drop_last": True})
    assert len(dropped) == n // batch


def test_paper_presets_set_the_authors_data_recipe_and_defaults_stay_neutral():
    from dnrt.config import signed_params
    from tests.harness.config import compose_cfg

    for preset in ("paper_ablation", "paper_vit", "paper_cnn", "paper_longtail", "paper_imagenet1k"):
        d = compose_cfg([f"experiment={preset}"]).dataset
        assert (d.augment, d.crop_pct, d.train_interpolation, d.normalization, d.drop_last) == \
            ("paper", 0.875, "random", "paper", "odd"), preset
    for name in ("cifar10", "cifar100", "cifar10_lt", "digits", "synthetic", "imagenet100"):
        signed = signed_params(compose_cfg([f"dataset={name}"]))
        new = {"dataset.train_interpolation", "dataset.normalization", "dataset.drop_last"}
        assert not new & set(signed), name  # the defaults are signature-neutral (conf/config.yaml)


@pytest.mark.parametrize("key,value,choices", [("crop_pct", 1.5, "(0, 1]"),
                                               ("train_interpolation", "nearest", "random"),
                                               ("normalization", "timm", "paper")])
def test_bad_recipe_values_name_the_key(cifar10, key, value, choices):
    root, _ = cifar10
    with pytest.raises(ValueError, match=rf"dataset\.{key}.*{re.escape(choices)}"):
        CifarData(root=str(root), **{key: value})
