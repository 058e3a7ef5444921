"""Hydra callback that closes a sweep: the summary (finished / skipped / resumed / failed /
refused) printed, logged to the sweep's parent run, and a non-zero exit when a run failed.

Everything before fan-out (checking every cell, the plan of a dry run, the parent run and the
run context) happens in the launchers, through :mod:`dnrt.launching.sweep`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from ..tracking_schema import SUMMARY_ARTIFACT, RunStatus, sweep_metric
from .context import read_context
from .summary import print_summary, read_summary


class SweepFailed(SystemExit):
    """Raised at the end of a sweep in which a run failed, so the command exits non-zero."""


class SweepCallback(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        # imported here, not at the top: Hydra builds the callbacks in every launch.py process, `--help`
        # and refused command lines included, and MLflow (which dnrt.tracking loads) takes seconds to import
        from mlflow import MlflowClient

        from ..tracking import with_retry

        sweep_dir = Path(str(config.hydra.sweep.dir))
        context = read_context(sweep_dir)
        if context is None:  # a dry run, or nothing was launched
            return
        rows = read_summary(sweep_dir)
        counts = print_summary(rows)
        failed = counts.get(RunStatus.FAILED, 0)
        client = MlflowClient(context.tracking_uri)
        with_retry(client.log_text, context.parent_run_id, json.dumps(rows, indent=2), SUMMARY_ARTIFACT)
        for status in RunStatus:
            with_retry(client.log_metric, context.parent_run_id, sweep_metric(status), counts.get(status, 0))
        with_retry(client.set_terminated, context.parent_run_id, status="FAILED" if failed else "FINISHED")
        if failed:
            reasons = "; ".join(f"{r['run_name']}: {r['detail']}" for r in rows if r["status"] == RunStatus.FAILED)
            raise SweepFailed(f"{failed} run(s) failed: {reasons}")
