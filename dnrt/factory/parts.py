"""The parts of a run, each built from its config group: data set, model, ARR, optimizer, schedule,
device. A group's unknown key or a value its target refuses is a :class:`~dnrt.config.ConfigError`."""

from __future__ import annotations

import random

import numpy as np
import torch
from hydra.errors import InstantiationException
from hydra.utils import get_method, instantiate
from omegaconf import DictConfig
from torch import nn

from ..config import ConfigError, DataNotFound
from ..data import DataFileError, DatasetNotFoundError
from ..nn import ARR
from ..types import DistInfo
from .keys import act_spec, root_cause, unknown_key


def _group_error(group: str, cfg: DictConfig, exc: BaseException) -> ConfigError:
    node = cfg[group]
    err = unknown_key(group, exc, get_method(node._target_), node)
    cause = exc.__cause__ or exc
    return err or ConfigError(f"{group}={node.get('opt', node.get('sched', node._target_))}", "...",
                              f"{type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''}")


def instantiate_dataset(cfg: DictConfig):
    """The data set object; its files are checked (``num_classes`` reads the class list, and a data
    set's ``check_files()``, where it has one, opens every file a run reads)."""
    target = cfg.dataset.get("_target_")
    data = None
    try:
        data = instantiate(cfg.dataset)
        num_classes = data.num_classes
        check_files = getattr(data, "check_files", None)
        if check_files is not None:  # every file the run will read is opened here, before any run exists
            check_files()
    except DatasetNotFoundError as exc:
        raise DataNotFound("dataset.root", cfg.dataset.get("root", cfg.get("data_dir")), str(exc), data) from None
    except DataFileError as exc:
        raise ConfigError("dataset.root", cfg.dataset.get("root", cfg.get("data_dir")), str(exc)) from None
    except (InstantiationException, TypeError, ValueError) as exc:
        err = unknown_key("dataset", exc, get_method(target) if target else None, cfg.dataset)
        if err is not None:
            raise err from None
        cause = root_cause(exc)
        raise ConfigError(f"dataset={cfg.dataset.name}", "...", f"{type(cause).__name__}: "
                          f"{str(cause).splitlines()[0]}") from None
    if num_classes < 2:
        raise ConfigError(f"dataset={cfg.dataset.name}", num_classes, "needs at least 2 classes")
    return data


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
    reg, trainer = cfg.regularizer, cfg.trainer
    return ARR(model, num_classes, taps=reg.taps or built.taps, pooling=reg.pooling or built.pooling,
               momentum=reg.momentum, sample=sample, average=trainer.get("arr_average", "tap"),
               memory=trainer.get("arr_memory", "global")).to(device)


def select_device(name: str, dist_info: DistInfo) -> torch.device:
    """``trainer.device`` (``auto``: CUDA when available), this rank's GPU on CUDA."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        return torch.device("cuda", dist_info.local_rank)
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices). Data order and augmentation do not use these:
    loaders derive their randomness from (seed, epoch, rank), so a resume replays them exactly."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
