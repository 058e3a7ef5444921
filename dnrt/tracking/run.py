"""One MLflow run per training run: open or reopen it, log each epoch exactly once, close it."""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from omegaconf import DictConfig, OmegaConf

from ..config import config_hash, flat_params, run_name
from ..tracking_schema import (
    ACT_TAG,
    CONFIG_ARTIFACT,
    DATASET_TAG,
    DETAIL_TAG,
    ERROR_ARTIFACT,
    GIT_TAG,
    HASH_TAG,
    HEARTBEAT_TAG,
    JOB_TAG,
    MODEL_TAG,
    REGULARIZER_TAG,
    VAL_ACC1,
    RunStatus,
    tag_filter,
)
from .store import project_root, with_retry


def git_sha() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project_root(), capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def find_runs(client: MlflowClient, experiment_id: str, chash: str) -> list:
    """Runs of this experiment with config hash ``chash``, newest first."""
    return with_retry(client.search_runs, [experiment_id], filter_string=tag_filter(HASH_TAG, chash),
                      order_by=["attributes.start_time DESC"], max_results=50)


class RunTracker:
    """Logs one training run. ``rank != 0`` makes every call a no-op (only rank 0 logs)."""

    def __init__(self, client: MlflowClient | None, run_id: str | None):
        self.client = client
        self.run_id = run_id
        self._monitor = None
        self._beating = threading.Event()

    @classmethod
    def create(cls, client: MlflowClient, experiment_id: str, cfg: DictConfig, extra_tags: dict[str, str],
               job_id: str) -> RunTracker:
        """A new run of ``cfg``, tagged with the ``job_id`` that runs it."""
        tags = {HASH_TAG: config_hash(cfg), GIT_TAG: git_sha(), DETAIL_TAG: "running",
                JOB_TAG: job_id, HEARTBEAT_TAG: f"{time.time():.0f}",
                MODEL_TAG: str(cfg.model.name), ACT_TAG: str(cfg.act.name),
                REGULARIZER_TAG: str(cfg.regularizer.name), DATASET_TAG: str(cfg.dataset.name),
                **{k: v for k, v in extra_tags.items() if v}}
        run = with_retry(client.create_run, experiment_id, run_name=run_name(cfg), tags=tags)
        tracker = cls(client, run.info.run_id)
        params = [Param(k, v[:6000]) for k, v in flat_params(cfg).items()]
        for i in range(0, len(params), 100):
            with_retry(client.log_batch, tracker.run_id, params=params[i:i + 100])
        tracker.log_text(OmegaConf.to_yaml(cfg, resolve=True), CONFIG_ARTIFACT)
        return tracker

    @classmethod
    def reopen(cls, client: MlflowClient, run_id: str, job_id: str) -> RunTracker:
        """Run ``run_id`` again, now by ``job_id``."""
        with_retry(client.update_run, run_id, status="RUNNING")
        tracker = cls(client, run_id)
        tracker.set_tags({DETAIL_TAG: RunStatus.RESUMED.value, JOB_TAG: job_id})
        tracker.heartbeat()
        return tracker

    @property
    def active(self) -> bool:
        return self.client is not None and self.run_id is not None

    def set_tags(self, tags: dict[str, str]) -> None:
        if self.active:
            with_retry(self.client.log_batch, self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def heartbeat(self) -> None:
        self.set_tags({HEARTBEAT_TAG: f"{time.time():.0f}"})

    def start_heartbeat(self, interval_s: float = 60.0) -> None:
        """Refresh the heartbeat tag from a daemon thread, so a long epoch never looks dead."""
        if not self.active:
            return

        def beat():
            while not self._beating.wait(interval_s):
                with contextlib.suppress(Exception):  # a missed beat must never kill training
                    self.heartbeat()

        threading.Thread(target=beat, name="dnrt-heartbeat", daemon=True).start()

    def logged_steps(self, key: str = VAL_ACC1) -> set[int]:
        if not self.active:
            return set()
        return {m.step for m in with_retry(self.client.get_metric_history, self.run_id, key)}

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        if self.active:
            now = int(time.time() * 1000)
            batch = [Metric(k, float(v), now, step) for k, v in metrics.items()]
            with_retry(self.client.log_batch, self.run_id, metrics=batch)

    def log_text(self, text: str, artifact_file: str) -> None:
        if self.active:
            with_retry(self.client.log_text, self.run_id, text, artifact_file)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        if self.active:
            with_retry(self.client.log_artifact, self.run_id, str(path), artifact_path)

    def start_system_metrics(self) -> None:
        if not self.active:
            return
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        self._monitor = SystemMetricsMonitor(self.run_id, sampling_interval=5, samples_before_logging=1)
        self._monitor.start()

    def _stop_monitor(self) -> None:
        if self._monitor is not None:
            self._monitor.finish()
            self._monitor = None

    def finish(self, status: str = "FINISHED", detail: str = RunStatus.FINISHED.value) -> None:
        self._beating.set()
        self._stop_monitor()
        if self.active:
            self.set_tags({DETAIL_TAG: detail[:5000]})
            with_retry(self.client.set_terminated, self.run_id, status=status)

    def fail(self, reason: str, traceback_text: str) -> None:
        """Mark FAILED with ``reason`` and the traceback as ``error.txt``."""
        if not self.active:
            return
        self.log_text(traceback_text, ERROR_ARTIFACT)
        self.finish("FAILED", f"{RunStatus.FAILED.value}: {reason}")
