"""The data types that cross layers: who runs a run (:class:`Job`, :class:`DistInfo`), where it belongs
(:class:`RunContext`), what was built for it (:class:`Components`) and what happened (:class:`Outcome`).

Plain dataclasses with no imports of their own at run time, so light modules (the sweep context, the
summary) can use them without importing the engine.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .tracking_schema import VAL_ACC1

if TYPE_CHECKING:
    import torch
    from torch import nn

    from .nn import ARR


@dataclass(frozen=True)
class DistInfo:
    """This process's place in a multi-process run (rank 0 of 1 without one)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


@dataclass(frozen=True)
class Job:
    """The job that runs a training run, as its entry point knows it: the scheduler's id (kept across
    SLURM requeues; ``host:pid`` outside a scheduler), the process's rank, and the job's clock.

    ``started``: when the job's clock started (seconds since the epoch; None: when the process
    started); ``warm``: whether an earlier job of this process already paid for the interpreter and
    imports."""

    job_id: str
    dist: DistInfo = field(default_factory=DistInfo)
    started: float | None = None
    warm: bool = False

    @classmethod
    def of_process(cls) -> Job:
        """This process as a job of its own: ``host:pid``, rank 0 of 1, its clock started with the process."""
        return cls(f"{socket.gethostname()}:{os.getpid()}")


@dataclass
class RunContext:
    """Where a run belongs. A sweep's jobs get it from the sweep directory (written once by the
    launching process); a run on its own uses ``cfg.tracking`` and belongs to no sweep."""

    experiment_id: str | None = None
    parent_run_id: str = ""
    sweep_id: str = ""
    tracking_uri: str | None = None


@dataclass
class Outcome:
    """What happened to one run: ``finished``, ``skipped``, ``resumed`` (then finished),
    ``stopped`` (resumable), ``evaluated``, ``refused`` or ``failed``."""

    status: str
    run_name: str
    run_id: str | None = None
    val_acc1: float = float("nan")
    detail: str = ""
    overrides: list[str] = field(default_factory=list)  # the sweep cell's command-line overrides


@dataclass
class Components:
    """Everything a training run is made of, built by :func:`dnrt.factory.build_components`."""

    data: Any
    model: nn.Module  # wrapped in DDP when world_size > 1, compiled with trainer.compile
    core: nn.Module  # the unwrapped model: what checkpoints hold
    arr: ARR | None
    optimizer: torch.optim.Optimizer
    scheduler: Any
    train_loader: Any
    val_loader: Any
    device: torch.device
    amp_dtype: torch.dtype | None
    scaler: torch.amp.GradScaler | None = None  # float16 autocast only (trainer.amp=fp16)
    # The task's evaluation (None: dnrt.engine.loops.evaluate) and the metric its runs are judged by.
    evaluate_fn: Callable | None = None
    headline: str = VAL_ACC1
    # Metrics derived each epoch from the earlier epochs' records and this one's: (history, metrics) -> dict.
    epoch_metrics: Callable | None = None
