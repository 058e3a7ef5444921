"""Ctrl-C and the launcher's own death: SIGINT delivered to a local sweep's whole process group, and a
parent run whose launcher was killed outright. Real processes, real store; asserted: what the user
sees, what MLflow holds afterwards, and what the same command does next."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from dnrt.config import config_hash
from dnrt.engine.checkpoint import load_checkpoint
from dnrt.tracking_schema import DETAIL_TAG, KIND_TAG, SWEEP_KIND
from dnrt.train import checkpoint_path
from tests.harness.config import ROOT, SMALL, compose_cfg
from tests.test_sweeps import steps_per_epoch

pytestmark = pytest.mark.slow  # launches whole sweeps in processes of their own


def _wait_stopped(pid: int, timeout: float = 600) -> None:
    """Until ``pid`` has stopped itself (``trainer.signal_at_step`` with STOP)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if psutil.Process(pid).status() == psutil.STATUS_STOPPED:
            return
        time.sleep(0.2)
    raise AssertionError(f"process {pid} never stopped")


def test_ctrl_c_in_a_local_sweep_checkpoints_closes_every_run_and_exits_130(store):
    k = steps_per_epoch(compose_cfg(SMALL)) + 2  # step 2 of epoch 2 of the first cell
    cells = ["-m", "hydra/launcher=local", "seed=0,1", "trainer.epochs=2", *SMALL, *store.overrides()]
    # a fresh session: the command and everything it starts form one process group, as in a terminal
    proc = subprocess.Popen([sys.executable, str(ROOT / "launch.py"), *cells,
                             f"trainer.signal_at_step={{step:{k},signal:STOP}}"], cwd=store.root, env=store.env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    _wait_stopped(proc.pid)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does: the whole foreground process group
    os.killpg(proc.pid, signal.SIGCONT)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-3000:]
    stopped = [line for line in err.splitlines() if line.startswith("stopped:")]
    assert len(stopped) == 1 and "interrupted by the user in epoch 2 after step 2" in stopped[0], err[-3000:]
    assert "sweep summary: 1 runs" in out and "stopped: 1" in out, out[-3000:]

    [run] = store.runs()  # the second cell never started
    assert run.info.status == "KILLED"
    assert run.data.tags[DETAIL_TAG] == ("stopped: interrupted by the user in epoch 2 after step 2; "
                                                   "the same command resumes it")
    [parent] = [r for r in store.runs(children_only=False) if r.data.tags.get(KIND_TAG) == SWEEP_KIND]
    assert parent.info.status == "KILLED" and parent.data.metrics["sweep/stopped"] == 1
    cfg = compose_cfg([*SMALL, "trainer.epochs=2", "seed=0", *store.overrides()])
    ckpt = load_checkpoint(checkpoint_path(cfg, config_hash(cfg)))
    assert ckpt["epoch"] == 1 and ckpt["partial"]["step"] == 2  # the partial epoch is kept

    again = store.launch(*cells)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "finished: 1, resumed: 1" in again.stdout, again.stdout[-3000:]
    everything = store.runs(children_only=False)
    assert len(everything) == 4 and "RUNNING" not in {r.info.status for r in everything}
    assert [m.step for m in store.client.get_metric_history(run.info.run_id, "val/acc1")] == [1, 2]


def test_a_parent_run_whose_launcher_died_is_retired_by_the_next_launch(store):
    cells = ["-m", "hydra/launcher=local", "seed=0", "trainer.epochs=1", *SMALL, *store.overrides()]
    # killed outright in its first step: no handler runs, the parent and the child stay RUNNING
    first = store.launch(*cells, "trainer.signal_at_step={step:1,signal:KILL}", own_process=True)
    assert first.returncode == -signal.SIGKILL
    [dead_parent] = [r for r in store.runs(children_only=False) if r.data.tags.get(KIND_TAG) == SWEEP_KIND]
    assert dead_parent.info.status == "RUNNING"

    again = store.launch(*cells)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "retired 1 sweep parent run(s) whose launcher died" in again.stdout + again.stderr
    old = store.client.get_run(dead_parent.info.run_id)
    assert old.info.status == "FAILED" and old.data.tags[DETAIL_TAG] == "failed: the launching process died"
    assert "RUNNING" not in {r.info.status for r in store.runs(children_only=False)}
