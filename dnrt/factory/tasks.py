"""The task registry: what kind of data a run learns from (``image``, ``node``) and how its parts are
built. Each task registers itself (this package the image task, :mod:`dnrt.graph` node
classification), so nothing above the registry branches on the task.

A data set names its task with a ``task`` attribute (``image`` when it has none); a registered model
names the task it is for (:class:`~dnrt.models.ModelSpec`; timm's are image models).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import DictConfig

from ..types import Components, DistInfo


@dataclass(frozen=True)
class CheckedRun:
    """A config that passed every check, with what the checks built: the data set object (its files
    are read once) and the task its data and model share. :func:`dnrt.preflight.check_run` makes it,
    :func:`dnrt.factory.build_components` builds the run from it without checking again."""

    cfg: DictConfig
    data: Any
    task: str


# (run, this process's rank, device, autocast dtype) -> the run's components
BuildFn = Callable[[CheckedRun, DistInfo, torch.device, "torch.dtype | None"], Components]


def _no_extra() -> str | None:
    return None


@dataclass(frozen=True)
class Task:
    """One kind of learning problem.

    ``noun``: what its data is, in error messages (``graph``: "is a graph model"); ``build``: its components;
    ``check_fit``: ``(cfg, data)`` -> raises if the model cannot take the data's inputs (None: building
    the model is the check); ``missing_extra``: the install hint when an optional package it needs is
    absent, else None."""

    name: str
    noun: str
    build: BuildFn
    check_fit: Callable[[DictConfig, Any], None] | None = None
    missing_extra: Callable[[], str | None] = _no_extra


_TASKS: dict[str, Task] = {}


def register_task(task: Task) -> Task:
    _TASKS[task.name] = task
    return task


def get_task(name: str) -> Task:
    if name not in _TASKS:
        raise KeyError(f"unknown task {name!r}; registered: {', '.join(sorted(_TASKS))}")
    return _TASKS[name]


def list_tasks() -> list[str]:
    return sorted(_TASKS)
