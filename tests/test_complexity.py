"""Paper Table 4 counts (benchmarks/complexity.py, dnrt/models/macs.py): MACs checked against counts
worked out by hand from the architectures and against per-layer counts from forward hooks; the
latency machinery runs, its timings are not asserted."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from benchmarks.complexity import markdown, measure_latency
from dnrt.models import create_model
from dnrt.models.macs import count_macs
from tests.harness.hooks import module_fixture

# FLOP counts at 224 px: not in `make test-fast`.
pytestmark = pytest.mark.slow

# ViT-Tiny at 224 px: 196 patches + class token, width 192, MLP 768, 12 blocks, 1000 classes
VIT_TOKENS, VIT_DIM, VIT_HIDDEN, VIT_DEPTH = 197, 192, 768, 12
# TNT-S at 224 px: 196 patches of 4x4 inner pixels; inner width 24 (MLP 96), outer 384 (MLP 1536), 12 blocks
TNT_PATCHES, TNT_PIXELS, TNT_INNER_HIDDEN, TNT_OUTER_HIDDEN, TNT_DEPTH = 196, 16, 96, 1536, 12


@module_fixture
def vit_counts() -> dict[str, dict]:
    torch.manual_seed(0)
    return {act: count_macs(create_model("vit_tiny", 1000, 224, act=act).model) for act in ("relu", "raa")}


def test_vit_tiny_relu_is_the_paper_figure(vit_counts):
    """Within 1% of the paper's 1.078 G, and exactly the linear and conv layers counted by hand."""
    weights = vit_counts["relu"]["weights"]
    assert abs(weights / 1.078e9 - 1) < 0.01
    d, h, n = VIT_DIM, VIT_HIDDEN, VIT_TOKENS
    per_block = n * (d * 3 * d + d * d + d * h + h * d)  # qkv, proj, fc1, fc2
    patch_embed = 196 * (3 * 16 * 16) * d
    assert weights == VIT_DEPTH * per_block + patch_embed + d * 1000


def test_vit_tiny_attention_is_counted_apart_on_every_device(vit_counts):
    """q.k^T and attn.v: N x N x C each per block (all heads together), whatever the fused flag."""
    assert vit_counts["relu"]["attention"] == VIT_DEPTH * 2 * VIT_TOKENS * VIT_TOKENS * VIT_DIM
    assert vit_counts["relu"]["other"] == 0


def test_vit_tiny_dnrt_adds_exactly_the_raa_terms(vit_counts):
    """One w.x per token per RAA site: tokens x C MACs, one site (the MLP activation) per block."""
    by_hand = VIT_DEPTH * VIT_TOKENS * VIT_HIDDEN
    assert vit_counts["raa"]["total"] - vit_counts["relu"]["total"] == by_hand
    assert vit_counts["raa"]["weights"] - vit_counts["relu"]["weights"] == by_hand


def test_tnt_small_dnrt_adds_exactly_the_raa_terms():
    """Two RAA sites per TNT block: the inner MLP (196 x 16 pixel tokens x 96) and the outer MLP
    (197 patch tokens x 1536)."""
    torch.manual_seed(0)
    counts = {act: count_macs(create_model("tnt_small", 1000, 224, act=act).model) for act in ("relu", "raa")}
    by_hand = TNT_DEPTH * (TNT_PATCHES * TNT_PIXELS * TNT_INNER_HIDDEN + (TNT_PATCHES + 1) * TNT_OUTER_HIDDEN)
    assert counts["raa"]["total"] - counts["relu"]["total"] == by_hand
    assert counts["raa"]["attention"] == counts["relu"]["attention"] > 0


def layer_macs(model: nn.Module, img_size: int) -> int:
    """fvcore-style count from forward hooks: every nn.Linear (output elements x in_features) and
    nn.Conv2d (output elements x in_channels / groups x kernel area); no aten op is looked at."""
    total = 0

    def linear(m, _, out):
        nonlocal total
        total += out.numel() * m.in_features

    def conv(m, _, out):
        nonlocal total
        total += out.numel() * (m.in_channels // m.groups) * math.prod(m.kernel_size)

    hooks = [m.register_forward_hook(linear if isinstance(m, nn.Linear) else conv)
             for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, img_size, img_size))
    finally:
        for h in hooks:
            h.remove()
    return total


@pytest.mark.parametrize("name", ["cait_xxs", "deit_tiny", "pvt_tiny", "mobilenet", "shufflenet", "vgg11"])
def test_weight_macs_are_the_layers_counted_by_hooks(name):
    """CaiT's class token is a view of a trainable parameter: counting under no_grad fails there."""
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, img_size=32).model
    counts = count_macs(model, img_size=32)
    assert counts["weights"] == layer_macs(model, 32) > 0
    assert counts["total"] == counts["weights"] + counts["attention"] + counts["other"]


def test_count_restores_fused_attention():
    model = create_model("vit_tiny", 10, 32).model
    before = [m.fused_attn for m in model.modules() if hasattr(m, "fused_attn")]
    model.train()
    grads = [p.requires_grad for p in model.parameters()]
    count_macs(model, img_size=32)
    assert [m.fused_attn for m in model.modules() if hasattr(m, "fused_attn")] == before and model.training
    assert [p.requires_grad for p in model.parameters()] == grads


def test_latency_and_report_machinery():
    """Interleaved samples per model; the report flags an all-in count far from the paper's."""
    models = {"a": nn.Conv2d(3, 4, 3), "b": nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())}
    samples = measure_latency(models, img_size=8, rounds=3, calls=1, warmup=1)
    assert set(samples) == {"a", "b"} and all(len(v) == 3 and min(v) > 0 for v in samples.values())

    def row(model, mech, total, params=10):
        return {"model": model, "mechanism": mech, "params": params, "raa_site_macs": 100 if mech == "dnrt" else 0,
                "macs": {"weights": total - 50, "attention": 50, "total": total}, "paper_gmacs": 1.0,
                "paper_latency_ms": 1.0, "latency_ms": 2.0}

    result = {"created": "now", "wall_s": 1.0, "settings": {"img_size": 224, "num_classes": 1000, "rounds": 3,
                                                            "calls": 1, "device": "cpu"},
              "machine": {"gpu": None, "cpu_model": "x", "torch_threads": 1, "torch": "t", "load_avg_start": [0],
                          "load_avg_end": [0]},
              "rows": [row("vit_tiny", "relu", 1_000_000_000), row("vit_tiny", "dnrt", 1_000_000_100),
                       row("tnt_small", "relu", 1_200_000_000), row("tnt_small", "dnrt", 1_200_000_099)]}
    text = markdown(result)
    vit_line, tnt_line = (line for line in text.splitlines() if line.startswith("- "))
    assert "exactly RAA's w·x" in vit_line and "vs the paper" not in vit_line
    assert "but RAA's w·x is 100" in tnt_line and "+20.0% vs the paper" in tnt_line
