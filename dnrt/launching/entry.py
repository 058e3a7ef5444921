"""What launch.py runs per job: one training run, isolated from the rest of its sweep."""

from __future__ import annotations

import json
import os
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from ..config import run_name
from ..engine import clock
from ..train import Outcome, train
from .preempt import PreemptionWatcher

SUMMARY_FILE = "dnrt_summary.jsonl"


def _multirun_dir() -> Path | None:
    if not HydraConfig.initialized():
        return None
    hc = HydraConfig.get()
    return Path(hc.sweep.dir) if hc.mode == RunMode.MULTIRUN else None


def record(sweep_dir: Path, outcome: Outcome) -> None:
    """Append this job's outcome to the sweep's summary (one small O_APPEND write per job)."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    line = json.dumps(outcome.__dict__, default=str) + "\n"
    fd = os.open(sweep_dir / SUMMARY_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def run_job(cfg: DictConfig) -> float:
    """Train ``cfg``; return its final val top-1 (NaN if none). In a multirun a failure is recorded
    and the sweep goes on; a single run re-raises it so the process exits non-zero."""
    clock.begin_job()
    try:
        return _run_job(cfg)
    finally:
        clock.end_job()


def _run_job(cfg: DictConfig) -> float:
    sweep_dir = _multirun_dir()
    watcher = PreemptionWatcher().install()
    try:
        outcome = train(cfg, should_stop=watcher)
    except Exception as exc:
        watcher.restore()
        if sweep_dir is None:
            raise
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
        print(f"[dnrt] {run_name(cfg)}: FAILED, {reason}", flush=True)
        outcome = Outcome("failed", run_name(cfg), detail=reason)
    if outcome.status == "stopped" and watcher.signum is not None:
        watcher.hand_over()  # under submitit this requeues the job and exits
        raise SystemExit(f"stopped by signal {watcher.signum}: {outcome.detail}; the same command resumes it")
    watcher.restore()
    if sweep_dir is not None:
        record(sweep_dir, outcome)
    return outcome.val_acc1
