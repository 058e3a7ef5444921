"""Hydra callback that brackets a sweep: one parent MLflow run, the store and experiment created
once before fan-out, and a summary (finished / skipped / resumed / failed) at the end."""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from mlflow import MlflowClient
from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from ..tracking import ensure_experiment, resolve_uri, with_retry
from ..train import ENV_EXPERIMENT_ID, ENV_PARENT_RUN_ID, ENV_SWEEP_ID
from .entry import SUMMARY_FILE


class SweepFailed(SystemExit):
    """Raised at the end of a sweep in which a run failed, so the command exits non-zero."""


def read_summary(sweep_dir: Path) -> list[dict[str, Any]]:
    path = sweep_dir / SUMMARY_FILE
    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    # A requeued packed job runs its whole pack again: a run it finished before the requeue then
    # reports "skipped". Count each run once, as what happened to it first in this sweep.
    seen: set[str] = set()
    kept = []
    for row in rows:
        run_id = row.get("run_id")
        if run_id in seen and row["status"] == "skipped":
            continue
        seen.add(run_id)
        kept.append(row)
    return kept


def print_summary(rows: list[dict[str, Any]], expected: int | None = None) -> Counter:
    counts = Counter(r["status"] for r in rows)
    table = Table(title=f"sweep summary: {len(rows)} runs" + (f" of {expected}" if expected else ""))
    for col in ("run", "status", "val top-1", "detail"):
        table.add_column(col)
    for r in sorted(rows, key=lambda r: r["run_name"]):
        acc = r.get("val_acc1")
        table.add_row(r["run_name"], r["status"], "" if acc is None or acc != acc else f"{acc:.2f}",
                      str(r.get("detail", ""))[:80])
    console = Console(width=140)
    console.print(table)
    console.print(", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "no runs")
    return counts


class LauncherUnavailable(RuntimeError):
    """The chosen launcher cannot run on this machine."""


def check_launcher(config: DictConfig) -> None:
    target = str(config.hydra.launcher.get("_target_", ""))
    if target.endswith("SlurmLauncher") and shutil.which("sbatch") is None:
        raise LauncherUnavailable(
            "hydra/launcher=slurm submits with SLURM's `sbatch`, which is not on this machine's PATH. "
            "Run the same sweep locally with hydra/launcher=parallel (jobs as local processes) or "
            "hydra/launcher=local (one after another), or launch from a SLURM login node.")


class SweepCallback(Callback):
    def __init__(self) -> None:
        self.client: MlflowClient | None = None
        self.parent_id: str | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        check_launcher(config)
        uri = resolve_uri(config.tracking.uri)
        experiment_id = ensure_experiment(uri, str(config.tracking.experiment))  # once, before any job starts
        self.client = MlflowClient(uri)
        sweep_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        overrides = " ".join(config.hydra.overrides.task)
        run = with_retry(self.client.create_run, experiment_id, run_name=f"sweep-{sweep_id}",
                         tags={"dnrt.sweep_id": sweep_id, "dnrt.kind": "sweep", "dnrt.overrides": overrides,
                               "dnrt.sweep_dir": str(config.hydra.sweep.dir)})
        self.parent_id = run.info.run_id
        with_retry(self.client.log_param, self.parent_id, "overrides", overrides[:6000])
        os.environ.update({ENV_EXPERIMENT_ID: experiment_id, ENV_PARENT_RUN_ID: self.parent_id,
                           ENV_SWEEP_ID: sweep_id})
        print(f"[dnrt] sweep {sweep_id}: experiment {config.tracking.experiment} (id {experiment_id}), "
              f"parent run {self.parent_id}", flush=True)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        rows = read_summary(Path(config.hydra.sweep.dir))
        counts = print_summary(rows)
        failed = counts.get("failed", 0)
        if self.client is not None and self.parent_id is not None:
            with_retry(self.client.log_text, self.parent_id, json.dumps(rows, indent=2), "summary.json")
            for status in ("finished", "skipped", "resumed", "failed", "stopped"):
                with_retry(self.client.log_metric, self.parent_id, f"sweep/{status}", counts.get(status, 0))
            with_retry(self.client.set_terminated, self.parent_id, status="FAILED" if failed else "FINISHED")
        for key in (ENV_EXPERIMENT_ID, ENV_PARENT_RUN_ID, ENV_SWEEP_ID):
            os.environ.pop(key, None)
        if failed:
            reasons = "; ".join(f"{r['run_name']}: {r['detail']}" for r in rows if r["status"] == "failed")
            raise SweepFailed(f"{failed} run(s) failed: {reasons}")
