"""`make demo` and `experiment=digits_ablation`: the intended cells, a ViT with enough tokens, and a
demo ViT cell that actually learns (too few optimizer steps leave a ViT at chance)."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest
import torch

from dnrt.factory import build_model
from dnrt.train import train
from tests.harness.config import ROOT, compose_cfg
from tests.test_presets import sweep_axes

CHANCE = 10.0  # digits: 10 balanced classes


def cells(preset: str) -> list[tuple[str, str, str, int]]:
    """(model, act, regularizer, seed) of every cell of the preset's sweep. Each model x mechanism is
    composed by Hydra (the seed only changes ``seed``: checked on the last one)."""
    axes = sweep_axes(preset)
    seed_axis = next(axis for axis in axes if axis[0].startswith("seed="))
    others = [axis for axis in axes if axis is not seed_axis]
    out = []
    for cell in itertools.product(*others):
        cfg = compose_cfg([f"experiment={preset}", *cell, seed_axis[-1]])
        assert int(cfg.seed) == int(seed_axis[-1].partition("=")[2])
        out += [(cfg.model.name, cfg.act.name, cfg.regularizer.name, int(s.partition("=")[2])) for s in seed_axis]
    return out


@pytest.mark.parametrize("preset,seeds", [("demo", 3), ("digits_ablation", 5)])
def test_preset_sweeps_both_models_with_and_without_dnrt(preset, seeds):
    got = cells(preset)
    want = {(m, a, r, s) for m in ("resnet18", "vit_tiny") for a, r in (("gelu", "none"), ("raa", "arr"))
            for s in range(seeds)}
    assert len(got) == len(want) == 4 * seeds and set(got) == want


def test_makefile_demo_runs_the_demo_preset():
    make = (ROOT / "Makefile").read_text()
    assert re.search(r"^DEMO_SWEEP := experiment=demo\b", make, re.M)


@pytest.mark.parametrize("preset", ["demo", "digits_ablation"])
def test_the_vit_sees_at_least_16_tokens(preset):
    """Counted from what the composed config builds: the patch embedding's output on one image."""
    cfg = compose_cfg([f"experiment={preset}", "model=vit_tiny"])
    size = int(cfg.dataset.img_size)
    # the run's own build path, so every model key the preset sets (patch size, depth, ...) counts
    model = build_model(cfg, "test", num_classes=10, img_size=size, in_chans=1).model
    with torch.no_grad():
        tokens = model.patch_embed(torch.zeros(1, 1, size, size)).shape[1]
    assert tokens >= 16


def test_demo_recipe_learns_more_epochs_in_the_ablation():
    for model in ("resnet18", "vit_tiny"):
        demo = compose_cfg(["experiment=demo", f"model={model}"])
        ablation = compose_cfg(["experiment=digits_ablation", f"model={model}"])
        assert ablation.trainer.epochs > demo.trainer.epochs >= 2
        assert (ablation.optim.lr, ablation.trainer.batch_size) == (demo.optim.lr, demo.trainer.batch_size)


@pytest.mark.slow
def test_a_demo_vit_cell_learns_in_two_epochs(store, tmp_path: Path):
    """The demo's ViT recipe, cut to 2 epochs (one of warmup), leaves chance on held-out digits:
    31.8% measured (seed 0, one thread). The default recipe (batches of 64, no warmup, lr 1e-3) ends
    at 12.5% under the same budget, which this threshold rejects. The demo's own 3 epochs reach 56-70%."""
    cfg = compose_cfg(["experiment=demo", "model=vit_tiny", "trainer.epochs=2", "trainer.progress=false",
                       *store.overrides()])
    outcome = train(cfg)  # on the session's one thread (tests/harness/launcher.py), as the figure above
    assert outcome.status == "finished"
    assert outcome.val_acc1 > 2.5 * CHANCE, outcome.val_acc1


def test_seed_curves_average_over_seeds(tmp_path: Path):
    """analysis.seed_curves: mean, sample std and count per model, cell, metric and epoch."""
    import pandas as pd

    from analysis import seed_curves
    from analysis.figures import save

    rows = [{"model": m, "cell": c, "seed": s, "key": k, "step": e, "value": float(s + e)}
            for m in ("resnet18", "vit_tiny") for c in ("gelu+none", "raa+arr") for s in (0, 1, 2)
            for k, _ in seed_curves.KEYS for e in (1, 2)]
    stats = seed_curves.summarise(pd.DataFrame(rows))
    assert len(stats) == 2 * 2 * len(seed_curves.KEYS) * 2
    one = stats[(stats["model"] == "vit_tiny") & (stats["cell"] == "raa+arr") & (stats["key"] == "val/acc1")]
    assert list(one["mean"]) == [2.0, 3.0] and list(one["std"]) == [1.0, 1.0] and list(one["n"]) == [3, 3]
    fig = seed_curves.draw(stats)
    assert len(fig.axes) == 2 * len(seed_curves.KEYS)
    assert save(fig, tmp_path, "seed_curves", ("png",))[0].stat().st_size > 0
