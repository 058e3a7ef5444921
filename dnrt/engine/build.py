"""Build everything a run needs from a composed config."""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from hydra.errors import InstantiationException
from hydra.utils import get_method, instantiate
from omegaconf import DictConfig
from torch import nn

from ..config import ConfigError
from ..nn import ARR
from ..preflight import act_spec, check_task, instantiate_dataset, unknown_key
from .amp import amp_dtype, grad_scaler
from .distributed import DistInfo
from .optim import scale_lr_per_device


@dataclass
class Components:
    data: object
    model: nn.Module  # wrapped in DDP when world_size > 1
    core: nn.Module  # the unwrapped model: what checkpoints hold
    arr: ARR | None
    optimizer: torch.optim.Optimizer
    scheduler: object
    train_loader: object
    val_loader: object
    device: torch.device
    amp_dtype: torch.dtype | None
    scaler: torch.amp.GradScaler | None = None  # float16 autocast only (trainer.amp=fp16)
    # The task's evaluation (None: dnrt.engine.loops.evaluate) and the metric its runs are judged by.
    evaluate_fn: Callable | None = None
    headline: str = "val/acc1"
    # Metrics derived each epoch from the earlier epochs' records and this one's: (history, metrics) -> dict.
    epoch_metrics: Callable | None = None


def select_device(name: str, dist_info: DistInfo) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        return torch.device("cuda", dist_info.local_rank)
    return torch.device(name)


def set_threads(n: int) -> None:
    """``n`` intra-op threads; 0 = ``$OMP_NUM_THREADS`` when a launcher set it (parallel jobs get 1
    each), else the cores this process may run on (its affinity, which SLURM narrows to the job)."""
    if n <= 0 and os.environ.get("OMP_NUM_THREADS", "").isdigit():
        n = int(os.environ["OMP_NUM_THREADS"])
    if n <= 0:
        n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    torch.set_num_threads(max(1, n))


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices). Data order and augmentation do not use these:
    loaders derive their randomness from (seed, epoch, rank), so a resume replays them exactly."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _group_error(group: str, cfg: DictConfig, exc: BaseException) -> ConfigError:
    node = cfg[group]
    err = unknown_key(group, exc, get_method(node._target_), node)
    cause = exc.__cause__ or exc
    return err or ConfigError(f"{group}={node.get('opt', node.get('sched', node._target_))}", "...",
                              f"{type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''}")


def build_optimizer(cfg: DictConfig, model: nn.Module) -> torch.optim.Optimizer:
    """``cfg.optim`` for ``model``; an unknown key or a value the optimizer refuses is a ConfigError."""
    try:
        return instantiate(cfg.optim, model_or_params=model)
    except (InstantiationException, TypeError, ValueError) as exc:
        raise _group_error("optim", cfg, exc) from exc


def build_scheduler(cfg: DictConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int):
    """``cfg.sched`` stepped per iteration over ``trainer.epochs`` epochs of ``steps_per_epoch``."""
    try:
        scheduler, _ = instantiate(cfg.sched, optimizer=optimizer, num_epochs=cfg.trainer.epochs,
                                   updates_per_epoch=steps_per_epoch, step_on_epochs=False)
    except (InstantiationException, TypeError, ValueError) as exc:
        raise _group_error("sched", cfg, exc) from exc
    return scheduler


def build_model(cfg: DictConfig, misfit: str, **inputs):
    """``cfg.model`` built for the data's ``inputs`` (num_classes, in_chans, ...) with the act group's
    activation; an unknown key names itself, any other failure is ``model.name: <misfit>: <cause>``."""
    try:
        # act goes in after instantiation: Hydra would turn the ActSpec dataclass into a config node
        return instantiate(cfg.model, _partial_=True, **inputs)(act=act_spec(cfg))
    except (InstantiationException, TypeError, ValueError, KeyError) as exc:
        err = unknown_key("model", exc, get_method(cfg.model._target_), cfg.model)
        if err is not None:
            raise err from exc
        raise ConfigError("model.name", cfg.model.name, f"{misfit}: {exc.__cause__ or exc}") from exc


def build_arr(cfg: DictConfig, model: nn.Module, built, num_classes: int, sample, device: torch.device
              ) -> ARR | None:
    """ARR on ``built``'s taps (or the regularizer's own), sized by a dry run on ``sample`` (a model
    input); None without ``regularizer=arr``."""
    if cfg.regularizer.name != "arr":
        return None
    r, t = cfg.regularizer, cfg.trainer
    return ARR(model, num_classes, taps=r.taps or built.taps, pooling=r.pooling or built.pooling,
               momentum=r.momentum, sample=sample, average=t.get("arr_average", "tap"),
               memory=t.get("arr_memory", "global")).to(device)


def build_components(cfg: DictConfig, dist_info: DistInfo, data=None) -> Components:
    """Everything a run needs; ``data``: the data set object the preflight already made, if any."""
    t = cfg.trainer
    seed_everything(int(cfg.seed))
    device = select_device(t.device, dist_info)
    dtype = amp_dtype(t.amp, device)  # an unusable setting fails before anything is built
    data = data if data is not None else instantiate_dataset(cfg)
    if check_task(cfg, data) == "node":  # also refuses a graph model on images and vice versa
        from ..graph.build import build_graph_components  # PyTorch Geometric: an optional extra

        return build_graph_components(cfg, dist_info, data, device, dtype)
    built = build_model(cfg, f"does not fit dataset={cfg.dataset.name} ({data.img_size} px, {data.in_chans} "
                              "channels)", num_classes=data.num_classes, img_size=data.img_size,
                        in_chans=data.in_chans)
    model = built.model.to(device)
    # SyncBatchNorm runs on accelerators only; before ARR hooks its taps
    if t.get("sync_bn") and dist_info.world_size > 1 and device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    channels_last = t.channels_last == "auto" and device.type == "cuda" or t.channels_last is True
    if channels_last and built.pooling == "avg2d":
        model = model.to(memory_format=torch.channels_last)
    arr = build_arr(cfg, model, built, data.num_classes,
                    torch.zeros(2, data.in_chans, data.img_size, data.img_size, device=device), device)
    optimizer = build_optimizer(cfg, model)
    scale_lr_per_device(optimizer, t.get("lr_scale", "global"), dist_info.world_size)
    if t.batch_size % dist_info.world_size:
        raise ConfigError("trainer.batch_size", t.batch_size, f"must divide by the {dist_info.world_size} ranks")
    train_loader, val_loader = data.loaders(t.batch_size // dist_info.world_size, seed=cfg.seed, device=device,
                                            rank=dist_info.rank, world_size=dist_info.world_size,
                                            workers=t.workers)
    scheduler = build_scheduler(cfg, optimizer, len(train_loader))
    core = model
    if t.compile:
        model = torch.compile(model)
    if dist_info.world_size > 1:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                                    else None)
    return Components(data, model, core, arr, optimizer, scheduler, train_loader, val_loader, device,
                      dtype, grad_scaler(dtype, device))
