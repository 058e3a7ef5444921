"""The paper's architectures against the authors' definitions: parameter counts, DeiT's averaged
heads, PVT v1's pyramid and the CNNs' ImageNet stems."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dnrt.models import create_model, model_spec
from dnrt.nn import ARR, ResponseTaps
from tests.test_models_paper import (
    EXPECTED_TAPS,
    GELU_MODELS,
    NUM_CLASSES,
    RELU_MODELS,
    _base,
    _images,
    _n_params,
    _raa_modules,
)

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
