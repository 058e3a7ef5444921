"""GDN: the formula in both layouts, its reparameterisation and gradients, surgery, and one
training step with act=gdn in every paper model."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dnrt.models import create_model
from dnrt.nn import GDN, create_act, swap_activations


def gdn_loop(x: torch.Tensor, beta: torch.Tensor, gamma: torch.Tensor, channel_dim: int) -> torch.Tensor:
    """y_i = x_i / sqrt(beta_i + sum_j gamma_ij x_j^2), one channel and one j at a time."""
    xs = x.movedim(channel_dim, -1)
    out = torch.empty_like(xs)
    c = xs.shape[-1]
    for i in range(c):
        denom = beta[i] + sum(gamma[i, j] * xs[..., j] ** 2 for j in range(c))
        out[..., i] = xs[..., i] / torch.sqrt(denom)
    return out.movedim(-1, channel_dim)


def random_gdn(c: int, channel_dim: int, gen: torch.Generator) -> tuple[GDN, torch.Tensor, torch.Tensor]:
    beta = torch.rand(c, generator=gen, dtype=torch.float64) + 0.2
    gamma = torch.rand(c, c, generator=gen, dtype=torch.float64)
    gdn = GDN(c, channel_dim=channel_dim).double()
    gdn.set_params(beta, gamma)
    return gdn, beta, gamma


@pytest.mark.parametrize("channel_dim,shape", [(-1, (2, 7, 5)), (-1, (3, 5)), (1, (2, 5, 4, 3)), (1, (2, 5, 6))])
def test_gdn_equals_the_formula(channel_dim, shape):
    gen = torch.Generator().manual_seed(0)
    gdn, beta, gamma = random_gdn(5, channel_dim, gen)
    torch.testing.assert_close(gdn.beta, beta)
    torch.testing.assert_close(gdn.gamma, gamma)
    x = torch.randn(shape, generator=gen, dtype=torch.float64) * 3
    torch.testing.assert_close(gdn(x), gdn_loop(x, beta, gamma, channel_dim))


def test_gdn_initialisation():
    gdn = GDN(6)
    torch.testing.assert_close(gdn.beta, torch.ones(6))
    torch.testing.assert_close(gdn.gamma, 0.1 * torch.eye(6))
    assert gdn.beta.shape == (6,) and gdn.gamma.shape == (6, 6)
    assert sum(p.numel() for p in gdn.parameters()) == 6 + 36
    x = torch.randn(4, 6)
    torch.testing.assert_close(gdn(x), x / torch.sqrt(1 + 0.1 * x**2))


@pytest.mark.parametrize("channel_dim,shape", [(-1, (2, 3, 4)), (1, (2, 4, 3, 2))])
def test_gdn_gradcheck(channel_dim, shape):
    gen = torch.Generator().manual_seed(1)
    gdn, _, _ = random_gdn(4, channel_dim, gen)
    x = torch.randn(shape, generator=gen, dtype=torch.float64, requires_grad=True)
    params = {n: p.detach().clone().requires_grad_(True) for n, p in gdn.named_parameters()}

    def fn(x, beta_raw, gamma_raw):
        return torch.func.functional_call(gdn, {"beta_raw": beta_raw, "gamma_raw": gamma_raw}, (x,))

    assert torch.autograd.gradcheck(fn, (x, params["beta_raw"], params["gamma_raw"]))


def test_gdn_parameters_stay_in_range_and_can_leave_the_bound():
    """gamma's zero off-diagonal sits on the bound: steps that would lower gamma and beta keep
    gamma >= 0 and beta >= 1e-6 (the stored value goes below the bound); later steps that raise
    gamma bring it back off zero."""
    gdn = GDN(3)
    off_diag = ~torch.eye(3, dtype=torch.bool)
    opt = torch.optim.SGD(gdn.parameters(), lr=10.0)
    for sign in (1.0, -1.0, -1.0, -1.0):  # +: the loss grows with every gamma_ij and beta_i
        opt.zero_grad()
        (sign * (gdn.gamma.sum() + gdn.beta.sum())).backward()
        opt.step()
        assert bool((gdn.gamma >= 0).all()) and bool((gdn.beta >= 1e-6).all())
        if sign > 0:
            assert bool((gdn.gamma == 0).all()) and bool((gdn.gamma_raw < 0).all())
    assert bool((gdn.gamma[off_diag] > 0).all())


def test_gdn_bad_input_is_named():
    with pytest.raises(ValueError, match="channel_dim"):
        GDN(4, channel_dim=2)
    with pytest.raises(ValueError, match="expected 4 features"):
        GDN(4)(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="beta"):
        GDN(2).set_params(torch.zeros(2), torch.zeros(2, 2))


def test_registry_builds_gdn_for_both_layouts():
    tok = create_act("gdn", 8, -1)
    nchw = create_act("gdn", 8, 1)
    assert isinstance(tok, GDN) and tok.channel_dim == -1 and tok.num_features == 8
    assert isinstance(nchw, GDN) and nchw.channel_dim == 1


def test_surgery_sizes_gdn_from_the_dry_run():
    """A CNN with a token head: every site gets a GDN of its own width and layout."""
    model = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
                          nn.Conv2d(6, 5, 1), nn.ReLU(), nn.Flatten(), nn.Linear(5 * 4 * 4, 7), nn.GELU(),
                          nn.Linear(7, 2))
    report = swap_activations(model, "gdn", torch.zeros(2, 3, 4, 4))
    sites = [(m.num_features, m.channel_dim) for m in model.modules() if isinstance(m, GDN)]
    assert sites == [(6, 1), (5, 1), (7, -1)]
    assert report.added_params == sum(c * c + c for c, _ in sites)
    assert model(torch.randn(2, 3, 4, 4)).shape == (2, 2)


PAPER_MODELS = ["vit_tiny", "deit_tiny", "cait_xxs", "pvt_tiny", "tnt_small",
                "alexnet", "vgg11", "resnet18", "mobilenet", "shufflenet"]


@pytest.mark.slow
@pytest.mark.parametrize("name", PAPER_MODELS)
def test_act_gdn_trains_one_step(name):
    torch.manual_seed(0)
    built = create_model(name, num_classes=10, img_size=32, act="gdn")
    model = built.model
    gdns = [m for m in model.modules() if isinstance(m, GDN)]
    assert gdns and len(gdns) == len(built.surgery.sites)
    assert not any(isinstance(m, (nn.ReLU, nn.ReLU6, nn.GELU)) for m in model.modules())
    before = [g.gamma_raw.detach().clone() for g in gdns]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(2, 3, 32, 32), torch.tensor([1, 3])
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(g.gamma_raw.grad is not None and torch.isfinite(g.gamma_raw.grad).all() for g in gdns)
    opt.step()
    assert any(not torch.equal(b, g.gamma_raw) for b, g in zip(before, gdns, strict=True))
    assert torch.isfinite(F.cross_entropy(model(x), y))
