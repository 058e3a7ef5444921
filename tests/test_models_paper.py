"""The paper's 10 architectures: every activation, ARR taps, surgery completeness, RAA's
equivalence at init and the 32-px / 224-px adaptations (CPU, batch 1-2). The authors' definitions
are checked in tests/test_models_authors.py."""

from __future__ import annotations

import copy
import functools
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dnrt.models import create_model, model_spec
from dnrt.nn import ARR, RAA, ResponseTaps, list_acts, swap_activations
from dnrt.nn.surgery import ACTIVATION_TYPES

NUM_CLASSES = 10
GELU_MODELS = ["vit_tiny", "deit_tiny", "cait_xxs", "pvt_tiny", "tnt_small"]
RELU_MODELS = ["alexnet", "vgg11", "resnet18", "mobilenet", "shufflenet"]
PAPER_MODELS = GELU_MODELS + RELU_MODELS
# Registered beside the paper's models: PVT-v2-b1 with a stride-1 stem (model=pvt_v2_b1_cifar).
ALL_MODELS = PAPER_MODELS + ["pvt_v2_b1_cifar"]

# The activation type each model is built with before surgery.
ORIGINAL_ACT = {**{n: nn.GELU for n in GELU_MODELS}, **{n: nn.ReLU for n in RELU_MODELS},
                "mobilenet": nn.ReLU6, "pvt_v2_b1_cifar": nn.GELU}

# Per model at 32 px: (number of ARR taps, type of every tapped module, pooled response dims).
EXPECTED_TAPS = {
    "vit_tiny": (12, "Block", {192}),
    "deit_tiny": (12, "Block", {192}),
    "cait_xxs": (26, ("LayerScaleBlock", "LayerScaleBlockClassAttn"), {192}),
    "pvt_tiny": (8, "Block", {64, 128, 320, 512}),
    "pvt_v2_b1_cifar": (8, "Block", {64, 128, 320, 512}),
    "tnt_small": (12, "Block", {384}),
    "alexnet": (5, ("MaxPool2d", "ReLU"), {64, 192, 384, 256}),
    "vgg11": (5, "MaxPool2d", {64, 128, 256, 512}),
    "resnet18": (8, "BasicBlock", {64, 128, 256, 512}),
    "mobilenet": (17, "InvertedResidual", {16, 24, 32, 64, 96, 160, 320}),
    "shufflenet": (16, "InvertedResidual", {116, 232, 464}),
}

# The 32-px adaptation: the shape of the last feature map (or token sequence) per model.
LAST_FEATURES_32PX = {
    "vit_tiny": ("blocks.11", (1, 65, 192)),  # patch 4: 8x8 tokens + class token
    "deit_tiny": ("blocks.11", (1, 66, 192)),  # + distillation token
    "cait_xxs": ("blocks.23", (1, 64, 192)),
    "pvt_tiny": ("stages.3", (1, 2, 512)),  # PVT v1: a 1x1 last stage + its class token
    "pvt_v2_b1_cifar": ("stages.3", (1, 512, 4, 4)),  # stride-1 stem: a 32-16-8-4 pyramid
    "tnt_small": ("pixel_embed", (64, 1, 24)),  # 64 patches of one inner pixel (inner stride 4)
    "alexnet": ("features", (1, 256, 3, 3)),
    "vgg11": ("features", (1, 512, 1, 1)),
    "resnet18": ("layer4", (1, 512, 4, 4)),
    "mobilenet": ("features.18", (1, 1280, 4, 4)),
    "shufflenet": ("conv5", (1, 1024, 4, 4)),
}


def _images(batch: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


@functools.cache
def _base(name: str) -> nn.Module:
    """The model at 32 px with its own activations; built once, deep-copied by each test."""
    torch.manual_seed(0)
    return create_model(name, NUM_CLASSES, img_size=32).model


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _raa_modules(model: nn.Module) -> list[RAA]:
    return [m for m in model.modules() if isinstance(m, RAA)]


# RAA's variants size their parameters per token (ViTs) or per position (CNNs), so each variant and both
# bases run in every paper model; the pointwise activations are the same module in any layout and run
# in one model of each layout (vit_tiny: tokens, resnet18: NCHW). GDN in every model: tests/test_gdn.py.
PER_MODEL_ACTS = ["raa", "raa_relu", "raa_gelu_simple", "raa_relu_elementwise"]
LAYOUT_MODELS = ["vit_tiny", "resnet18"]
ACT_CASES = [(m, a) for m in PAPER_MODELS for a in PER_MODEL_ACTS] + [
    (m, a) for m in LAYOUT_MODELS for a in list_acts() if a not in PER_MODEL_ACTS]


@pytest.mark.slow
@pytest.mark.parametrize("name,act", ACT_CASES)
def test_every_activation_trains_with_arr(name: str, act: str):
    """Surgery with ``act``, ARR on the model's taps, one CE + ARR forward/backward at 32 px."""
    torch.manual_seed(0)
    model = copy.deepcopy(_base(name))
    x = _images(2)
    report = swap_activations(model, act, x)
    assert report.sites and not report.functional
    spec = model_spec(name)
    arr = ARR(model, NUM_CLASSES, spec.taps, spec.pooling, sample=x)
    model.train()
    labels = torch.tensor([3, 3])  # one class twice: the second sample's target differs from it
    logits = model(x)
    assert logits.shape == (2, NUM_CLASSES)
    loss = F.cross_entropy(logits, labels) + 10.0 * arr(labels)
    assert torch.isfinite(loss)
    loss.backward()
    raa = _raa_modules(model)
    assert bool(raa) == act.startswith("raa")
    for m in raa:
        for p in m.parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all()
    if raa:
        assert any(p.grad.abs().sum() > 0 for m in raa for p in m.parameters())


@pytest.mark.parametrize("name", ALL_MODELS)
def test_surgery_replaces_every_activation(name: str):
    """act=raa leaves none of the original activation modules, finds no functional activation,
    and adds exactly sum(C_i + 1) parameters over the call sites."""
    base = _base(name)
    originals = [m for m in base.modules() if isinstance(m, ACTIVATION_TYPES)]
    assert originals and all(type(m) is ORIGINAL_ACT[name] for m in originals)

    built = create_model(name, NUM_CLASSES, img_size=32, act="raa")
    report = built.surgery
    assert not report.functional and not report.shared_modules
    assert not [n for n, m in built.model.named_modules() if isinstance(m, ACTIVATION_TYPES)]
    assert len(_raa_modules(built.model)) == len(report.sites) == len(originals)
    expected = sum(s.num_features + 1 for s in report.sites)
    assert report.added_params == expected
    assert _n_params(built.model) - _n_params(base) == expected


def _reference(name: str) -> tuple[nn.Module, str]:
    """The unmodified model and the RAA variant equal to it at init. MobileNetV2's ReLU6 clips at
    6, which RAA does not: its reference is the same network with plain ReLU."""
    reference = copy.deepcopy(_base(name))
    if ORIGINAL_ACT[name] is nn.GELU:
        return reference, "raa"
    if name == "mobilenet":
        swap_activations(reference, "relu")
    return reference, "raa_relu"


@pytest.mark.parametrize("name", ALL_MODELS)
def test_raa_equals_base_activation_at_init(name: str):
    reference, act = _reference(name)
    torch.manual_seed(2)  # different init: the state dict copy must make them equal
    swapped = create_model(name, NUM_CLASSES, img_size=32, act=act).model
    result = swapped.load_state_dict(reference.state_dict(), strict=False)
    assert not result.unexpected_keys
    raa_keys = {f"{n}.{p}" for n, m in swapped.named_modules() if isinstance(m, RAA) for p, _ in
                m.named_parameters()}
    assert set(result.missing_keys) == raa_keys
    reference.eval()
    swapped.eval()
    x = _images(2, seed=3)
    with torch.no_grad():
        torch.testing.assert_close(swapped(x), reference(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_arr_taps(name: str):
    """Each model's taps hit the documented modules and pool to [B, d] responses."""
    count, types, dims = EXPECTED_TAPS[name]
    types = (types,) if isinstance(types, str) else types
    model = copy.deepcopy(_base(name)).eval()
    spec = model_spec(name)
    taps = ResponseTaps(model, spec.taps, spec.pooling)
    assert len(taps.paths) == count
    assert {type(model.get_submodule(p)).__name__ for p in taps.paths} <= set(types)
    with torch.no_grad():
        model(_images(2))
    assert all(r.ndim == 2 and r.shape[0] == 2 for r in taps.responses)
    assert {r.shape[1] for r in taps.responses} == dims


def _capture(model: nn.Module, path: str) -> list:
    out: list = []
    model.get_submodule(path).register_forward_hook(lambda _m, _a, o: out.append(o))
    return out


def test_tnt_response_is_outer_class_token():
    """TNT blocks return (inner pixel tokens, outer patch tokens): the response is the outer class token."""
    model = copy.deepcopy(_base("tnt_small")).eval()
    raw = _capture(model, "blocks.4")
    taps = ResponseTaps(model, ["blocks.4"], "cls")
    with torch.no_grad():
        model(_images(1))
    inner, outer = raw[0]
    assert inner.shape == (64, 1, 24) and outer.shape == (1, 65, 384)
    torch.testing.assert_close(taps.responses[0], outer[:, 0])


def test_cait_class_attention_taps_give_the_class_token():
    """CaiT's class-attention blocks output only the class token, so mean_tokens returns it."""
    model = copy.deepcopy(_base("cait_xxs")).eval()
    raw = _capture(model, "blocks_token_only.1")
    taps = ResponseTaps(model, ["blocks_token_only.*"], "mean_tokens")
    with torch.no_grad():
        model(_images(1))
    assert raw[0].shape == (1, 1, 192)
    torch.testing.assert_close(taps.responses[-1], raw[0][:, 0])


@pytest.mark.parametrize("name", ALL_MODELS)
def test_small_input_adaptation(name: str):
    path, shape = LAST_FEATURES_32PX[name]
    model = copy.deepcopy(_base(name)).eval()
    raw = _capture(model, path)
    with torch.no_grad():
        model(_images(1))
    out = raw[0][-1] if isinstance(raw[0], tuple) else raw[0]
    assert tuple(out.shape) == shape


@pytest.mark.slow
@pytest.mark.parametrize("name", ALL_MODELS)
def test_imagenet_size_forward(name: str):
    """224 px, act=raa: one forward at batch 1 (plus surgery's dry run) with the ARR taps hooked."""
    torch.manual_seed(0)
    built = create_model(name, NUM_CLASSES, img_size=224, act="raa")
    assert not built.surgery.functional
    taps = ResponseTaps(built.model, built.taps, built.pooling)
    assert len(taps.paths) == EXPECTED_TAPS[name][0]
    built.model.eval()
    with torch.no_grad():
        logits = built.model(_images(1, size=224))
    assert logits.shape == (1, NUM_CLASSES) and torch.isfinite(logits).all()
    assert all(r.shape[0] == 1 for r in taps.responses)


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in ALL_MODELS if n != "pvt_tiny"])
def test_tiny_grayscale_input(name: str):
    """8-px, 1-channel images (the digits data set): build with act=raa, one forward, taps fire."""
    torch.manual_seed(0)
    built = create_model(name, NUM_CLASSES, img_size=8, in_chans=1, act="raa")
    taps = ResponseTaps(built.model, built.taps, built.pooling)
    assert len(taps.paths) == EXPECTED_TAPS[name][0]
    built.model.eval()
    with torch.no_grad():
        logits = built.model(torch.randn(2, 1, 8, 8))
    assert logits.shape == (2, NUM_CLASSES) and torch.isfinite(logits).all()
    assert all(r is not None and r.shape[0] == 2 for r in taps.responses)


def test_torchvision_cnns_warn_on_drop_path():
    with pytest.warns(UserWarning, match="no stochastic depth"):
        create_model("shufflenet", NUM_CLASSES, img_size=32, drop_path=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        create_model("shufflenet", NUM_CLASSES, img_size=32)
