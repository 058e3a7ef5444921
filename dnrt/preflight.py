"""Checks that refuse a config before anything is created (no MLflow run, checkpoint or output).

``check_run(cfg)`` runs every check a run needs: values, the names of the model, activation and
data set, every key of every group (an unknown key is an error naming it; optimizer and schedule
are built on a tiny module), the data files, the task the data and model share, and whether the
model fits the data's input size. It returns a :class:`~dnrt.factory.CheckedRun`: the config with
the data set object it built, which :func:`dnrt.factory.build_components` then builds the run from.
Errors are :class:`ConfigError`, one line: ``<key>=<value>: <why>; valid: ...``. The sweep check
runs the same function on every cell before any job is submitted; model-fit results are cached per
distinct model and input shape, so a 1,000-cell sweep builds each distinct model once.
"""

from __future__ import annotations

import functools

import torch
from omegaconf import DictConfig

from . import graph  # noqa: F401  (registers the node-classification task and the GNNs)
from .config import ConfigError, validate
from .engine.faults import parse_signal_at
from .factory import (
    CheckedRun,
    act_spec,
    build_optimizer,
    build_scheduler,
    check_model_keys,
    check_regularizer,
    check_schema_keys,
    get_task,
    instantiate_dataset,
)
from .models import list_models, model_spec


def model_task(name: str) -> str:
    """The task a model is for: its registration's, ``image`` for any timm model."""
    spec = model_spec(name)
    return spec.task if spec is not None else "image"


def check_model_name(cfg: DictConfig) -> None:
    check_model_keys(cfg)
    name = str(cfg.model.name)
    if name in list_models() or name in _timm_names():
        return
    raise ConfigError("model.name", name, "unknown model", list_models() + ["or any timm.list_models() name"])


@functools.lru_cache(maxsize=1)
def _timm_names() -> frozenset[str]:
    import timm

    return frozenset(timm.list_models())


def check_task(cfg: DictConfig, data) -> str:
    """The data's task (``image``, ``node``); the model must be one for it, and an optional extra the
    task needs (PyTorch Geometric for graphs) must be installed."""
    data_task, name = getattr(data, "task", "image"), str(cfg.model.name)
    wanted = model_task(name)
    if wanted != data_task:
        if data_task != "image":
            noun = get_task(data_task).noun
            models = [m for m in list_models() if model_task(m) == data_task]
            raise ConfigError("model.name", name, f"dataset={cfg.dataset.name} is a {noun}: choose a {noun} model",
                              models)
        noun = get_task(wanted).noun
        raise ConfigError("model.name", name, f"is a {noun} model; dataset={cfg.dataset.name} is not a {noun}")
    missing = get_task(data_task).missing_extra()
    if missing is not None:
        raise ConfigError("model.name", name, missing)
    return data_task


def check_optim_sched(cfg: DictConfig) -> None:
    """Build the optimizer and the schedule on a two-parameter module: every key is accepted and
    every value is one they take (cheap; the real ones are built with the model)."""
    build_scheduler(cfg, build_optimizer(cfg, torch.nn.Linear(2, 1)), steps_per_epoch=1)


def check_run(cfg: DictConfig, fit: bool = True) -> CheckedRun:
    """Every check a run needs before anything is created; ``fit`` also builds the model once
    (cached) to check that it takes the data's inputs, where its task does so (a GNN takes any graph:
    building it is its fit check)."""
    check_schema_keys(cfg)
    validate(cfg)
    act_spec(cfg)
    check_regularizer(cfg)
    check_optim_sched(cfg)
    parse_signal_at(cfg.trainer.get("signal_at_step"))
    check_model_name(cfg)
    data = instantiate_dataset(cfg)
    task = get_task(check_task(cfg, data))
    if fit and task.check_fit is not None:
        task.check_fit(cfg, data)
    return CheckedRun(cfg, data, task.name)
