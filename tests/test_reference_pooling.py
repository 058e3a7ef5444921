"""ARR's aggregated responses through real models' taps, against the pooling written on each tapped
layer's raw output: class token x[:, 0], token mean over N, spatial mean over H x W (docs/design.md §3)."""

import pytest
import torch

from dnrt.models import create_model
from dnrt.nn import ResponseTaps


def _raw_and_pooled(name, x):
    torch.manual_seed(0)
    built = create_model(name, num_classes=10, img_size=32)
    model = built.model.eval()
    taps = ResponseTaps(model, built.taps, built.pooling)
    raw = {}
    for path in taps.paths:
        model.get_submodule(path).register_forward_hook(lambda m, a, out, _p=path: raw.update({_p: out}))
    with torch.no_grad():
        model(x)
    return built, model, [raw[p] for p in taps.paths], taps.responses


@pytest.mark.parametrize("name,prefix", [("vit_tiny", 1), ("deit_tiny", 2)])  # DeiT: class + distillation
def test_cls_pooling_is_the_class_token_of_every_vit_block(name, prefix):
    x = torch.randn(3, 3, 32, 32)
    built, model, raws, pooled = _raw_and_pooled(name, x)
    assert built.pooling == "cls" and model.num_prefix_tokens == prefix and len(raws) == 12
    for out, r in zip(raws, pooled):
        assert out.shape[1] == prefix + 64  # the prefix tokens and an 8x8 patch grid
        assert torch.equal(r, out[:, 0])  # token 0 is the class token in both


def test_mean_tokens_on_cait_patch_blocks_and_class_attention_blocks():
    """CaiT's self-attention blocks carry only the patch tokens (the class token joins later), so
    the token mean there is over all N = num_patches tokens; class-attention blocks return the
    class token alone."""
    x = torch.randn(3, 3, 32, 32)
    built, model, raws, pooled = _raw_and_pooled("cait_xxs", x)
    assert built.pooling == "mean_tokens"
    n_patch = model.patch_embed.num_patches
    for out, r in zip(raws[:24], pooled[:24]):
        assert out.shape[1] == n_patch == 64
        torch.testing.assert_close(r, out.sum(1) / n_patch, rtol=0, atol=1e-6)
    for out, r in zip(raws[24:], pooled[24:]):
        assert out.shape[1] == 1
        assert torch.equal(r, out[:, 0])


def test_mean_tokens_on_pvt_stages_without_class_token():
    """PVT v1 carries no class token before its last stage: the response is the mean over all H*W
    tokens of the stage. (Its last stage prepends a class token, which mean_tokens averages in.)"""
    x = torch.randn(2, 3, 32, 32)
    _, model, raws, pooled = _raw_and_pooled("pvt_tiny", x)
    plain = [i for i, path in enumerate(ResponseTaps(model, ["stages.*.blocks.*"]).paths)
             if model.stages[int(path.split(".")[1])].cls_token is None]
    assert [raws[i].shape[1] for i in plain] == [64, 64, 16, 16, 4, 4]  # 8x8, 4x4, 2x2 grids at 32 px
    for i in plain:
        torch.testing.assert_close(pooled[i], raws[i].sum(1) / raws[i].shape[1], rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", ["resnet18"])
def test_avg2d_is_the_spatial_mean_of_every_residual_block(name):
    x = torch.randn(3, 3, 32, 32)
    built, _, raws, pooled = _raw_and_pooled(name, x)
    assert built.pooling == "avg2d"
    assert [out.shape[-1] for out in raws] == [32, 32, 16, 16, 8, 8, 4, 4]  # multi-pixel at every tap
    for out, r in zip(raws, pooled):
        torch.testing.assert_close(r, out.sum((2, 3)) / (out.shape[2] * out.shape[3]), rtol=0, atol=1e-6)
