"""Learning-rate schedules that ``timm.scheduler.create_scheduler_v2`` does not express."""

from __future__ import annotations

import torch
from timm.scheduler import CosineLRScheduler


class LaggedCosineLRScheduler(CosineLRScheduler):
    """timm's cosine schedule read ``lag`` updates behind the count it is given: with the trainer's
    ``step_update(k + 1)`` after step k, ``lag=1`` is the authors' loop (``step_update(k)`` after
    step k), so step k + 1 trains at lr(k) and step 0 at the warmup start."""

    def __init__(self, *args, lag: int = 0, **kwargs):
        super().__init__(*args, **kwargs)
        self.lag = int(lag)

    def step_update(self, num_updates: int, metric: float | None = None) -> None:
        super().step_update(max(num_updates - self.lag, 0), metric)


def cosine_after_warmup(optimizer: torch.optim.Optimizer, num_epochs: int, updates_per_epoch: int,
                        step_on_epochs: bool = False, warmup_epochs: int = 20, warmup_lr: float = 1e-6,
                        min_lr: float = 1e-5, lr_lag: int = 0) -> tuple[CosineLRScheduler, int]:
    """timm's ``CosineLRScheduler`` configured as the DNRT authors do: ``t_initial`` = all updates
    minus the warmup updates, a linear warmup from ``warmup_lr`` over ``warmup_epochs``, and no
    warmup prefix, so the cosine is read at the absolute step and the rate reaches ``min_lr`` after
    ``num_epochs - warmup_epochs`` epochs (epoch 280 of 300) and stays there.

    Same call and return as ``create_scheduler_v2``: ``(scheduler, num_epochs)``. With
    ``step_on_epochs=False`` (what the trainer passes) time is counted in optimizer updates and the
    trainer calls ``step_update(num_updates)`` after every step. A run no longer than its warmup
    (a smoke run) stays in the warmup; its ``t_initial`` (then never reached) is the run's length.
    ``lr_lag``: 0 = step k trains at lr(k) (timm's train.py); 1 = the authors' loop order, lr(k - 1)
    (see :class:`LaggedCosineLRScheduler`).
    """
    if warmup_epochs < 0 or num_epochs < 1 or updates_per_epoch < 1:
        raise ValueError(f"cosine_after_warmup: warmup_epochs={warmup_epochs}, num_epochs={num_epochs}, "
                         f"updates_per_epoch={updates_per_epoch} (need >= 0, >= 1, >= 1)")
    if lr_lag not in (0, 1):
        raise ValueError(f"sched.lr_lag must be 0 or 1, got {lr_lag!r}")
    unit = 1 if step_on_epochs else updates_per_epoch
    decay_epochs = num_epochs - warmup_epochs if num_epochs > warmup_epochs else num_epochs
    scheduler = LaggedCosineLRScheduler(
        optimizer, t_initial=decay_epochs * unit, lr_min=min_lr,
        warmup_t=warmup_epochs * unit, warmup_lr_init=warmup_lr, warmup_prefix=False,
        t_in_epochs=step_on_epochs, lag=lr_lag)
    return scheduler, num_epochs
