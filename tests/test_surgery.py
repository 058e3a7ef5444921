"""Activation surgery on timm and torchvision models (docs/api.md: the covered model families)."""

import pytest
import timm
import torch
import torch.nn.functional as F
import torchvision
from timm.layers import LayerNorm2d
from torch import nn

from dnrt.models import create_model
from dnrt.nn import RAA, swap_activations
from dnrt.nn.surgery import ACTIVATION_TYPES, CallSiteDispatch

# timm name (or name + constructor kwargs) -> the RAA base that equals the model's activation at init
TIMM_FAMILIES = {
    "vit_tiny_patch16_224": "raa",  # ViT: GELU in every MLP
    "deit_tiny_patch16_224": "raa",  # DeiT
    "convnext_atto": "raa",  # ConvNeXt, conv MLP (1x1 convs on NCHW after a LayerNorm2d)
    "convnext_atto_linear_mlp": "raa",  # ConvNeXt, Linear MLP on permuted (B, H, W, C) maps
    "convnext_nano_ols": "raa",  # ConvNeXt with the overlapping stem (conv MLP too)
    "mixer_s32_224": "raa",  # MLP-Mixer: token- and channel-mixing MLPs
    "resnet18": "raa_relu",  # ResNet: ReLU
}


def _build(name):
    torch.manual_seed(0)
    if name == "convnext_atto_linear_mlp":
        return timm.create_model("convnext_atto", num_classes=10, conv_mlp=False)
    kw = {"img_size": 32} if not name.startswith(("resnet", "convnext")) else {}  # mixer: 32 px = one patch
    if name.startswith(("vit", "deit")):
        kw["patch_size"] = 4
    return timm.create_model(name, num_classes=10, **kw)


def _originals(model):
    return [n for n, m in model.named_modules() if isinstance(m, ACTIVATION_TYPES)]


def _own_producer(model, path):
    """The layer whose output feeds the activation at ``path``, read off the model's own structure
    (timm's naming): ``mlp.act`` <- ``mlp.fc1``, ``actN`` <- ``bnN``."""
    parent_path, _, leaf = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    return getattr(parent, "fc1" if leaf == "act" else "bn" + leaf.removeprefix("act"))


def _width_and_layout(layer):
    """(channels, RAA channel_dim) a producing layer defines: Linear writes the last axis, convs
    and BatchNorm write axis 1."""
    if isinstance(layer, nn.Linear):
        return layer.out_features, -1
    if isinstance(layer, nn.Conv2d):
        return layer.out_channels, 1
    assert isinstance(layer, nn.BatchNorm2d), layer
    return layer.num_features, 1


@pytest.mark.parametrize("name,act", list(TIMM_FAMILIES.items()))
def test_timm_family_every_activation_replaced_params_and_outputs(name, act):
    ref = _build(name).eval()
    model = _build(name).eval()
    x = torch.randn(2, 3, 32, 32)
    n_before = sum(p.numel() for p in model.parameters())
    report = swap_activations(model, act, x)
    assert report.sites, "no activation found"
    assert _originals(model) == [], f"left unreplaced: {_originals(model)}"
    raas = {n: m for n, m in model.named_modules() if isinstance(m, RAA)}
    assert len(raas) == len(report.sites)
    expected_growth = 0
    for path, raa in raas.items():  # sizes from the model's own layers, not from the report
        width, layout = _width_and_layout(_own_producer(model, path))
        assert (raa.num_features, raa.channel_dim) == (width, layout), path
        expected_growth += width + 1
    assert report.added_params == expected_growth
    assert sum(p.numel() for p in model.parameters()) - n_before == expected_growth
    with torch.no_grad():
        assert torch.allclose(model(x), ref(x), atol=1e-5)


@pytest.mark.parametrize("conv_mlp", [True, False])
def test_convnext_raa_acts_on_the_channels_of_its_real_layout(conv_mlp):
    """Beyond sizes: with non-zero RAA parameters the swapped model must compute RAA over the
    producer's channels, written here on the raw fc1 output."""
    torch.manual_seed(3)
    model = timm.create_model("convnext_atto", num_classes=10, conv_mlp=conv_mlp).eval()
    swap_activations(model, "raa", torch.randn(2, 3, 32, 32))
    mlp = model.stages[1].blocks[0].mlp
    with torch.no_grad():
        mlp.act.weight.normal_(0, 0.1)
        mlp.act.bias.fill_(0.3)
    seen = {}
    mlp.fc1.register_forward_hook(lambda m, a, out: seen.update(h=out))
    mlp.act.register_forward_hook(lambda m, a, out: seen.update(y=out))
    with torch.no_grad():
        model(torch.randn(2, 3, 32, 32))
    h = seen["h"] if not conv_mlp else seen["h"].permute(0, 2, 3, 1)  # channels last
    assert h.shape[-1] == _width_and_layout(mlp.fc1)[0] == 320
    s = h @ mlp.act.weight + mlp.act.bias
    expected = h * 0.5 * (1 + torch.erf((h + s[..., None]) / 2**0.5))
    got = seen["y"] if not conv_mlp else seen["y"].permute(0, 2, 3, 1)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


class LayerNorm2dNet(nn.Module):
    """timm's LayerNorm2d subclasses nn.LayerNorm but keeps NCHW; a Linear on (B, H, W, C) follows."""

    def __init__(self, width=6):
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3, padding=1)
        self.norm = LayerNorm2d(width)
        self.act1 = nn.GELU()
        self.fc = nn.Linear(width, 2 * width)
        self.act2 = nn.GELU()

    def forward(self, x):
        x = self.act1(self.norm(self.conv(x)))
        return self.act2(self.fc(x.permute(0, 2, 3, 1)))


@pytest.mark.parametrize("size", [6, 12])  # 6 px: every axis of the LayerNorm2d output has size 6
def test_layernorm2d_is_channel_first_and_linear_is_channel_last(size):
    model = LayerNorm2dNet(width=6)
    swap_activations(model, "raa", torch.randn(2, 3, size, size))
    assert (model.act1.num_features, model.act1.channel_dim) == (model.norm.normalized_shape[0], 1)
    assert (model.act2.num_features, model.act2.channel_dim) == (model.fc.out_features, -1)


def test_conv1d_sequence_is_channel_first():
    """(B, C, L) after a Conv1d: the axis of size out_channels is 1, although the rank is 3."""
    model = nn.Sequential(nn.Conv1d(4, 6, 3, padding=1), nn.ReLU())
    swap_activations(model, "raa_relu", torch.randn(2, 4, 10))
    assert (model[1].num_features, model[1].channel_dim) == (6, 1)


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
    # each call site is sized by the BatchNorm before it (BasicBlock: relu(bn1(.)), relu(bn2(.) + identity))
    assert (model.relu.num_features, model.relu.channel_dim) == (model.bn1.num_features, 1)
    for layer in (model.layer1, model.layer2, model.layer3, model.layer4):
        for block in layer:
            widths = [(s.num_features, s.channel_dim) for s in block.relu.sites]
            assert widths == [(block.bn1.num_features, 1), (block.bn2.num_features, 1)]
    with torch.no_grad():
        assert torch.allclose(model(x), ref(x), atol=1e-5)
        model(x)  # the dispatcher resets every forward
    with torch.no_grad():  # the two sites really are separate: changing one changes only its call
        block_relu.sites[1].bias.fill_(0.5)
        assert not torch.allclose(model(x), ref(x), atol=1e-4)
    model(x).sum().backward()  # smoke: gradients flow through the dispatcher to every site
    assert all(site.weight.grad is not None for site in block_relu.sites)


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
