"""Telling a sweep's cells apart: a diverging cell among cells that share one run name is named by the
override that sets it apart, its epoch counted from 1, its NaN caught at the step it happened."""

from __future__ import annotations

import pytest
import torch

from dnrt.engine import loops
from dnrt.launching.summary import distinguishing
from dnrt.train import train
from tests.harness.config import SMALL, compose_cfg

TINY = [*SMALL, "trainer.epochs=1"]


def test_distinguishing_overrides_are_the_keys_whose_values_differ():
    rows = [{"overrides": ["model=resnet18", "optim.lr=1e-3", "seed=0"]},
            {"overrides": ["model=resnet18", "optim.lr=1e6", "seed=0"]},
            {"overrides": ["model=resnet18", "optim.lr=3e-3", "seed=0", "+x=1"]},
            {"overrides": []}]
    assert distinguishing(rows) == ["model=resnet18 optim.lr=1e-3 seed=0", "model=resnet18 optim.lr=1e6 seed=0",
                                    "+x=1 model=resnet18 optim.lr=3e-3 seed=0", ""]
    same = [{"overrides": ["seed=0", "optim.lr=1"]}, {"overrides": ["seed=1", "optim.lr=1"]}]
    assert distinguishing(same) == ["seed=0", "seed=1"]


def test_the_diverging_cell_is_named_by_its_override(store):
    proc = store.launch("-m", "hydra/launcher=local", "optim.lr=1e-3,1e30", *TINY, *store.overrides())
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    [line] = [li for li in out.splitlines() if "run(s) failed" in li]
    assert "test_resnet-gelu-none-digits-s0 [optim.lr=1e+30]: NonFiniteLoss: training loss became nan at step" in line
    assert "of epoch 1" in line and "epoch 0" not in out
    assert "optim.lr=0.001" in out  # the summary's cell column names the other cell too (as Hydra spells it)
    statuses = {r.data.params["optim.lr"]: r.info.status for r in store.runs()}
    assert statuses == {"0.001": "FINISHED", "1e+30": "FAILED"}


def test_a_nan_loss_is_caught_at_the_step_it_happens(store, monkeypatch):
    bad = 7  # the first step whose loss is NaN: the weights are poisoned by the update of step bad - 1
    real = loops.backward_and_step
    seen = []

    def poisoned(loss, model, *args, **kwargs):
        seen.append(torch.isfinite(loss).item())
        real(loss, model, *args, **kwargs)
        if len(seen) == bad - 1:
            with torch.no_grad():
                for p in model.parameters():
                    p.fill_(float("nan"))

    monkeypatch.setattr(loops, "backward_and_step", poisoned)
    cfg = compose_cfg([*TINY, "dataset.fraction=1.0", *store.overrides()])  # more steps than finite_every
    with pytest.raises(loops.NonFiniteLoss, match=f"^training loss became nan at step {bad} of epoch 1\n"):
        train(cfg)
    assert seen.index(False) + 1 == bad  # the independent record: the first non-finite loss
    # noticed within finite_every steps of it, not at the end of the epoch
    assert len(seen) < bad + loops.StepConfig.finite_every
    [run] = store.runs()
    assert run.info.status == "FAILED"
