"""Sweeps on a real one-node SLURM cluster (tests/harness/services/slurm.py), through hydra-submitit-launcher.

Preemptions land at an exact training step (``trainer.signal_at_step``): the job signals itself, or
stops itself there until the test requeues it, so every run is interrupted at the same place."""

from __future__ import annotations

import os
import re
import signal
import time

import psutil
import torch

from dnrt.config import config_hash, run_name
from dnrt.engine.checkpoint import load_checkpoint
from dnrt.tracking_schema import DETAIL_TAG, JOB_TAG
from dnrt.train import checkpoint_path
from tests.harness.config import SMALL, compose_cfg
from tests.test_sweeps import PREEMPTED as REQUEUED
from tests.test_sweeps import steps_per_epoch, uninterrupted_reference

SLURM = ["hydra/launcher=slurm", "resources=debug_cpu"]


def job_logs(store) -> str:
    """Everything the sweep's SLURM jobs wrote (submitit's per-job stdout and stderr files)."""
    return "\n".join(p.read_text(errors="replace") for p in sorted(store.root.glob("multirun/**/.submitit/**/*_log.*")))


def test_sweep_on_slurm_with_a_cell_that_fails_mid_training(store, slurm_cluster):
    """optim.lr=1e30 drives the loss to NaN in the first epoch: that job's run is FAILED with the reason
    and error.txt, the other job's run finishes, and the sweep exits non-zero. One SLURM job per run."""
    proc = store.launch("-m", *SLURM, "optim.lr=1e-3,1e30", "trainer.epochs=1", *SMALL, "tracking.experiment=test")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "1 run(s) failed" in out, out[-3000:]
    runs = store.runs()
    assert len(runs) == 2
    job_ids = {r.data.tags[JOB_TAG] for r in runs}
    # SLURM (array) job ids, not host:pid: one job per run
    assert len(job_ids) == 2 and all(re.fullmatch(r"\d+(_\d+)?", j) for j in job_ids), job_ids
    by_lr = {lr: [r for r in runs if float(r.data.params["optim.lr"]) == lr] for lr in (1e-3, 1e30)}
    assert all(r.info.status == "FINISHED" for r in by_lr[1e-3])
    for run in by_lr[1e30]:
        assert run.info.status == "FAILED"
        assert run.data.tags[DETAIL_TAG].startswith("failed: NonFiniteLoss: training loss became nan")
        assert "error.txt" in {a.path for a in store.client.list_artifacts(run.info.run_id)}


def _stopped_job_process(timeout: float = 600) -> psutil.Process:
    """The SLURM job's Python process once it has stopped itself (SIGSTOP at its chosen step)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in psutil.process_iter(["status", "cmdline"]):
            if proc.info["status"] == psutil.STATUS_STOPPED and "submitit.core._submit" in " ".join(
                    proc.info["cmdline"] or ()):
                return proc
        time.sleep(0.2)
    raise TimeoutError("no SLURM job stopped itself at trainer.signal_at_step")


def _assert_same_as_uninterrupted(store, experiment: str) -> None:
    a = uninterrupted_reference(store)
    cut = compose_cfg([*REQUEUED, *store.overrides(experiment)])
    b = load_checkpoint(checkpoint_path(cut, config_hash(cut)))
    for metric in ("train/loss", "val/acc1"):  # the logged curves are those of the uninterrupted run
        assert [h[metric] for h in a["history"]] == [h[metric] for h in b["history"]]
    for part in ("model", "arr"):
        for key, tensor in a[part].items():
            assert torch.equal(tensor, b[part][key]), key


def test_scontrol_requeue_continues_the_same_run_exactly(store, slurm_cluster):
    """The job stops itself right after step k; `scontrol requeue` then SIGTERMs it (checkpoint after
    step k) and runs it again: one MLflow run, every epoch once, the weights of an uninterrupted run."""
    k = steps_per_epoch(compose_cfg(REQUEUED)) + 3  # the 3rd step of epoch 2
    sweep = store.start("-m", *SLURM, *REQUEUED, "tracking.experiment=requeue",
                        f"trainer.signal_at_step={{step:{k},signal:STOP}}")
    try:
        frozen = _stopped_job_process()
    except TimeoutError:
        sweep.kill()
        raise AssertionError(sweep.communicate()[0][-3000:] + slurm_cluster.logs()) from None
    # SLURM's requeue sends SIGCONT, then SIGTERM; the TERM queued here first is handled the moment
    # the job continues, before it can take another step
    os.kill(frozen.pid, signal.SIGTERM)
    (job,) = slurm_cluster.run("squeue", "-h", "-o", "%i").stdout.split()
    slurm_cluster.requeue(job)
    out, _ = sweep.communicate(timeout=900)
    assert sweep.returncode == 0, out[-4000:]
    assert "resumed: 1" in out, out[-3000:]
    logs = job_logs(store)
    assert f"STOP after global step {k}" in logs and "preempted in epoch 2 after step 3" in logs, logs[-3000:]
    assert f"{run_name(compose_cfg(REQUEUED))}: resumed at epoch 1 from" in logs, logs[-3000:]
    (run,) = store.runs("requeue")  # no duplicate run
    assert run.info.status == "FINISHED" and run.data.tags[DETAIL_TAG] == "finished"
    assert [m.step for m in store.client.get_metric_history(run.info.run_id, "val/acc1")] == [1, 2]
    _assert_same_as_uninterrupted(store, "requeue")


def test_usr2_requeued_packed_job_skips_its_finished_run_and_resumes_the_other_exactly(store, slurm_cluster):
    """Two runs packed into one SLURM job; the second signals itself SIGUSR2 (submitit's time-limit
    warning) right after step k. It checkpoints and submitit requeues the job, which runs the pack
    again: the first run is skipped, the second resumes after step k and ends as if never stopped."""
    common = [a for a in REQUEUED if not a.startswith("trainer.epochs=")]
    k = steps_per_epoch(compose_cfg(REQUEUED)) + 3  # only the 2-epoch run gets that far
    proc = store.launch("-m", *SLURM, "hydra.launcher.runs_per_job=2", *common, "trainer.epochs=1,2",
                             f"trainer.signal_at_step={{step:{k},signal:USR2}}", "tracking.experiment=packed")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    runs = {int(r.data.params["trainer.epochs"]): r for r in store.runs("packed")}
    assert sorted(runs) == [1, 2] and all(r.info.status == "FINISHED" for r in runs.values())
    for epochs, run in runs.items():  # nothing trained twice, nothing lost
        steps = [m.step for m in store.client.get_metric_history(run.info.run_id, "val/acc1")]
        assert steps == list(range(1, epochs + 1))
    assert "finished: 1, resumed: 1" in out, out[-3000:]
    logs = job_logs(store)
    # SIGUSR2 right after step k; submitit's handler requeues and exits; the job resumes in epoch 2
    assert f"SIGUSR2 after global step {k}\n[dnrt] caught SIGUSR2" in logs, logs[-3000:]
    assert f"{run_name(compose_cfg(REQUEUED))}: resumed at epoch 1 from" in logs, logs[-3000:]
    _assert_same_as_uninterrupted(store, "packed")
