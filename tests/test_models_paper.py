"""The paper's 10 architectures: every activation, ARR taps, surgery completeness, RAA's
equivalence at init, the 32-px / 224-px adaptations (CPU, batch 1-2), and the authors' definitions:
parameter counts, DeiT's averaged heads, PVT v1's pyramid and the CNNs' ImageNet stems."""

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


# ---- the authors' definitions -------------------------------------------------------------------

# Parameter counts of the authors' model definitions at 32 px with GELU and 100 classes.
AUTHORS_PARAMS_32PX = {"vit_tiny": 5_380_132, "deit_tiny": 5_399_816, "cait_xxs": 11_618_980,
                       "pvt_tiny": 12_767_588, "tnt_small": 21_559_948}
AUTHORS_VIT_TINY_RAA_PARAMS = 5_389_360


@pytest.mark.parametrize("name", GELU_MODELS)
def test_vit_parameter_counts_match_the_authors(name: str):
    assert _n_params(create_model(name, 100, img_size=32).model) == AUTHORS_PARAMS_32PX[name]


def test_vit_tiny_with_raa_parameter_count_matches_the_authors():
    assert _n_params(create_model("vit_tiny", 100, img_size=32, act="raa").model) == AUTHORS_VIT_TINY_RAA_PARAMS


@pytest.mark.parametrize("train", [True, False])
def test_deit_output_is_the_mean_of_its_two_heads(train: bool):
    """No teacher: the class-token head and the distillation-token head are averaged in training
    and evaluation alike."""
    model = copy.deepcopy(_base("deit_tiny")).train(train)
    x = _images(2, seed=4)
    with torch.no_grad():
        tokens = model.forward_features(x)
        by_hand = (tokens[:, 0] @ model.head.weight.T + model.head.bias
                   + tokens[:, 1] @ model.head_dist.weight.T + model.head_dist.bias) / 2
        out = model(x)
    assert isinstance(out, torch.Tensor)
    torch.testing.assert_close(out, by_hand)
    assert not torch.allclose(model.head(tokens[:, 0]), by_hand, atol=1e-4)  # both heads count


def _pvt_grids(img_size: int) -> list[tuple[int, int]]:
    model = create_model("pvt_tiny", NUM_CLASSES, img_size=img_size).model.eval()
    grids: list = []
    for stage in model.stages:
        stage.patch_embed.register_forward_hook(lambda _m, _a, out: grids.append(tuple(out[1])))
    with torch.no_grad():
        model(_images(1, size=img_size))
    return grids


@pytest.mark.parametrize("img_size,grids", [(32, [8, 4, 2, 1]), (224, [56, 28, 14, 7])])
def test_pvt_v1_token_grids(img_size: int, grids: list[int]):
    assert _pvt_grids(img_size) == [(g, g) for g in grids]


@pytest.mark.parametrize("img_size", [32, 64])
def test_pvt_v1_position_embeddings_are_resized_bilinearly(img_size: int):
    """Built for 224 px: stage 1 adds its 56x56 embedding resized to the input's grid, stage 4 keeps the
    class token's entry and resizes its 7x7 grid. A zeroed patch embedding exposes what is added. (At
    32 px the 7x down-scaling samples whole grid points, 7i + 3; 64 px also tells bilinear from bicubic.)"""
    torch.manual_seed(0)
    model = create_model("pvt_tiny", NUM_CLASSES, img_size=img_size).model.eval()
    seen = {}
    for i in (0, 3):
        stage = model.stages[i]
        for p in stage.patch_embed.parameters():
            nn.init.zeros_(p)  # LayerNorm weight and bias 0: the patch tokens are exactly 0
        stage.blocks[0].register_forward_pre_hook(lambda _m, args, i=i: seen.__setitem__(i, args[0]))
    with torch.no_grad():
        model(_images(1, size=img_size))

    def resized(pos: torch.Tensor, old: int, new: int) -> torch.Tensor:
        grid = pos.reshape(1, old, old, -1).permute(0, 3, 1, 2)
        return F.interpolate(grid, size=(new, new), mode="bilinear", align_corners=False).flatten(2).transpose(1, 2)

    s1, s4 = model.stages[0], model.stages[3]
    assert s1.pos_embed.shape == (1, 56 * 56, 64) and s4.pos_embed.shape == (1, 1 + 7 * 7, 512)
    torch.testing.assert_close(seen[0], resized(s1.pos_embed.detach(), 56, img_size // 4))
    torch.testing.assert_close(seen[3][:, 0], (s4.cls_token[:, 0] + s4.pos_embed[:, 0]).detach())
    torch.testing.assert_close(seen[3][:, 1:], resized(s4.pos_embed[:, 1:].detach(), 7, img_size // 32))


def test_pvt_v1_refuses_inputs_under_32px():
    with pytest.raises(ValueError, match=r"pvt_tiny.*32 px.*dataset\.img_size"):
        create_model("pvt_tiny", NUM_CLASSES, img_size=16)


TORCHVISION = {"alexnet": "alexnet", "vgg11": "vgg11", "resnet18": "resnet18", "mobilenet": "mobilenet_v2",
               "shufflenet": "shufflenet_v2_x1_0"}


def _torchvision(name: str, num_classes: int) -> nn.Module:
    """torchvision's definition on the meta device: shapes only, so VGG's 129M parameters cost nothing."""
    import torchvision

    with torch.device("meta"):
        return getattr(torchvision.models, TORCHVISION[name])(num_classes=num_classes).eval()


def _imagenet_stem(name: str, img_size: int, num_classes: int = 100) -> nn.Module:
    with torch.device("meta"):
        return create_model(name, num_classes, img_size=img_size, stem="imagenet").model.eval()


@pytest.mark.parametrize("name", RELU_MODELS)
def test_imagenet_stem_is_torchvisions_definition(name: str):
    """stem=imagenet: the same parameters (names and shapes) as torchvision's model, at 32 px where
    it fits (AlexNet needs 63 px: it is built for 224)."""
    reference = _torchvision(name, 100)
    model = _imagenet_stem(name, 224 if name == "alexnet" else 32)
    assert _n_params(model) == _n_params(reference)
    assert {k: v.shape for k, v in model.state_dict().items()} == {k: v.shape for k, v in
                                                                    reference.state_dict().items()}


@pytest.mark.parametrize("name,img_size", [(n, 224) for n in RELU_MODELS] + [(n, 32) for n in RELU_MODELS[1:]])
def test_imagenet_stem_forward_shapes_and_taps(name: str, img_size: int):
    model = _imagenet_stem(name, img_size)
    spec = model_spec(name)
    taps = ResponseTaps(model, spec.taps_for("imagenet"), spec.pooling)
    assert len(taps.paths) == EXPECTED_TAPS[name][0]
    assert {type(model.get_submodule(p)).__name__ for p in taps.paths} <= {"MaxPool2d", "ReLU", "BasicBlock",
                                                                            "InvertedResidual"}
    logits = model(torch.zeros(1, 3, img_size, img_size, device="meta"))
    assert logits.shape == (1, 100)
    assert {r.shape[1] for r in taps.responses} == EXPECTED_TAPS[name][2]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet18", "mobilenet", "shufflenet"])
def test_imagenet_stem_trains_with_raa_and_arr(name: str):
    """32 px, stem=imagenet, act=raa_relu: surgery covers torchvision's shared ReLU call sites and
    one CE + ARR step has finite gradients."""
    torch.manual_seed(0)
    built = create_model(name, NUM_CLASSES, img_size=32, act="raa_relu", stem="imagenet")
    assert not built.surgery.functional and _raa_modules(built.model)
    x, labels = _images(2), torch.tensor([1, 1])
    arr = ARR(built.model, NUM_CLASSES, built.taps, built.pooling, sample=x)
    loss = F.cross_entropy(built.model(x), labels) + 10.0 * arr(labels)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in built.model.parameters() if p.grad is not None)


@pytest.mark.parametrize("name,fits,too_small", [("alexnet", 63, 62), ("vgg11", 32, 31)])
def test_imagenet_stem_minimum_size_is_torchvisions(name: str, fits: int, too_small: int):
    """The refused sizes are exactly those torchvision's own model cannot run."""
    reference = _torchvision(name, 10)
    reference(torch.zeros(1, 3, fits, fits, device="meta"))
    with pytest.raises(RuntimeError):
        reference(torch.zeros(1, 3, too_small, too_small, device="meta"))
    _imagenet_stem(name, fits, 10)
    with pytest.raises(ValueError, match=r"model\.stem=imagenet.*dataset\.img_size=224"):
        _imagenet_stem(name, too_small, 10)


def test_bad_stem_and_unknown_keys_are_named():
    with pytest.raises(ValueError, match=r"model\.stem='imagenet'.*vit_tiny.*valid: cifar"):
        create_model("vit_tiny", NUM_CLASSES, stem="imagenet")
    with pytest.raises(ValueError, match=r"model\.stem='tiny'.*valid: cifar, imagenet"):
        create_model("resnet18", NUM_CLASSES, stem="tiny")
    with pytest.raises(TypeError, match="stemm"):
        create_model("resnet18", NUM_CLASSES, stemm="imagenet")


def test_stem_key_from_the_config():
    """model.stem=imagenet reaches the builder (VGG-11 loses its BatchNorm); stem=cifar is neutral in
    the signature, so runs from before the key keep theirs."""
    from hydra.utils import instantiate
    from omegaconf import open_dict

    from dnrt.config import config_hash
    from tests.harness.config import compose_cfg

    cfg = compose_cfg(["model=vgg11", "model.stem=imagenet"])
    with torch.device("meta"):
        model = instantiate(cfg.model, num_classes=10, img_size=32, in_chans=3).model
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    default = compose_cfg(["model=vgg11"])
    assert default.model.stem == "cifar"
    before = compose_cfg(["model=vgg11"])
    with open_dict(before):
        del before.model["stem"]
    assert config_hash(before) == config_hash(default) != config_hash(cfg)
