"""The build layer: every part of a run made from its config group, the key checks that refuse a
config before anything is made, and the task registry (:mod:`dnrt.factory.tasks`).

:func:`dnrt.preflight.check_run` checks a config into a :class:`CheckedRun`;
:func:`build_components` builds a run from it.
"""

from __future__ import annotations

from ..engine.amp import amp_dtype
from ..types import Components, DistInfo
from .image import DataShape, check_model_fits
from .keys import TOP_LEVEL_KEYS, act_spec, check_model_keys, check_regularizer, check_schema_keys, unknown_key
from .parts import (
    build_arr,
    build_model,
    build_optimizer,
    build_scheduler,
    instantiate_dataset,
    seed_everything,
    select_device,
)
from .tasks import CheckedRun, Task, get_task, list_tasks, register_task


def build_components(run: CheckedRun, dist_info: DistInfo) -> Components:
    """Everything ``run`` needs on this rank: seeds the global RNGs from ``cfg.seed``, picks the
    device and autocast dtype, then builds the parts its task registered."""
    trainer = run.cfg.trainer
    seed_everything(int(run.cfg.seed))
    device = select_device(trainer.device, dist_info)
    dtype = amp_dtype(trainer.amp, device)  # an unusable setting fails before anything is built
    return get_task(run.task).build(run, dist_info, device, dtype)


__all__ = [
    "TOP_LEVEL_KEYS", "CheckedRun", "DataShape", "Task", "act_spec", "build_arr", "build_components", "build_model",
    "build_optimizer", "build_scheduler", "check_model_fits", "check_model_keys", "check_regularizer",
    "check_schema_keys", "get_task", "instantiate_dataset", "list_tasks", "register_task", "seed_everything",
    "select_device", "unknown_key",
]
