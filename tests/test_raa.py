import pytest
import torch
import torch.nn.functional as F

from dnrt.nn import RAA, create_act, list_acts
from dnrt.nn.raa import _TokenRAAGelu


def _formula(x, w, b, base, channel_dim):
    """docs/design.md §3 written out plainly: s = w.x + b per token / position."""
    xc = x.movedim(channel_dim, -1)
    s = (xc * w).sum(-1, keepdim=True) + b
    z = xc + s
    out = xc * 0.5 * (1 + torch.erf(z / 2**0.5)) if base == "gelu" else torch.clamp(z, min=0)
    return out.movedim(-1, channel_dim)


@pytest.mark.parametrize("base,ref", [("gelu", F.gelu), ("relu", F.relu)])
@pytest.mark.parametrize("channel_dim,shape", [(-1, (4, 7, 16)), (1, (3, 16, 5, 6))])
def test_init_equals_base(base, ref, channel_dim, shape):
    raa = RAA(16, base=base, channel_dim=channel_dim)
    x = torch.randn(shape) * 3
    assert torch.allclose(raa(x), ref(x), atol=1e-6)


def test_token_variant_has_exactly_two_zero_parameters():
    raa = RAA(32)
    params = dict(raa.named_parameters())
    assert set(params) == {"weight", "bias"}
    assert params["weight"].shape == (32,) and params["bias"].shape == (1,)
    assert all(torch.equal(p, torch.zeros_like(p)) for p in params.values())


@pytest.mark.parametrize("base", ["gelu", "relu"])
@pytest.mark.parametrize("channel_dim,shape", [(-1, (4, 7, 16)), (1, (3, 16, 5, 6))])
def test_random_parameters_match_formula(base, channel_dim, shape):
    torch.manual_seed(0)
    raa = RAA(16, base=base, channel_dim=channel_dim)
    with torch.no_grad():
        raa.weight.normal_(0, 0.3)
        raa.bias.fill_(0.7)
    x = torch.randn(shape, dtype=torch.float64)
    raa = raa.double()
    expected = _formula(x, raa.weight, raa.bias, base, channel_dim)
    assert torch.allclose(raa(x), expected, atol=1e-10)


@pytest.mark.parametrize("channel_dim,shape", [(-1, (2, 3, 8)), (-1, (3, 8)), (1, (2, 8, 2, 3))])
def test_gradcheck_of_the_fused_autograd_function(channel_dim, shape):
    """The hand-written backward of the fused token RAA_gelu against finite differences."""
    torch.manual_seed(1)
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    w = (torch.randn(8, dtype=torch.float64) * 0.5).requires_grad_()
    b = torch.tensor([0.2], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda inp, wt, bs: _TokenRAAGelu.apply(inp, wt, bs, channel_dim), (x, w, b))


@pytest.mark.parametrize("base", ["gelu", "relu"])
@pytest.mark.parametrize("channel_dim,shape", [(-1, (5, 3, 8)), (1, (4, 8, 3, 5))])
def test_module_gradients_match_autograd_through_the_formula(base, channel_dim, shape):
    torch.manual_seed(1)
    raa = RAA(8, base=base, channel_dim=channel_dim).double()
    with torch.no_grad():
        raa.weight.normal_(0, 0.5)
        raa.bias.fill_(0.2)
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    raa(x).square().sum().backward()
    w, b = raa.weight.detach().clone().requires_grad_(), raa.bias.detach().clone().requires_grad_()
    x2 = x.detach().clone().requires_grad_()
    _formula(x2, w, b, base, channel_dim).square().sum().backward()
    torch.testing.assert_close(raa.weight.grad, w.grad, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(raa.bias.grad, b.grad, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(x.grad, x2.grad, rtol=1e-10, atol=1e-10)


def _variant_formula(x, variant, weight, bias, base, channel_dim):
    """docs/design.md §3 ablations: ``simple`` s = b (one scalar); ``elementwise`` s_i = sum_j W_ij x_j + b_i."""
    xc = x.movedim(channel_dim, -1)
    if variant == "simple":
        s = bias
    else:
        s = torch.stack([(xc * weight[i]).sum(-1) for i in range(weight.shape[0])], -1) + bias
    z = xc + s
    out = xc * 0.5 * (1 + torch.erf(z / 2**0.5)) if base == "gelu" else torch.clamp(z, min=0)
    return out.movedim(-1, channel_dim)


@pytest.mark.parametrize("variant", ["simple", "elementwise"])
@pytest.mark.parametrize("base", ["gelu", "relu"])
@pytest.mark.parametrize("channel_dim,shape", [(-1, (4, 7, 6)), (1, (3, 6, 5, 4))])
def test_ablation_variants_match_their_formula_with_random_parameters(variant, base, channel_dim, shape):
    torch.manual_seed(4)
    raa = RAA(6, base=base, channel_dim=channel_dim, variant=variant).double()
    with torch.no_grad():
        for p in raa.parameters():
            p.normal_(0, 0.5)  # W is not symmetric, b is not zero
    x = torch.randn(shape, dtype=torch.float64)
    expected = _variant_formula(x, variant, raa.weight, raa.bias, base, channel_dim)
    torch.testing.assert_close(raa(x), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("variant", ["token", "simple", "elementwise"])
def test_token_and_channel_layouts_agree_on_permuted_input(variant):
    torch.manual_seed(2)
    tok = RAA(6, channel_dim=-1, variant=variant)
    with torch.no_grad():
        for p in tok.parameters():
            p.normal_()
    chan = RAA(6, channel_dim=1, variant=variant)
    chan.load_state_dict(tok.state_dict())
    x = torch.randn(2, 6, 4, 5)
    assert torch.allclose(chan(x), tok(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2), atol=1e-6)


def test_variants_shapes_and_init():
    x = torch.randn(2, 9, 12)
    assert [p.shape for p in RAA(12, variant="simple").parameters()] == [(1,)]
    assert sorted(tuple(p.shape) for p in RAA(12, variant="elementwise").parameters()) == [(12,), (12, 12)]
    for v in ("simple", "elementwise"):
        assert torch.allclose(RAA(12, variant=v)(x), F.gelu(x), atol=1e-6)


def test_registry_has_the_paper_baselines_and_rejects_typos():
    assert {"relu", "gelu", "silu", "elu", "selu", "softplus", "raa", "raa_relu"} <= set(list_acts())
    assert isinstance(create_act("silu"), torch.nn.SiLU)
    with pytest.raises(KeyError, match="Valid names:.*gelu.*raa"):
        create_act("gleu")


def test_wrong_feature_size_is_a_clear_error():
    with pytest.raises(ValueError, match="expected 8 features"):
        RAA(8)(torch.randn(2, 3, 7))


@pytest.mark.parametrize("base", ["gelu", "relu"])
@pytest.mark.parametrize("channel_dim,shape", [(-1, (2, 5, 8)), (1, (2, 8, 3, 3))])
def test_compiled_raa_matches_eager_values_and_gradients(base, channel_dim, shape):
    """Under torch.compile RAA takes its fusible form (multiply-reduce shift, ndtr); it must compute
    what the eager fused function computes."""
    torch.manual_seed(0)
    eager = RAA(8, base=base, channel_dim=channel_dim)
    with torch.no_grad():
        eager.weight.normal_(0, 0.3)
        eager.bias.fill_(0.1)
    compiled_module = RAA(8, base=base, channel_dim=channel_dim)
    compiled_module.load_state_dict(eager.state_dict())
    compiled = torch.compile(compiled_module, backend="aot_eager", fullgraph=True)
    x = torch.randn(shape)
    outs, grads = [], []
    for fn, module in ((eager, eager), (compiled, compiled_module)):
        xi = x.clone().requires_grad_()
        y = fn(xi)
        y.square().sum().backward()
        outs.append(y.detach())
        grads.append([xi.grad, module.weight.grad, module.bias.grad])
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-5, atol=1e-6)
    for g_compiled, g_eager in zip(grads[1], grads[0]):
        torch.testing.assert_close(g_compiled, g_eager, rtol=1e-4, atol=1e-5)
