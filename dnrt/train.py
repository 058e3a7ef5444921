"""One tracked training run: the function ``launch.py`` calls for every sweep cell.

Order matters: the config is checked first (:func:`dnrt.preflight.check_run`), then the experiment
is searched for the config's run (skip a FINISHED one, resume an unfinished one that has a
checkpoint: :mod:`dnrt.decision`), then the data and model are built, and only then is an MLflow run
created. So a config that cannot run is refused with a :class:`~dnrt.config.ConfigError` and leaves
nothing behind; a failure after that marks the run FAILED with the reason and the traceback.

``train`` reads no environment variable: who runs it (the job's id, this process's rank, the job's
clock) comes in a :class:`~dnrt.types.Job` and where it belongs (experiment, parent run, sweep id) in
a :class:`~dnrt.types.RunContext`; the process group, threads and the allocator are set by the
entry point (:mod:`dnrt.launching.entry`). The one process-wide state it changes is the global random
number generators (python, numpy, torch), seeded from ``cfg.seed`` before the model is built, because
model initialisation draws from them.
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Callable
from pathlib import Path

from mlflow import MlflowClient
from omegaconf import DictConfig, OmegaConf

from .config import ConfigError, config_hash, run_name, signature_revisions, signature_version
from .decision import Decision, SignatureClaim, checkpoint_path, decide_and_retire
from .engine.checkpoint import load_checkpoint
from .engine.distributed import broadcast_object
from .engine.trainer import StopRequested, Trainer
from .factory import build_components
from .preflight import check_run
from .tracking import RunTracker, ensure_experiment, open_client, store_uri
from .tracking_schema import (
    CHECKPOINT_DIR,
    CHECKPOINT_TAG,
    PARENT_TAG,
    REVISED_TAG,
    SIGNATURE_TAG,
    SWEEP_TAG,
    VAL_ACC1,
    RunStatus,
)
from .types import DistInfo, Job, Outcome, RunContext

log = logging.getLogger(__name__)

__all__ = ["Job", "Outcome", "RunContext", "checkpoint_path", "evaluate_checkpoint", "train"]


def _open_tracker(cfg: DictConfig, decision: Decision, client: MlflowClient, experiment_id: str,
                  context: RunContext, job: Job) -> RunTracker:
    if decision.action == "resume":
        return RunTracker.reopen(client, decision.run_id, job.job_id)
    extra = {PARENT_TAG: context.parent_run_id, SWEEP_TAG: context.sweep_id,
             SIGNATURE_TAG: str(signature_version(cfg)),
             REVISED_TAG: ", ".join(f"{k}: {v}" for k, v in signature_revisions(cfg).items())}
    return RunTracker.create(client, experiment_id, cfg, extra, job.job_id)


def train(cfg: DictConfig, should_stop: Callable[[], bool] | None = None, context: RunContext | None = None,
          job: Job | None = None) -> Outcome:
    """Run (or skip, or resume) the training that ``cfg`` describes. Raises ``ConfigError`` (and
    creates nothing) for a config that cannot run. ``job``: who runs it (default: this process,
    rank 0 of 1, its clock started with the process)."""
    if cfg.trainer.eval_only:
        return evaluate_checkpoint(cfg)
    context = context or RunContext()
    job = job or Job.of_process()
    dist_info = job.dist
    run = check_run(cfg, fit=False)  # the model's fit is checked by building it, below, still before any run
    chash = config_hash(cfg)
    ckpt = checkpoint_path(cfg, chash)
    if cfg.trainer.resume not in (None, "auto"):  # a named checkpoint that cannot be read is refused before any run
        load_checkpoint(Path(cfg.trainer.resume), mmap=True)
    client, experiment_id, decision = None, None, Decision("new")
    claim = SignatureClaim(ckpt)
    if dist_info.is_main:
        uri = context.tracking_uri or store_uri(cfg.tracking.uri)
        experiment_id = context.experiment_id or ensure_experiment(uri, str(cfg.tracking.experiment))
        client = open_client(uri)
        decision = decide_and_retire(client, experiment_id, cfg, chash, ckpt, job.job_id, warn=False)
        if decision.action in ("new", "resume"):
            # claimed before the build, decided again under the claim: of two processes deciding
            # "new" at once, one runs it and the other finds it busy (or FINISHED)
            busy = Decision("busy", detail=f"another process is starting this config (it holds {claim.path})")
            decision = (decide_and_retire(client, experiment_id, cfg, chash, ckpt, job.job_id) if claim.acquire()
                        else busy)
    decision = broadcast_object(decision)
    try:
        return _run(cfg, run, decision, client, experiment_id, context, job, chash, ckpt, should_stop)
    finally:
        claim.release()


def _run(cfg: DictConfig, run, decision: Decision, client: MlflowClient | None, experiment_id: str | None,
         context: RunContext, job: Job, chash: str, ckpt: Path, should_stop: Callable[[], bool] | None) -> Outcome:
    """:func:`train` once the decision is made (and, for new / resume, the signature claimed)."""
    dist_info = job.dist
    name = run_name(cfg)
    if decision.action in ("skip", "busy"):
        log.info(f"{name}: skipped, {decision.detail} (run {decision.run_id})")
        return Outcome(RunStatus.SKIPPED, name, decision.run_id, decision.val_acc1, decision.detail)
    parts, build_error = None, None
    try:
        parts = build_components(run, dist_info)
    except ConfigError:
        raise
    except Exception as exc:  # a runtime failure while building: recorded on a FAILED run below
        build_error = exc
    tracker = (_open_tracker(cfg, decision, client, experiment_id, context, job) if dist_info.is_main
               else RunTracker(None, None))
    tracker.set_tags({CHECKPOINT_TAG: str(ckpt.resolve())})
    tracker.start_heartbeat()
    if tracker.active and cfg.tracking.system_metrics:
        tracker.start_system_metrics()
    try:
        if build_error is not None:
            raise build_error
        trainer = Trainer(cfg, parts, dist_info, ckpt, chash)
        if decision.action == "resume" or (cfg.trainer.resume not in (None, "auto")):
            source = decision.source or ckpt if decision.action == "resume" else Path(cfg.trainer.resume)
            trainer.resume_from(source)
            log.info(f"{name}: resumed at epoch {trainer.state.epoch} from {source}")
        acc = trainer.fit(tracker, should_stop, job)
    except StopRequested as stop:
        tracker.finish("KILLED", f"{RunStatus.STOPPED}: {stop.reason}; the same command resumes it")
        return Outcome(RunStatus.STOPPED, name, tracker.run_id, detail=stop.reason)
    except KeyboardInterrupt:  # a second Ctrl-C: no checkpoint of the partial epoch
        tracker.finish("KILLED", f"{RunStatus.STOPPED}: interrupted by the user (twice: the partial epoch is lost); "
                                 "the same command resumes it from its last checkpoint")
        raise
    except BaseException as exc:
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
        tracker.fail(reason, traceback.format_exc())
        if tracker.run_id is not None:
            exc.add_note(f"run {tracker.run_id} (its traceback is the run's error.txt)")
        raise
    if cfg.trainer.log_checkpoint:
        tracker.log_artifact(ckpt, CHECKPOINT_DIR)
    tracker.finish("FINISHED", RunStatus.FINISHED.value)
    status = RunStatus.RESUMED if decision.action == "resume" else RunStatus.FINISHED
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
    parts = build_components(check_run(trained, fit=False), dist_info)
    trainer = Trainer(trained, parts, dist_info, path, ckpt["config_hash"])
    trainer.load_state_dict(ckpt, weights_only=True)
    metrics = trainer.evaluate()
    print(json.dumps({"checkpoint": str(path), "epoch": ckpt["epoch"], "run_id": ckpt["run_id"], **metrics}),
          flush=True)
    return Outcome(RunStatus.EVALUATED, run_name(trained), ckpt["run_id"], metrics[VAL_ACC1])
