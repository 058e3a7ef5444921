"""One tracked training run: the function ``launch.py`` calls for every sweep cell.

Decides first whether the config's run already exists (skip a FINISHED one, resume an
unfinished one that has a checkpoint), then builds, trains, checkpoints and logs it. Any
failure marks the MLflow run FAILED with the reason and the traceback before it propagates.
"""

from __future__ import annotations

import json
import os
import socket
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil
from mlflow import MlflowClient
from omegaconf import DictConfig, OmegaConf

from .config import config_hash, run_name, validate
from .engine.allocator import keep_freed_memory
from .engine.build import build_components, set_threads
from .engine.checkpoint import load_checkpoint
from .engine.distributed import DistInfo, broadcast_object, init_distributed
from .engine.trainer import StopRequested, Trainer
from .tracking import (
    HEARTBEAT_TAG,
    JOB_TAG,
    RunTracker,
    current_job_id,
    ensure_experiment,
    find_runs,
    resolve_uri,
    with_retry,
)

# Set by the sweep callback before fan-out, read by every job of the sweep.
ENV_EXPERIMENT_ID = "DNRT_EXPERIMENT_ID"
ENV_PARENT_RUN_ID = "DNRT_PARENT_RUN_ID"
ENV_SWEEP_ID = "DNRT_SWEEP_ID"


@dataclass
class Outcome:
    """What happened to one run: ``finished``, ``skipped``, ``resumed`` (then finished),
    ``stopped`` (resumable) or ``failed``."""

    status: str
    run_name: str
    run_id: str | None = None
    val_acc1: float = float("nan")
    detail: str = ""


@dataclass
class Plan:
    action: str  # new | resume | skip | busy
    run_id: str | None = None
    val_acc1: float = float("nan")
    detail: str = ""


def checkpoint_path(cfg: DictConfig, chash: str) -> Path:
    return Path(cfg.trainer.ckpt_root) / str(cfg.tracking.experiment) / chash / "last.pt"


def plan_run(client: MlflowClient, experiment_id: str, cfg: DictConfig, chash: str, ckpt: Path) -> Plan:
    """Skip a FINISHED twin (unless ``force``), resume an unfinished one whose checkpoint exists,
    leave a live one alone, and retire a dead one (no heartbeat for ``tracking.stale_after_s``)."""
    runs = find_runs(client, experiment_id, chash)
    done = [r for r in runs if r.info.status == "FINISHED"]
    if done and not cfg.force:
        acc = done[0].data.metrics.get("final/val_acc1", float("nan"))
        return Plan("skip", done[0].info.run_id, acc, "a FINISHED run with this config exists (force=true re-runs)")
    ckpt_run = None
    if cfg.trainer.resume == "auto" and ckpt.is_file():
        ckpt_run = load_checkpoint(ckpt, mmap=True).get("run_id")  # the weights are read later, once
    for r in runs:
        if r.info.status == "FINISHED":
            continue
        ours = r.data.tags.get(JOB_TAG) == current_job_id()  # our own earlier incarnation (SLURM requeue)
        if r.info.status == "RUNNING" and not ours and not _stale(r, float(cfg.tracking.stale_after_s)):
            return Plan("busy", r.info.run_id, detail="a live run with this config is in progress elsewhere")
        if r.info.run_id == ckpt_run and not cfg.force:
            return Plan("resume", r.info.run_id, detail=f"resuming from {ckpt}")
        if r.info.status == "RUNNING":  # dead: its process never marked it
            with_retry(client.set_tag, r.info.run_id, "dnrt.status_detail", "failed: process died (stale heartbeat)")
            with_retry(client.set_terminated, r.info.run_id, status="FAILED")
    return Plan("new")


def _stale(run, stale_after_s: float) -> bool:
    """Whether a RUNNING run's process is gone: on this host, its pid no longer exists; elsewhere,
    its heartbeat is older than ``stale_after_s``."""
    host, _, pid = run.data.tags.get(JOB_TAG, "").rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        return not psutil.pid_exists(int(pid))
    beat = float(run.data.tags.get(HEARTBEAT_TAG, run.info.start_time / 1000))
    return time.time() - beat > stale_after_s


def _open_tracker(cfg: DictConfig, plan: Plan, client: MlflowClient, experiment_id: str) -> RunTracker:
    if plan.action == "resume":
        return RunTracker.reopen(client, plan.run_id)
    extra = {"mlflow.parentRunId": os.environ.get(ENV_PARENT_RUN_ID, ""),
             "dnrt.sweep_id": os.environ.get(ENV_SWEEP_ID, "")}
    return RunTracker.create(client, experiment_id, cfg, extra)


def train(cfg: DictConfig, should_stop: Callable[[], bool] | None = None) -> Outcome:
    """Run (or skip, or resume) the training that ``cfg`` describes."""
    set_threads(int(cfg.trainer.threads))
    keep_freed_memory()
    if cfg.trainer.eval_only:
        return evaluate_checkpoint(cfg)
    dist_info = init_distributed()
    chash = config_hash(cfg)
    ckpt = checkpoint_path(cfg, chash)
    client, experiment_id, plan = None, None, Plan("new")
    if dist_info.is_main:
        uri = resolve_uri(cfg.tracking.uri)
        experiment_id = os.environ.get(ENV_EXPERIMENT_ID) or ensure_experiment(uri, str(cfg.tracking.experiment))
        client = MlflowClient(uri)
        plan = plan_run(client, experiment_id, cfg, chash, ckpt)
    plan = broadcast_object(plan)
    name = run_name(cfg)
    if plan.action in ("skip", "busy"):
        print(f"[dnrt] {name}: skipped, {plan.detail} (run {plan.run_id})", flush=True)
        return Outcome("skipped", name, plan.run_id, plan.val_acc1, plan.detail)
    tracker = _open_tracker(cfg, plan, client, experiment_id) if dist_info.is_main else RunTracker(None, None)
    tracker.set_tags({"dnrt.checkpoint": str(ckpt.resolve())})
    tracker.start_heartbeat()
    if tracker.active and cfg.tracking.system_metrics:
        tracker.start_system_metrics()
    try:
        validate(cfg)
        trainer = Trainer(cfg, build_components(cfg, dist_info), dist_info, ckpt, chash)
        if plan.action == "resume" or (cfg.trainer.resume not in (None, "auto")):
            source = ckpt if plan.action == "resume" else Path(cfg.trainer.resume)
            trainer.resume_from(source)
            print(f"[dnrt] {name}: resumed at epoch {trainer.state.epoch} from {source}", flush=True)
        acc = trainer.fit(tracker, should_stop)
    except StopRequested as stop:
        tracker.finish("KILLED", f"stopped: {stop.reason}; the same command resumes it")
        return Outcome("stopped", name, tracker.run_id, detail=stop.reason)
    except BaseException as exc:
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
        tracker.fail(reason, traceback.format_exc())
        raise
    if cfg.trainer.log_checkpoint:
        tracker.log_artifact(ckpt, "checkpoints")
    tracker.finish("FINISHED", "finished")
    status = "resumed" if plan.action == "resume" else "finished"
    return Outcome(status, name, tracker.run_id, acc)


def evaluate_checkpoint(cfg: DictConfig) -> Outcome:
    """Evaluate ``trainer.eval_only`` with the config it was trained with (its model, data and ARR
    memory); prints the metrics as JSON."""
    path = Path(cfg.trainer.eval_only)
    ckpt = load_checkpoint(path)
    trained = OmegaConf.create(ckpt["config_yaml"])
    trained.trainer.device = cfg.trainer.device
    trained.trainer.progress = False
    dist_info = DistInfo()
    trainer = Trainer(trained, build_components(trained, dist_info), dist_info, path, ckpt["config_hash"])
    trainer.load_state_dict(ckpt, weights_only=True)
    metrics = trainer.evaluate()
    print(json.dumps({"checkpoint": str(path), "epoch": ckpt["epoch"], "run_id": ckpt["run_id"], **metrics}),
          flush=True)
    return Outcome("evaluated", run_name(trained), ckpt["run_id"], metrics["val/acc1"])
