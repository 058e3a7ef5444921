"""What to do with a config, given the runs of its signature already in the store: start a new run,
resume an unfinished one from its checkpoint, skip a FINISHED twin, or leave a live one alone.

:func:`decide` only reads (the sweep plan uses it for every cell); :func:`decide_and_retire` also marks
dead RUNNING runs FAILED (what a job does before it starts).
"""

from __future__ import annotations

import fcntl
import logging
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
from mlflow import MlflowClient
from omegaconf import DictConfig

from .engine.checkpoint import CheckpointUnreadable, load_checkpoint, previous_path
from .tracking import find_runs, with_retry
from .tracking_schema import CHECKPOINT_FILE, DETAIL_TAG, FINAL_VAL_ACC1, HEARTBEAT_TAG, JOB_TAG, RunStatus

log = logging.getLogger(__name__)


@dataclass
class Decision:
    action: str  # new | resume | skip | busy
    run_id: str | None = None
    val_acc1: float = float("nan")
    detail: str = ""
    epoch: int | None = None  # resume: the checkpoint's epoch
    source: Path | None = None  # resume: the checkpoint file to load (last.pt, or prev.pt if last.pt is unreadable)


class SignatureClaim:
    """An exclusive lock on ``claim.lock`` beside a signature's checkpoint, held by the process that
    runs the signature, from before its build to its end. The operating system drops it when the
    process dies, however it dies, so a claim never outlives its holder."""

    def __init__(self, ckpt: Path):
        self.path = ckpt.with_name("claim.lock")
        self._file = None

    def acquire(self) -> bool:
        """Take the claim; False when another process holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = open(self.path, "a")  # noqa: SIM115  (held open while the claim lasts)
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            return False
        self._file = f
        return True

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def read_resumable(ckpt: Path) -> tuple[Path | None, dict, list[str]]:
    """The newest readable checkpoint among ``last.pt`` and ``prev.pt``: (its path, its small entries,
    one line per unreadable file). (None, {}, [...]) when neither can be read."""
    unreadable = []
    for path in (ckpt, previous_path(ckpt)):
        if not path.is_file():
            continue
        try:
            meta = load_checkpoint(path, mmap=True)  # the weights are read later, once
        except CheckpointUnreadable as exc:
            unreadable.append(str(exc))
            continue
        return path, {"run_id": meta.get("run_id"), "epoch": meta.get("epoch")}, unreadable
    return None, {}, unreadable


def checkpoint_path(cfg: DictConfig, chash: str) -> Path:
    return Path(cfg.trainer.ckpt_root) / str(cfg.tracking.experiment) / chash / CHECKPOINT_FILE


def decide(runs: list, cfg: DictConfig, ckpt: Path, job_id: str) -> tuple[Decision, list[str]]:
    """What to do with a config whose runs (newest first) are ``runs``, without changing anything:
    skip a FINISHED twin (unless ``force``), resume an unfinished one whose checkpoint exists, leave
    a live one alone (one tagged with ``job_id`` is this job's own earlier incarnation, e.g. before a
    SLURM requeue, not a live one). Also returns the ids of dead RUNNING runs (to be marked FAILED)."""
    done = [r for r in runs if r.info.status == "FINISHED"]
    if done and not cfg.force:
        acc = done[0].data.metrics.get(FINAL_VAL_ACC1, float("nan"))
        return Decision("skip", done[0].info.run_id, acc,
                        "a FINISHED run with this config exists (force=true re-runs)"), []
    ckpt_run, ckpt_epoch, source, unreadable = None, None, None, []
    if cfg.trainer.resume == "auto":
        source, meta, unreadable = read_resumable(ckpt)
        ckpt_run, ckpt_epoch = meta.get("run_id"), meta.get("epoch")
    dead: list[str] = []
    for r in runs:
        if r.info.status == "FINISHED":
            continue
        ours = r.data.tags.get(JOB_TAG) == job_id
        if r.info.status == "RUNNING" and not ours and not _stale(r, float(cfg.tracking.stale_after_s)):
            return Decision("busy", r.info.run_id, detail="a live run with this config is in progress elsewhere"), dead
        if r.info.run_id == ckpt_run and not cfg.force:
            skipped = "".join(f"; {line}" for line in unreadable)
            return Decision("resume", r.info.run_id, detail=f"resuming from {source} (epoch {ckpt_epoch}){skipped}",
                            epoch=ckpt_epoch, source=source), dead
        if r.info.status == "RUNNING":  # dead: its process never marked it
            dead.append(r.info.run_id)
    # an unreadable checkpoint is not resumed: its dead run is retired above and the config starts fresh
    return Decision("new", detail="; ".join(unreadable)), dead


def decide_and_retire(client: MlflowClient, experiment_id: str, cfg: DictConfig, chash: str, ckpt: Path,
                      job_id: str, warn: bool = True) -> Decision:
    """:func:`decide` on the experiment's runs of ``chash``, then retire the dead ones (no heartbeat
    for ``tracking.stale_after_s``, or their pid gone on this host). ``warn``: log an unreadable
    checkpoint (once per decision that acts on it)."""
    decision, dead = decide(find_runs(client, experiment_id, chash), cfg, ckpt, job_id)
    if warn and "unreadable checkpoint" in decision.detail:
        log.warning(decision.detail if decision.action == "resume" else f"{decision.detail}; starting afresh")
    for run_id in dead:
        with_retry(client.set_tag, run_id, DETAIL_TAG, f"{RunStatus.FAILED}: process died (stale heartbeat)")
        with_retry(client.set_terminated, run_id, status="FAILED")
    return decision


def _stale(run, stale_after_s: float) -> bool:
    """Whether a RUNNING run's process is gone: on this host, its pid no longer exists; elsewhere,
    its heartbeat is older than ``stale_after_s``."""
    host, _, pid = run.data.tags.get(JOB_TAG, "").rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        return not psutil.pid_exists(int(pid))
    beat = float(run.data.tags.get(HEARTBEAT_TAG, run.info.start_time / 1000))
    return time.time() - beat > stale_after_s
