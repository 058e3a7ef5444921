"""What launch.py runs per job: one training run, isolated from the rest of its sweep.

The entry point owns what is process-wide: intra-op threads, the allocator setting, the process
group, the job clock, the signal handlers, and the environment variables that say which job and
rank this is; it hands the job to ``dnrt.train.train`` as a :class:`~dnrt.types.Job`.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import sys
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from ..config import ConfigError, run_name
from ..engine.allocator import keep_freed_memory
from ..engine.distributed import init_distributed
from ..tracking_schema import RunStatus
from ..train import train
from ..types import Job, Outcome, RunContext
from .cells import Cell
from .context import read_context
from .plan import check_cells, plan_cells, print_plan
from .preempt import PreemptionWatcher
from .process import JobClock, current_job_id, set_threads
from .summary import record

log = logging.getLogger(__name__)
# The jobs this process runs, one after another: the first one's clock starts with the process.
_CLOCK = JobClock()


def _multirun_dir() -> Path | None:
    if not HydraConfig.initialized():
        return None
    hc = HydraConfig.get()
    return Path(hc.sweep.dir) if hc.mode == RunMode.MULTIRUN else None


def _cell_overrides() -> list[str]:
    """This job's command-line overrides (a sweep cell's own values among them)."""
    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def _verbose() -> bool:
    """Tracebacks for config errors too: Hydra's own switch (HYDRA_FULL_ERROR=1) or hydra.verbose."""
    verbose = HydraConfig.get().verbose if HydraConfig.initialized() else False
    return os.environ.get("HYDRA_FULL_ERROR") == "1" or bool(verbose)


def run_job(cfg: DictConfig) -> float:
    """Train ``cfg``; return its final val top-1 (NaN if none). In a multirun a failure is recorded
    and the sweep goes on; a single run prints one line, ``error: <run> failed: <why>; run <id> ...``,
    and exits 1 (``HYDRA_FULL_ERROR=1`` re-raises it), and a config that cannot run prints one line,
    ``error: <key>=<value>: <why>; valid: ...``, and exits 2."""
    started, warm = _CLOCK.begin()
    set_threads(int(cfg.trainer.threads))
    keep_freed_memory()
    try:
        return _run_job(cfg, started, warm)
    finally:
        _CLOCK.end()


def _plan_single(cfg: DictConfig) -> float:
    cells = [Cell(0, [], cfg)]
    try:
        rows = plan_cells(cells, check_cells(cells), current_job_id(),
                          calibrate_now=bool(cfg.get("sweep", {}).get("calibrate", False)))
    except ConfigError as exc:  # a plan setting (the cell's own problems are rows)
        if _verbose():
            raise
        print(f"error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    print_plan(rows, as_json=str(cfg.dry_run) == "json")
    return math.nan


def _run_job(cfg: DictConfig, started: float, warm: bool) -> float:
    sweep_dir = _multirun_dir()
    if sweep_dir is None and cfg.get("dry_run", False):
        return _plan_single(cfg)
    context = read_context(sweep_dir) or RunContext()
    watcher = PreemptionWatcher().install()
    job = None
    try:
        job = Job(current_job_id(), init_distributed(), started, warm)
        outcome = train(cfg, should_stop=watcher, context=context, job=job)
    except ConfigError as exc:
        watcher.restore()
        if sweep_dir is None:
            if _verbose():
                raise
            print(f"error: {exc}", file=sys.stderr, flush=True)
            raise SystemExit(2) from None
        log.error(f"{run_name(cfg)}: refused, {exc}")
        outcome = Outcome(RunStatus.REFUSED, run_name(cfg), detail=str(exc))
    except Exception as exc:
        watcher.restore()
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
        if sweep_dir is None:
            if _verbose():
                raise
            where = "; ".join(getattr(exc, "__notes__", []))
            print(f"error: {run_name(cfg)} failed: {reason}" + (f"; {where}" if where else ""), file=sys.stderr,
                  flush=True)
            raise SystemExit(1) from None
        log.error(f"{run_name(cfg)}: FAILED, {reason}")
        outcome = Outcome(RunStatus.FAILED, run_name(cfg), detail=reason)
    requeued = outcome.status == RunStatus.STOPPED and watcher.signum not in (None, signal.SIGINT)
    main = job is None or job.dist.is_main  # one row per run, not one per rank of a multi-task job
    if sweep_dir is not None and not requeued and main:  # a requeued job records its run when it runs again
        outcome.overrides = _cell_overrides()
        record(sweep_dir, outcome)
    if outcome.status == RunStatus.STOPPED and watcher.signum == signal.SIGINT:
        watcher.restore()
        print(f"stopped: {run_name(cfg)} {outcome.detail}; run {outcome.run_id} is KILLED with a checkpoint; "
              "the same command resumes it", file=sys.stderr, flush=True)
        raise SystemExit(130)  # the shell's code for a Ctrl-C
    if outcome.status == RunStatus.STOPPED and watcher.signum is not None:
        watcher.hand_over()  # under submitit this requeues the job and exits (rank 0; the others return)
        if not main and watcher.signum == signal.SIGUSR2:
            # a non-zero exit may make srun (--kill-on-bad-exit) kill rank 0 before it has requeued the job
            raise SystemExit(0)
        raise SystemExit(f"stopped by signal {watcher.signum}: {outcome.detail}; the same command resumes it")
    watcher.restore()
    return outcome.val_acc1
