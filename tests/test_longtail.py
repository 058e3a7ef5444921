"""Paper Table 5 (right): long-tailed CIFAR-10 and the CIFAR ResNet-32 backbone."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dnrt.data import CifarLongTailData
from dnrt.data.longtail import long_tail_counts
from dnrt.models import create_model
from dnrt.models.resnet_cifar import PadShortcut
from dnrt.testing import write_cifar10
from tests.test_data import collect


def literature_counts(n_max: int, num_classes: int, ratio: float) -> list[int]:
    """n_i = n_max * (1 / ratio)^(i / (C - 1)), truncated to an integer, as in Cao et al. (2019)."""
    return [int(n_max * (1 / ratio) ** (i / (num_classes - 1))) for i in range(num_classes)]


@pytest.mark.parametrize("ratio", [10, 50, 100])
@pytest.mark.parametrize("n_max,num_classes", [(5000, 10), (500, 100)])
def test_long_tail_counts_follow_the_exponential_profile(ratio, n_max, num_classes):
    counts = long_tail_counts(n_max, num_classes, ratio)
    assert counts == literature_counts(n_max, num_classes, ratio)
    assert counts[0] == n_max and counts[-1] == n_max // ratio


def test_long_tail_totals_are_the_literature_sizes():
    """CIFAR-10-LT has 20,431 / 13,996 / 12,406 training images at ratios 10 / 50 / 100, and
    CIFAR-100-LT 10,847 at ratio 100 (the sizes the long-tail papers report)."""
    assert [sum(long_tail_counts(5000, 10, r)) for r in (10, 50, 100)] == [20431, 13996, 12406]
    assert sum(long_tail_counts(500, 100, 100)) == 10847


@pytest.mark.parametrize("ratio", [10, 50, 100])
def test_long_tail_cifar10_train_split_and_balanced_test(tmp_path, ratio):
    """The data set keeps the profile's count of each class (n_max = 100 stored per class) and
    leaves the test split as it is."""
    write_cifar10(tmp_path / "c10", per_class_train=100, per_class_test=3)
    data = CifarLongTailData(root=str(tmp_path / "c10"), imbalance_ratio=ratio, augment="none")
    train, val = data.loaders(batch_size=2000, seed=0, device="cpu")
    assert torch.bincount(collect(train)[1], minlength=10).tolist() == literature_counts(100, 10, ratio)
    assert torch.bincount(collect(val)[1], minlength=10).tolist() == [3] * 10


def test_resnet32_has_the_standard_cifar_parameter_count():
    """464,154 parameters for 10 classes with option-A shortcuts (He et al. 2016: 0.46 M)."""
    model = create_model("resnet32", num_classes=10, img_size=32).model
    assert sum(p.numel() for p in model.parameters()) == 464_154
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert len(convs) + len(linears) == 32  # 6n + 2 weight layers, n = 5
    widths = [c.out_channels for c in convs]
    assert widths == [16] * 11 + [32] * 10 + [64] * 10


def test_resnet32_maps_and_taps():
    built = create_model("resnet32", num_classes=10, img_size=32)
    x = torch.randn(2, 3, 32, 32)
    shapes = {}
    hooks = [getattr(built.model, f"layer{s}").register_forward_hook(
        lambda m, i, o, s=s: shapes.__setitem__(s, tuple(o.shape))) for s in (1, 2, 3)]
    assert built.model(x).shape == (2, 10)
    for h in hooks:
        h.remove()
    assert shapes == {1: (2, 16, 32, 32), 2: (2, 32, 16, 16), 3: (2, 64, 8, 8)}
    assert built.taps == ["layer*.*"] and built.pooling == "avg2d"
    assert create_model("resnet32", num_classes=10, img_size=8, in_chans=1).model(torch.randn(2, 1, 8, 8)).shape \
        == (2, 10)


def test_option_a_shortcut_subsamples_and_pads_with_zeros():
    x = torch.randn(2, 16, 8, 8)
    out = PadShortcut(16, 32, stride=2)(x)
    assert out.shape == (2, 32, 4, 4)
    torch.testing.assert_close(out[:, 8:24], x[:, :, ::2, ::2])
    assert out[:, :8].abs().sum() == 0 and out[:, 24:].abs().sum() == 0


@pytest.mark.slow
@pytest.mark.parametrize("act", ["relu", "raa", "gdn"])
def test_resnet32_swaps_every_relu_and_trains_a_step(act):
    built = create_model("resnet32", num_classes=10, img_size=32, act=act)
    assert len(built.surgery.sites) == 31  # the stem and two per block
    assert not any(isinstance(m, torch.nn.ReLU) for m in built.model.modules()) or act == "relu"
    opt = torch.optim.SGD(built.model.parameters(), lr=0.1)
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    F.cross_entropy(built.model(x), y).backward()
    opt.step()
    assert torch.isfinite(F.cross_entropy(built.model(x), y))
