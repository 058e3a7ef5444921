"""Hydra callback that closes a sweep: the summary (finished / skipped / resumed / failed /
refused) printed, logged to the sweep's parent run, and a non-zero exit when a run failed.

Everything before fan-out (checking every cell, the plan of a dry run, the parent run and the
run context) happens in the launchers, through :mod:`dnrt.launching.sweep`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from ..tracking_schema import RunStatus
from .summary import failure_lines, read_summary


class SweepFailed(SystemExit):
    """Raised at the end of a sweep in which a run failed, so the command exits non-zero."""


class SweepCallback(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        # imported here, not at the top: Hydra builds the callbacks in every launch.py process, `--help`
        # and refused command lines included, and MLflow (which the sweep's end loads) takes seconds to import
        from .sweep_end import end_sweep

        sweep_dir = Path(str(config.hydra.sweep.dir))
        counts = end_sweep(sweep_dir)
        failed = counts.get(RunStatus.FAILED, 0) if counts is not None else 0
        if failed:
            rows = read_summary(sweep_dir)
            reasons = "; ".join(failure_lines(rows))
            raise SweepFailed(f"{failed} run(s) failed: {reasons}")
