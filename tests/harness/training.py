"""Driving dnrt's own epoch loop from a test."""

from __future__ import annotations

import torch
from torch import nn

from dnrt.engine.loops import StepConfig, train_one_epoch


def lrs_of_the_loop(model: nn.Module, optimizer: torch.optim.Optimizer, scheduler, loader, epochs: int) -> list[float]:
    """The rate each optimizer step used, over ``epochs`` epochs of ``train_one_epoch`` on ``loader``."""
    seen: list[float] = []
    step = optimizer.step

    def recording(*args, **kwargs):
        seen.append(optimizer.param_groups[0]["lr"])
        return step(*args, **kwargs)

    optimizer.step = recording
    for epoch in range(epochs):
        train_one_epoch(model, loader, optimizer, scheduler, None, StepConfig(progress=False), epoch,
                        torch.device("cpu"))
    return seen
