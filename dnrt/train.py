"""One tracked training run: the function ``launch.py`` calls for every sweep cell.

Order matters: the config is checked first (:mod:`dnrt.preflight`), then the experiment is
searched for the config's run (skip a FINISHED one, resume an unfinished one that has a
checkpoint), then the data and model are built, and only then is an MLflow run created. So a
config that cannot run is refused with a :class:`~dnrt.config.ConfigError` and leaves nothing
behind; a failure after that marks the run FAILED with the reason and the traceback.

``train`` reads no environment variable and changes no process-wide setting: what a sweep job
needs to know (experiment, parent run, sweep id) comes in a :class:`RunContext`, and threads and
the allocator are set by the entry point.
"""

from __future__ import annotations

import json
import logging
import socket
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil
from mlflow import MlflowClient
from omegaconf import DictConfig, OmegaConf

from .config import ConfigError, config_hash, run_name, signature_revisions, signature_version
from .engine.build import build_components
from .engine.checkpoint import load_checkpoint
from .engine.distributed import DistInfo, broadcast_object, init_distributed
from .engine.trainer import StopRequested, Trainer
from .preflight import preflight
from .tracking import (
    RunTracker,
    current_job_id,
    ensure_experiment,
    find_runs,
    store_uri,
    with_retry,
)
from .tracking_schema import (
    CHECKPOINT_DIR,
    CHECKPOINT_FILE,
    CHECKPOINT_TAG,
    DETAIL_TAG,
    FINAL_VAL_ACC1,
    HEARTBEAT_TAG,
    JOB_TAG,
    PARENT_TAG,
    REVISED_TAG,
    SIGNATURE_TAG,
    SWEEP_TAG,
    VAL_ACC1,
    RunStatus,
)

log = logging.getLogger(__name__)


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
    epoch: int | None = None  # resume: the checkpoint's epoch


def checkpoint_path(cfg: DictConfig, chash: str) -> Path:
    return Path(cfg.trainer.ckpt_root) / str(cfg.tracking.experiment) / chash / CHECKPOINT_FILE


def decide(runs: list, cfg: DictConfig, ckpt: Path) -> tuple[Plan, list[str]]:
    """What to do with a config whose runs (newest first) are ``runs``, without changing anything:
    skip a FINISHED twin (unless ``force``), resume an unfinished one whose checkpoint exists, leave
    a live one alone. Also returns the ids of dead RUNNING runs (to be marked FAILED)."""
    done = [r for r in runs if r.info.status == "FINISHED"]
    if done and not cfg.force:
        acc = done[0].data.metrics.get(FINAL_VAL_ACC1, float("nan"))
        return Plan("skip", done[0].info.run_id, acc, "a FINISHED run with this config exists (force=true re-runs)"), []
    ckpt_run, ckpt_epoch = None, None
    if cfg.trainer.resume == "auto" and ckpt.is_file():
        meta = load_checkpoint(ckpt, mmap=True)  # the weights are read later, once
        ckpt_run, ckpt_epoch = meta.get("run_id"), meta.get("epoch")
    dead: list[str] = []
    for r in runs:
        if r.info.status == "FINISHED":
            continue
        ours = r.data.tags.get(JOB_TAG) == current_job_id()  # our own earlier incarnation (SLURM requeue)
        if r.info.status == "RUNNING" and not ours and not _stale(r, float(cfg.tracking.stale_after_s)):
            return Plan("busy", r.info.run_id, detail="a live run with this config is in progress elsewhere"), dead
        if r.info.run_id == ckpt_run and not cfg.force:
            return Plan("resume", r.info.run_id, detail=f"resuming from {ckpt} (epoch {ckpt_epoch})",
                        epoch=ckpt_epoch), dead
        if r.info.status == "RUNNING":  # dead: its process never marked it
            dead.append(r.info.run_id)
    return Plan("new"), dead


def plan_run(client: MlflowClient, experiment_id: str, cfg: DictConfig, chash: str, ckpt: Path) -> Plan:
    """:func:`decide` on the experiment's runs of ``chash``, then retire the dead ones (no heartbeat
    for ``tracking.stale_after_s``, or their pid gone on this host)."""
    plan, dead = decide(find_runs(client, experiment_id, chash), cfg, ckpt)
    for run_id in dead:
        with_retry(client.set_tag, run_id, DETAIL_TAG, f"{RunStatus.FAILED}: process died (stale heartbeat)")
        with_retry(client.set_terminated, run_id, status="FAILED")
    return plan


def _stale(run, stale_after_s: float) -> bool:
    """Whether a RUNNING run's process is gone: on this host, its pid no longer exists; elsewhere,
    its heartbeat is older than ``stale_after_s``."""
    host, _, pid = run.data.tags.get(JOB_TAG, "").rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        return not psutil.pid_exists(int(pid))
    beat = float(run.data.tags.get(HEARTBEAT_TAG, run.info.start_time / 1000))
    return time.time() - beat > stale_after_s


def _open_tracker(cfg: DictConfig, plan: Plan, client: MlflowClient, experiment_id: str,
                  context: RunContext) -> RunTracker:
    if plan.action == "resume":
        return RunTracker.reopen(client, plan.run_id)
    extra = {PARENT_TAG: context.parent_run_id, SWEEP_TAG: context.sweep_id,
             SIGNATURE_TAG: str(signature_version(cfg)),
             REVISED_TAG: ", ".join(f"{k}: {v}" for k, v in signature_revisions(cfg).items())}
    return RunTracker.create(client, experiment_id, cfg, extra)


def train(cfg: DictConfig, should_stop: Callable[[], bool] | None = None,
          context: RunContext | None = None) -> Outcome:
    """Run (or skip, or resume) the training that ``cfg`` describes. Raises ``ConfigError`` (and
    creates nothing) for a config that cannot run."""
    if cfg.trainer.eval_only:
        return evaluate_checkpoint(cfg)
    context = context or RunContext()
    data = preflight(cfg, fit=False)  # the model's fit is checked by building it, below, still before any run
    dist_info = init_distributed()
    chash = config_hash(cfg)
    ckpt = checkpoint_path(cfg, chash)
    client, experiment_id, plan = None, None, Plan("new")
    if dist_info.is_main:
        uri = context.tracking_uri or store_uri(cfg.tracking.uri)
        experiment_id = context.experiment_id or ensure_experiment(uri, str(cfg.tracking.experiment))
        client = MlflowClient(uri)
        plan = plan_run(client, experiment_id, cfg, chash, ckpt)
    plan = broadcast_object(plan)
    name = run_name(cfg)
    if plan.action in ("skip", "busy"):
        log.info(f"{name}: skipped, {plan.detail} (run {plan.run_id})")
        return Outcome(RunStatus.SKIPPED, name, plan.run_id, plan.val_acc1, plan.detail)
    components, build_error = None, None
    try:
        components = build_components(cfg, dist_info, data)
    except ConfigError:
        raise
    except Exception as exc:  # a runtime failure while building: recorded on a FAILED run below
        build_error = exc
    tracker = (_open_tracker(cfg, plan, client, experiment_id, context) if dist_info.is_main
               else RunTracker(None, None))
    tracker.set_tags({CHECKPOINT_TAG: str(ckpt.resolve())})
    tracker.start_heartbeat()
    if tracker.active and cfg.tracking.system_metrics:
        tracker.start_system_metrics()
    try:
        if build_error is not None:
            raise build_error
        trainer = Trainer(cfg, components, dist_info, ckpt, chash)
        if plan.action == "resume" or (cfg.trainer.resume not in (None, "auto")):
            source = ckpt if plan.action == "resume" else Path(cfg.trainer.resume)
            trainer.resume_from(source)
            log.info(f"{name}: resumed at epoch {trainer.state.epoch} from {source}")
        acc = trainer.fit(tracker, should_stop)
    except StopRequested as stop:
        tracker.finish("KILLED", f"{RunStatus.STOPPED}: {stop.reason}; the same command resumes it")
        return Outcome(RunStatus.STOPPED, name, tracker.run_id, detail=stop.reason)
    except BaseException as exc:
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
        tracker.fail(reason, traceback.format_exc())
        raise
    if cfg.trainer.log_checkpoint:
        tracker.log_artifact(ckpt, CHECKPOINT_DIR)
    tracker.finish("FINISHED", RunStatus.FINISHED.value)
    status = RunStatus.RESUMED if plan.action == "resume" else RunStatus.FINISHED
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
    return Outcome(RunStatus.EVALUATED, run_name(trained), ckpt["run_id"], metrics[VAL_ACC1])
