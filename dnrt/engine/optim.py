"""Optimizer factory for configs that derive the learning rate from the batch size and may decay
every parameter."""

from __future__ import annotations

from typing import Any

import timm.optim
import torch
from torch import nn


def create_optimizer(model_or_params: Any, lr: float, base_lr: float | None = None,
                     ref_batch_size: int | None = None, weight_decay_all: bool = False,
                     **kwargs: Any) -> torch.optim.Optimizer:
    """``timm.optim.create_optimizer_v2(model_or_params, lr=lr, **kwargs)``, with two additions.

    ``weight_decay_all=True``: one parameter group, so ``weight_decay`` applies to every trainable
    parameter (biases, norms, position embeddings, class tokens, RAA's). Given a module, timm's
    factory always exempts the model's ``no_weight_decay()`` names, and 1-D parameters unless
    ``filter_bias_and_bn=False``; a plain parameter list bypasses both.

    ``base_lr`` and ``ref_batch_size`` record the linear scaling rule the config used to compute
    ``lr`` (``lr = base_lr * trainer.batch_size / ref_batch_size``, resolved in the YAML so the logged
    ``optim.lr`` is the rate that ran); they sign the run and are not used again here.
    """
    del base_lr, ref_batch_size
    if weight_decay_all and isinstance(model_or_params, nn.Module):
        model_or_params = [p for p in model_or_params.parameters() if p.requires_grad]
    return timm.optim.create_optimizer_v2(model_or_params, lr=lr, **kwargs)


def scale_lr_per_device(optimizer: torch.optim.Optimizer, lr_scale: str, world_size: int) -> None:
    """``trainer.lr_scale='device'``: the configured rate is for one device's batch, as the authors'
    toolkit scales it, so over ``world_size`` processes each group's rate is divided by ``world_size``
    (``optim.lr`` was resolved from the global ``trainer.batch_size``). Call before the scheduler
    reads the groups' initial rates."""
    if lr_scale == "device" and world_size > 1:
        for group in optimizer.param_groups:
            group["lr"] /= world_size
