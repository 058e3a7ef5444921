"""How a sweep's parent run ends: with the sweep, on every exit path.

The normal end is Hydra's ``on_multirun_end`` (:mod:`.callbacks`); an exception or Ctrl-C in the
launching process skips that hook, so the launchers call :func:`abort_sweep` on the way out. A
launcher killed outright (``kill -9``, a lost login session) ends nothing: the next launch on the
same host retires its parent run (:func:`retire_dead_sweeps`), as a job retires a dead child run.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections import Counter
from pathlib import Path

import psutil
from mlflow import MlflowClient

from ..tracking import open_client, with_retry
from ..tracking_schema import DETAIL_TAG, JOB_TAG, KIND_TAG, SUMMARY_ARTIFACT, SWEEP_KIND, RunStatus, sweep_metric
from .context import read_context
from .summary import print_summary, read_summary

log = logging.getLogger(__name__)


def launcher_id() -> str:
    """The launching process as ``host:pid`` (what :func:`retire_dead_sweeps` checks)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def end_sweep(sweep_dir: Path, interrupted: bool = False) -> Counter | None:
    """Print the sweep's summary and close its parent run (FINISHED, FAILED when a run failed,
    KILLED when ``interrupted``) with ``summary.json`` and the ``sweep/<status>`` counts. None when
    nothing was launched (a dry run, a refused sweep)."""
    context = read_context(sweep_dir)
    if context is None:
        return None
    rows = read_summary(sweep_dir)
    counts = print_summary(rows)
    client = open_client(context.tracking_uri)
    if with_retry(client.get_run, context.parent_run_id).info.status != "RUNNING":
        return counts  # ended already (a later batch of the same sweep, or the other exit path)
    with_retry(client.log_text, context.parent_run_id, json.dumps(rows, indent=2), SUMMARY_ARTIFACT)
    for run_status in RunStatus:
        with_retry(client.log_metric, context.parent_run_id, sweep_metric(run_status), counts.get(run_status, 0))
    status = "KILLED" if interrupted else "FAILED" if counts.get(RunStatus.FAILED, 0) else "FINISHED"
    detail = {"KILLED": f"{RunStatus.STOPPED}: interrupted by the user",
              "FAILED": f"{RunStatus.FAILED}: a run failed"}.get(status, str(RunStatus.FINISHED))
    with_retry(client.set_tag, context.parent_run_id, DETAIL_TAG, detail)
    with_retry(client.set_terminated, context.parent_run_id, status=status)
    return counts


def abort_sweep(sweep_dir: Path, exc: BaseException) -> None:
    """The launching process leaves with ``exc``: wait for the jobs it started (they got the same
    Ctrl-C and checkpoint at their next step), then end the sweep. A Ctrl-C becomes exit code 130."""
    interrupted = isinstance(exc, KeyboardInterrupt) or (isinstance(exc, SystemExit) and exc.code == 130)
    if interrupted:
        print("[dnrt] interrupted by the user: waiting for the sweep's jobs to checkpoint", flush=True)
        psutil.wait_procs(psutil.Process().children(), timeout=120)
    try:
        end_sweep(sweep_dir, interrupted=interrupted)
    except Exception as err:  # noqa: BLE001  (the original exit must not be masked)
        log.warning(f"could not close the sweep's parent run: {type(err).__name__}: {err}")
    if isinstance(exc, KeyboardInterrupt):
        raise SystemExit(130) from None


def retire_dead_sweeps(client: MlflowClient, experiment_id: str) -> list[str]:
    """Mark FAILED the RUNNING parent runs whose launcher was on this host and is gone; their ids."""
    runs = with_retry(client.search_runs, [experiment_id],
                      filter_string=f"tags.`{KIND_TAG}` = '{SWEEP_KIND}' and attributes.status = 'RUNNING'",
                      max_results=1000)
    retired = []
    for run in runs:
        host, _, pid = run.data.tags.get(JOB_TAG, "").rpartition(":")
        if host == socket.gethostname() and pid.isdigit() and not psutil.pid_exists(int(pid)):
            with_retry(client.set_tag, run.info.run_id, DETAIL_TAG, f"{RunStatus.FAILED}: the launching process died")
            with_retry(client.set_terminated, run.info.run_id, status="FAILED")
            retired.append(run.info.run_id)
    if retired:
        log.warning(f"retired {len(retired)} sweep parent run(s) whose launcher died: {', '.join(retired)}")
    return retired
