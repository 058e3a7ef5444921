"""The paper's CNNs, each with a ``stem`` choice:

- ``cifar`` (default): inputs of 64 px or less get a CIFAR stem (no early down-sampling, so a 32-px
  image ends at a 4x4 map like CIFAR ResNets); larger inputs keep the ImageNet stem.
- ``imagenet``: torchvision's ImageNet definition unchanged at every input size (VGG-11 without
  BatchNorm, full classifiers), as the reference toolkit builds them. Run it on CIFAR either at
  32 px (AlexNet then needs >= 63 px and refuses) or upsampled with ``dataset.img_size=224``.

torchvision models have no ``in_chans`` (their first conv is rebuilt when it differs from 3) and
no stochastic depth (``drop_path`` > 0 is ignored with a warning).
"""

from __future__ import annotations

import warnings

import timm
import torchvision.models as tvm
from torch import nn

from .registry import register_model

SMALL_INPUT_MAX = 64  # at or below: CIFAR stem / classifier


def _is_small(img_size: int) -> bool:
    return img_size <= SMALL_INPUT_MAX


def _conv_like(conv: nn.Conv2d, in_chans: int, kernel: int | None = None, stride: int | None = None,
               padding: int | None = None) -> nn.Conv2d:
    """A fresh conv with ``conv``'s output channels and bias, optionally a new input width,
    kernel, stride and padding (a stem replacement)."""
    kernel = conv.kernel_size if kernel is None else kernel
    stride = conv.stride if stride is None else stride
    padding = conv.padding if padding is None else padding
    return nn.Conv2d(in_chans, conv.out_channels, kernel, stride=stride, padding=padding,
                     bias=conv.bias is not None)


def _drop_pools_that_do_not_fit(features: nn.Sequential, img_size: int) -> None:
    """Replace (in place) each max-pool whose input would be smaller than its window with an
    Identity, so inputs under 32 px (8-px digits) still end at >= 1x1. Assumes, as in the small-
    input stems here, that every conv keeps the spatial size."""
    size = img_size
    for i, m in enumerate(features):
        if not isinstance(m, nn.MaxPool2d):
            continue
        k, s, p = (v if isinstance(v, int) else v[0] for v in (m.kernel_size, m.stride, m.padding))
        if size + 2 * p < k:
            features[i] = nn.Identity()  # same index: the tap paths stay valid
        else:
            size = (size + 2 * p - k) // s + 1


def _require_size(name: str, img_size: int, minimum: int) -> None:
    """torchvision's ImageNet definition leaves a max-pool nothing to pool below ``minimum`` px."""
    if img_size < minimum:
        raise ValueError(f"{name} with model.stem=imagenet (torchvision's definition) needs inputs of at least "
                         f"{minimum} px, got {img_size} px: set dataset.img_size=224 (upsampled) or model.stem=cifar")


def _imagenet(factory, num_classes: int, in_chans: int, first_conv: str) -> nn.Module:
    """torchvision's definition; only a non-RGB input rebuilds the first conv (``first_conv`` path)."""
    model = factory(num_classes=num_classes)
    if in_chans != 3:
        parent, _, leaf = first_conv.rpartition(".")
        owner = model.get_submodule(parent)
        setattr(owner, leaf, _conv_like(owner.get_submodule(leaf), in_chans))
    return model


def _no_drop_path(name: str, drop_path: float) -> None:
    if drop_path:
        warnings.warn(f"{name} has no stochastic depth; drop_path={drop_path} is ignored", stacklevel=3)


@register_model("resnet18", taps=["layer*.*"], pooling="avg2d", stem_taps={"imagenet": ["layer*.*"]},
                note="stem=cifar: timm resnet18; below 64 px a CIFAR stem: 3x3 conv, stride 1, no max-pool. "
                     "stem=imagenet: torchvision resnet18 (7x7/2 stem and max-pool) at every size")
def resnet18(num_classes: int, img_size: int, in_chans: int, drop_path: float, stem: str = "cifar",
             zero_init_last: bool | None = None) -> nn.Module:
    """``zero_init_last``: zero the last BatchNorm of every block; None = the definition's default
    (timm's: yes; torchvision's, the authors' toolkit: no)."""
    if stem == "imagenet":
        _no_drop_path("resnet18 (stem=imagenet)", drop_path)
        model = _imagenet(tvm.resnet18, num_classes, in_chans, "conv1")
        if zero_init_last:
            for block in model.modules():
                if isinstance(block, tvm.resnet.BasicBlock):
                    nn.init.zeros_(block.bn2.weight)
        return model
    model = timm.create_model("resnet18", num_classes=num_classes, in_chans=in_chans, drop_path_rate=drop_path,
                              pretrained=False, zero_init_last=True if zero_init_last is None else zero_init_last)
    if _is_small(img_size):
        model.conv1 = nn.Conv2d(in_chans, 64, kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    return model


# AlexNet has no blocks: tap the output of each of its 5 conv layers (after the ReLU, and after
# the max-pool where the layer has one). Indices are torchvision's `features` Sequential.
ALEXNET_TAPS = ["features.2", "features.5", "features.7", "features.9", "features.12"]


@register_model("alexnet", taps=ALEXNET_TAPS, pooling="avg2d", stem_taps={"imagenet": ALEXNET_TAPS},
                note="torchvision alexnet; stem=cifar, <=64 px: first conv 3x3 stride 1 (was 11x11 stride 4), "
                     "adaptive avg-pool to 2x2 (was 6x6), so fc1 is 1024->4096; max-pools that do not fit "
                     "an input under 32 px become Identity. stem=imagenet: unchanged, inputs >= 63 px")
def alexnet(num_classes: int, img_size: int, in_chans: int, drop_path: float, stem: str = "cifar") -> nn.Module:
    _no_drop_path("alexnet", drop_path)
    if stem == "imagenet":
        _require_size("alexnet", img_size, 63)  # 11x11/4 conv, then three 3x3/2 max-pools
        return _imagenet(tvm.alexnet, num_classes, in_chans, "features.0")
    model = tvm.alexnet(num_classes=num_classes)
    if _is_small(img_size):
        # 32 px -> 32 -> pool 15 -> pool 7 -> pool 3; an 11x11/4 stem would leave nothing to pool
        model.features[0] = _conv_like(model.features[0], in_chans, kernel=3, stride=1, padding=1)
        _drop_pools_that_do_not_fit(model.features, img_size)
        model.avgpool = nn.AdaptiveAvgPool2d((2, 2))
        model.classifier[1] = nn.Linear(256 * 2 * 2, model.classifier[1].out_features)
    elif in_chans != 3:
        model.features[0] = _conv_like(model.features[0], in_chans)
    return model


# The 5 VGG stages end at the 5 max-pools of torchvision's vgg11_bn `features` (stem=cifar) or of
# its vgg11 `features`, without BatchNorm (stem=imagenet).
VGG11_TAPS = ["features.3", "features.7", "features.14", "features.21", "features.28"]
VGG11_IMAGENET_TAPS = ["features.2", "features.5", "features.10", "features.15", "features.20"]


@register_model("vgg11", taps=VGG11_TAPS, pooling="avg2d", stem_taps={"imagenet": VGG11_IMAGENET_TAPS},
                note="stem=cifar: torchvision vgg11_bn (VGG11 with BatchNorm); <=64 px: CIFAR classifier "
                     "(global avg-pool, 512-512-K MLP instead of 25088-4096-4096-K); max-pools that do "
                     "not fit an input under 32 px become Identity. stem=imagenet: torchvision vgg11 (no "
                     "BatchNorm, 25088-4096-4096-K head), inputs >= 32 px")
def vgg11(num_classes: int, img_size: int, in_chans: int, drop_path: float, stem: str = "cifar") -> nn.Module:
    _no_drop_path("vgg11", drop_path)
    if stem == "imagenet":
        _require_size("vgg11", img_size, 32)  # five 2x2/2 max-pools
        return _imagenet(tvm.vgg11, num_classes, in_chans, "features.0")
    model = tvm.vgg11_bn(num_classes=num_classes)
    if in_chans != 3:
        model.features[0] = _conv_like(model.features[0], in_chans)
    if _is_small(img_size):
        # five 2x poolings leave 1x1 at 32 px: a 7x7 adaptive pool would only replicate it
        _drop_pools_that_do_not_fit(model.features, img_size)
        model.avgpool = nn.AdaptiveAvgPool2d(1)
        model.classifier = nn.Sequential(
            nn.Linear(512, 512), nn.ReLU(inplace=True), nn.Dropout(0.5),
            nn.Linear(512, 512), nn.ReLU(inplace=True), nn.Dropout(0.5),
            nn.Linear(512, num_classes),
        )
    return model


# features.0 is the stem and features.18 the final 1x1 conv; 1..17 are the inverted residuals.
MOBILENET_TAPS = ["features.[1-9]", "features.1[0-7]"]


@register_model("mobilenet", taps=MOBILENET_TAPS, pooling="avg2d", stem_taps={"imagenet": MOBILENET_TAPS},
                note="torchvision mobilenet_v2 (ReLU6); stem=cifar, <=64 px: stem stride 1 and the first "
                     "24-channel block stride 1 (total stride 8, a 4x4 map at 32 px, as in CIFAR MobileNetV2). "
                     "stem=imagenet: unchanged (total stride 32)")
def mobilenet(num_classes: int, img_size: int, in_chans: int, drop_path: float, stem: str = "cifar") -> nn.Module:
    _no_drop_path("mobilenet", drop_path)
    if stem == "imagenet":
        return _imagenet(tvm.mobilenet_v2, num_classes, in_chans, "features.0.0")
    model = tvm.mobilenet_v2(num_classes=num_classes)
    stem = model.features[0][0]
    if _is_small(img_size):
        model.features[0][0] = _conv_like(stem, in_chans, stride=1)
        model.features[2].conv[1][0].stride = (1, 1)  # the depthwise 3x3 of block 2 down-samples
        model.features[2].stride = 1
    elif in_chans != 3:
        model.features[0][0] = _conv_like(stem, in_chans)
    return model


@register_model("shufflenet", taps=["stage*.*"], pooling="avg2d", stem_taps={"imagenet": ["stage*.*"]},
                note="torchvision shufflenet_v2_x1_0; stem=cifar, <=64 px: stem conv stride 1, no max-pool "
                     "(total stride 8, a 4x4 map at 32 px). stem=imagenet: unchanged (total stride 32)")
def shufflenet(num_classes: int, img_size: int, in_chans: int, drop_path: float, stem: str = "cifar") -> nn.Module:
    _no_drop_path("shufflenet", drop_path)
    if stem == "imagenet":
        return _imagenet(tvm.shufflenet_v2_x1_0, num_classes, in_chans, "conv1.0")
    model = tvm.shufflenet_v2_x1_0(num_classes=num_classes)
    if _is_small(img_size):
        model.conv1[0] = _conv_like(model.conv1[0], in_chans, stride=1)
        model.maxpool = nn.Identity()
    elif in_chans != 3:
        model.conv1[0] = _conv_like(model.conv1[0], in_chans)
    return model
