"""Activation surgery on timm and torchvision models (README: "Which models are covered")."""

import pytest
import timm
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from dnrt.models import create_model
from dnrt.nn import RAA, swap_activations
from dnrt.nn.surgery import ACTIVATION_TYPES, CallSiteDispatch

# (constructor, the model's own activation, the RAA base that equals it at init)
TIMM_FAMILIES = {
    "vit_tiny_patch16_224": "raa",  # ViT: GELU in every MLP
    "deit_tiny_patch16_224": "raa",  # DeiT
    "convnext_atto": "raa",  # ConvNeXt: GELU, NCHW (conv MLP)
    "convnext_nano_ols": "raa",  # ConvNeXt with a Linear MLP over channels-last tokens
    "mixer_s32_224": "raa",  # MLP-Mixer: token- and channel-mixing MLPs
    "resnet18": "raa_relu",  # ResNet: ReLU
}


def _build(name):
    torch.manual_seed(0)
    kw = {"img_size": 32} if not name.startswith(("resnet", "convnext")) else {}  # mixer: 32 px = one patch
    if name.startswith(("vit", "deit")):
        kw["patch_size"] = 4
    return timm.create_model(name, num_classes=10, **kw)


def _originals(model):
    return [n for n, m in model.named_modules() if isinstance(m, ACTIVATION_TYPES)]


@pytest.mark.parametrize("name,act", list(TIMM_FAMILIES.items()))
def test_timm_family_every_activation_replaced_params_and_outputs(name, act):
    ref = _build(name).eval()
    model = _build(name).eval()
    x = torch.randn(2, 3, 32, 32)
    n_before = sum(p.numel() for p in model.parameters())
    report = swap_activations(model, act, x)
    assert report.sites, "no activation found"
    assert _originals(model) == [], f"left unreplaced: {_originals(model)}"
    raas = [m for m in model.modules() if isinstance(m, RAA)]
    assert len(raas) == len(report.sites)
    expected_growth = sum(s.num_features + 1 for s in report.sites)
    assert report.added_params == expected_growth
    assert sum(p.numel() for p in model.parameters()) - n_before == expected_growth
    with torch.no_grad():
        assert torch.allclose(model(x), ref(x), atol=1e-5)


def test_channels_last_mlp_is_sized_on_the_last_axis():
    model = _build("convnext_nano_ols")
    report = swap_activations(model, "raa", torch.randn(2, 3, 32, 32))
    dims = {s.channel_dim for s in report.sites}
    assert dims, report
    for s in report.sites:  # every site's feature count is the channel count of its layout
        assert s.num_features == s.shape[s.channel_dim]


def test_torchvision_resnet18_shared_relu_gets_one_raa_per_call_site():
    torch.manual_seed(0)
    ref = torchvision.models.resnet18(num_classes=10).eval()
    model = torchvision.models.resnet18(num_classes=10).eval()
    model.load_state_dict(ref.state_dict())
    x = torch.randn(2, 3, 32, 32)
    report = swap_activations(model, "raa_relu", x)
    assert "layer1.0.relu" in report.shared_modules
    block_relu = model.layer1[0].relu
    assert isinstance(block_relu, CallSiteDispatch) and len(block_relu.sites) == 2
    assert block_relu.sites[0] is not block_relu.sites[1]
    assert len({id(m) for m in model.modules() if isinstance(m, RAA)}) == len(report.sites) == 17
    with torch.no_grad():
        assert torch.allclose(model(x), ref(x), atol=1e-5)
        model(x)  # the dispatcher resets every forward
    with torch.no_grad():  # the two sites really are separate: changing one changes only its call
        block_relu.sites[1].bias.fill_(0.5)
        assert not torch.allclose(model(x), ref(x), atol=1e-4)
    loss = model(x).sum()
    loss.backward()
    assert block_relu.sites[0].weight.grad is not None


class FunctionalGelu(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.act = nn.ReLU()

    def forward(self, x):
        return F.gelu(self.act(self.fc(x)))


def test_functional_activation_is_reported_or_raises():
    model = FunctionalGelu()
    report = swap_activations(model, "raa", torch.randn(2, 4))
    assert report.functional == ["<root>"]
    assert isinstance(model.act, RAA)
    with pytest.raises(RuntimeError, match="functional activations"):
        swap_activations(FunctionalGelu(), "raa", torch.randn(2, 4), strict_functional=True)


def test_registry_models_and_bad_names():
    built = create_model("vit_tiny", num_classes=10, img_size=32, act="raa")
    assert built.taps == ["blocks.*"] and built.pooling == "cls"
    assert built.model.patch_embed.patch_size == (4, 4)
    stem = create_model("resnet18", num_classes=10, img_size=32).model
    assert stem.conv1.kernel_size == (3, 3) and stem.conv1.stride == (1, 1) and isinstance(stem.maxpool, nn.Identity)
    with pytest.raises(KeyError, match="Unknown model 'resnet81'"):
        create_model("resnet81", num_classes=10)
    with pytest.raises(KeyError, match="Unknown activation 'raaa'"):
        create_model("resnet18", num_classes=10, act="raaa")
