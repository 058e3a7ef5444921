"""The image-classification task: a model built for the data's input size, ARR on its taps, the
loaders split across ranks, DDP beyond one process."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass

import torch
from hydra.utils import get_method, instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from ..config import ConfigError
from ..engine.amp import grad_scaler
from ..engine.optim import scale_lr_per_device
from ..types import Components, DistInfo
from .keys import container, root_cause, unknown_key
from .parts import build_arr, build_model, build_optimizer, build_scheduler
from .tasks import CheckedRun, Task, register_task


@dataclass(frozen=True)
class DataShape:
    num_classes: int
    img_size: int
    in_chans: int


@functools.lru_cache(maxsize=256)
def _fit_error(model_json: str, shape: DataShape) -> tuple[str, str, str] | None:
    """Build the model on the CPU and run one eval forward at the data's input size; None if it
    fits, else (key, value, why). Cached: a sweep builds each distinct model once."""
    node = OmegaConf.create(json.loads(model_json))
    target = node.get("_target_")
    try:
        built = instantiate(node, num_classes=shape.num_classes, img_size=shape.img_size, in_chans=shape.in_chans,
                            act="")
        with torch.no_grad():
            built.model.eval()(torch.zeros(2, shape.in_chans, shape.img_size, shape.img_size))
    except Exception as exc:  # noqa: BLE001 (any build or forward failure means: does not fit)
        err = unknown_key("model", exc, get_method(target) if target else None, node)
        if err is not None:
            return err.key, str(err.value), err.why + (f"; valid: {err.valid}" if err.valid else "")
        cause = root_cause(exc)
        return ("model.name", str(node.get("name")), f"does not fit {shape.img_size}-px, {shape.in_chans}-channel "
                f"inputs ({type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''})")
    return None


def check_model_fits(cfg: DictConfig, data) -> None:
    """The model builds for ``data``'s classes, size and channels and runs one forward at that size."""
    shape = DataShape(int(data.num_classes), int(data.img_size), int(data.in_chans))
    error = _fit_error(json.dumps(container(cfg.model), sort_keys=True), shape)
    if error is not None:
        key, value, why = error
        raise ConfigError(key, value, why)


def build_image_components(run: CheckedRun, dist_info: DistInfo, device: torch.device,
                           dtype: torch.dtype | None) -> Components:
    """Model (channels-last where it helps, compiled with ``trainer.compile``, DDP over ranks), ARR,
    optimizer, per-step schedule and this rank's share of the loaders."""
    cfg, data, trainer = run.cfg, run.data, run.cfg.trainer
    built = build_model(cfg, f"does not fit dataset={cfg.dataset.name} ({data.img_size} px, {data.in_chans} "
                              "channels)", num_classes=data.num_classes, img_size=data.img_size,
                        in_chans=data.in_chans)
    model = built.model.to(device)
    # SyncBatchNorm runs on accelerators only; before ARR hooks its taps
    if trainer.get("sync_bn") and dist_info.world_size > 1 and device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    channels_last = trainer.channels_last == "auto" and device.type == "cuda" or trainer.channels_last is True
    if channels_last and built.pooling == "avg2d":
        model = model.to(memory_format=torch.channels_last)
    arr = build_arr(cfg, model, built, data.num_classes,
                    torch.zeros(2, data.in_chans, data.img_size, data.img_size, device=device), device)
    optimizer = build_optimizer(cfg, model)
    scale_lr_per_device(optimizer, trainer.get("lr_scale", "global"), dist_info.world_size)
    if trainer.batch_size % dist_info.world_size:
        raise ConfigError("trainer.batch_size", trainer.batch_size, f"must divide by the {dist_info.world_size} ranks")
    train_loader, val_loader = data.loaders(trainer.batch_size // dist_info.world_size, seed=cfg.seed, device=device,
                                            rank=dist_info.rank, world_size=dist_info.world_size,
                                            workers=trainer.workers)
    scheduler = build_scheduler(cfg, optimizer, len(train_loader))
    core = model
    if trainer.compile:
        model = torch.compile(model)
    if dist_info.world_size > 1:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                                    else None)
    return Components(data, model, core, arr, optimizer, scheduler, train_loader, val_loader, device,
                      dtype, grad_scaler(dtype, device))


IMAGE = register_task(Task("image", "image set", build_image_components, check_fit=check_model_fits))
