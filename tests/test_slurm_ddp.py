"""One run trained across two SLURM tasks (``tasks_per_node=2``, gloo on the CPU) of the real test
cluster (tests/harness/services/slurm.py): one MLflow run, the same ARR memory on both ranks, and the
same figures as ``torchrun --nproc_per_node 2`` of the same config; and the same figures again when
``scontrol requeue`` stops the job in the middle of an epoch, at a moment only one rank has seen."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import psutil
import torch
from hydra.utils import instantiate

from dnrt.config import config_hash
from dnrt.engine.checkpoint import load_checkpoint, previous_path
from dnrt.tracking_schema import ARR_RANKS_TAG, DETAIL_TAG, FINAL_VAL_ACC1, HASH_TAG, TRAIN_LOSS, TRAIN_LOSS_ARR
from dnrt.train import checkpoint_path
from tests.harness.config import FAST, ROOT, compose_cfg

# two tasks of one core each on the one-node cluster; each task's process holds torch and a model
TWO_TASKS = ["hydra/launcher=slurm", "resources=debug_cpu", "hydra.launcher.tasks_per_node=2",
             "hydra.launcher.mem_gb=2"]
COMMON = ["model=resnet18", "model.name=test_resnet", "act=raa", "regularizer=arr", "trainer.epochs=2", *FAST,
          "dataset.fraction=0.15"]


_REFERENCE: dict[str, tuple[dict, dict]] = {}


def torchrun_reference(store) -> tuple[dict, dict]:
    """:data:`COMMON` trained by ``torchrun --nproc_per_node 2``: (its final metrics, its final
    checkpoint). Trained once per test process: it depends on the config only, not on the store."""
    if "torchrun" not in _REFERENCE:
        ref = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                              "--master_port", str(29500 + os.getpid() % 1000), str(ROOT / "launch.py"), *COMMON,
                              *store.overrides("torchrun")], cwd=store.root, env=store.env(), capture_output=True,
                             text=True, timeout=900)
        assert ref.returncode == 0, ref.stdout[-3000:] + ref.stderr[-3000:]
        (run,) = store.runs("torchrun")  # rank 0 logs: one run
        cfg = compose_cfg([*COMMON, *store.overrides("torchrun")])
        final = load_checkpoint(checkpoint_path(cfg, run.data.tags[HASH_TAG]))
        _REFERENCE["torchrun"] = (dict(run.data.metrics), final)
    return _REFERENCE["torchrun"]


def assert_same_as(reference: tuple[dict, dict], run, cfg) -> dict:
    """``run`` (trained from ``cfg``) ends with the reference's final metrics, weights and ARR memory;
    returns its checkpoint."""
    metrics, ca = reference
    for metric in (FINAL_VAL_ACC1, TRAIN_LOSS, TRAIN_LOSS_ARR):
        assert run.data.metrics[metric] == metrics[metric], metric
    assert run.data.tags[HASH_TAG] == config_hash(cfg)
    cb = load_checkpoint(checkpoint_path(cfg, config_hash(cfg)))
    for part in ("model", "arr"):
        for key, tensor in ca[part].items():
            assert torch.equal(tensor, cb[part][key]), key
    return cb


def test_two_slurm_tasks_train_one_run_as_torchrun_does(store, slurm_cluster):
    reference = torchrun_reference(store)
    proc = store.launch("-m", *TWO_TASKS, *COMMON, *store.overrides("slurm2"), timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:] + slurm_cluster.logs()
    assert "sweep summary: 1 runs" in proc.stdout and "finished: 1" in proc.stdout, proc.stdout[-3000:]  # rank 0's
    (b,) = store.runs("slurm2")
    assert b.info.status == "FINISHED"
    assert b.data.tags[ARR_RANKS_TAG] == "true"
    assert_same_as(reference, b, compose_cfg([*COMMON, *store.overrides("slurm2")]))


def _steps_per_rank(cfg, world: int = 2) -> int:
    """Training batches per epoch of one rank of ``world`` (``trainer.batch_size`` is the global batch),
    as its loader counts them."""
    train_loader, _ = instantiate(cfg.dataset).loaders(int(cfg.trainer.batch_size) // world, seed=int(cfg.seed),
                                                        device=torch.device("cpu"), rank=0, world_size=world)
    return len(train_loader)


def _stopped_tasks(store) -> list[psutil.Process]:
    """The SLURM tasks of this store's jobs that have stopped themselves (SIGSTOP at their chosen step)."""
    found = []
    for proc in psutil.process_iter(["status", "cmdline"]):
        try:
            if (proc.info["status"] == psutil.STATUS_STOPPED
                    and "submitit.core._submit" in " ".join(proc.info["cmdline"] or ())
                    and proc.environ().get("MLFLOW_TRACKING_URI") == store.uri):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def _stopped_task(store, timeout: float = 600) -> psutil.Process:
    """The one task of this store's job that has stopped itself, once it has."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := _stopped_tasks(store):
            (proc,) = found
            return proc
        time.sleep(0.2)
    raise TimeoutError("no SLURM task stopped itself at trainer.signal_at_step")


def _communicate_unless_stopped_again(sweep: subprocess.Popen, store, frozen: psutil.Process,
                                      timeout: float = 900) -> str:
    """The sweep's output once it exits. A task that stops itself again means that the requeued job
    trained step k a second time (the stop left no checkpoint after it): an error at once, not a job
    frozen until its time limit."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return sweep.communicate(timeout=2)[0]
        except subprocess.TimeoutExpired:
            again = [p.pid for p in _stopped_tasks(store) if p.pid != frozen.pid]
            if again or time.monotonic() > deadline:
                raise TimeoutError(f"task {again} stopped itself again: the requeued job repeated the step"
                                   if again else f"the sweep did not end in {timeout} s") from None


def _task_logs(store) -> dict[int, str]:
    """Per SLURM task (rank), everything it wrote in every run of the job (submitit's
    ``<job>_<task>_log.out`` and ``.err``)."""
    logs: dict[int, str] = {}
    for path in sorted(store.root.glob("multirun/**/.submitit/**/*_log.*")):
        task = int(re.search(r"_(\d+)_log\.(out|err)$", path.name).group(1))
        logs[task] = logs.get(task, "") + path.read_text(errors="replace")
    return logs


def test_scontrol_requeue_of_a_two_task_job_resumes_its_run_as_if_never_stopped(store, slurm_cluster):
    """Rank 1 freezes right after step k (the 2nd step of epoch 2) with a SIGTERM queued, as if the
    requeue's signal reached it first; rank 0 has gone on to the next step boundary. `scontrol requeue`
    continues and signals the job: both ranks stop after step k, rank 0 checkpoints, and the requeued
    job resumes the same MLflow run to the figures of an uninterrupted torchrun."""
    cut = [*COMMON, *store.overrides("requeue2")]
    per_rank = _steps_per_rank(compose_cfg(cut))
    k = per_rank + 2
    assert per_rank > 2  # step k is not the epoch's last: the stop comes at a step boundary inside it
    sweep = store.start("-m", *TWO_TASKS, *cut, f"trainer.signal_at_step={{step:{k},signal:STOP,rank:1}}")
    try:
        frozen = _stopped_task(store)
        assert frozen.environ()["SLURM_PROCID"] == "1"
        # handled the moment rank 1 continues, before it can take another step; rank 0 is waiting for it
        os.kill(frozen.pid, signal.SIGTERM)
        (job,) = slurm_cluster.run("squeue", "-h", "-o", "%i").stdout.split()
        slurm_cluster.requeue(job)  # SIGCONT, then SIGTERM to both tasks; the job runs again
        out = _communicate_unless_stopped_again(sweep, store, frozen)
    except TimeoutError as exc:
        sweep.kill()
        slurm_cluster.cancel_all()
        raise AssertionError(f"{exc}\n{sweep.communicate()[0][-3000:]}\n{slurm_cluster.logs()}") from None
    logs = _task_logs(store)
    assert sweep.returncode == 0, out[-4000:] + "\n".join(v[-2000:] for v in logs.values())
    assert "sweep summary: 1 runs" in out and "resumed: 1" in out, out[-3000:]  # rank 0's row, once
    assert f"STOP after global step {k}" in logs[1] and f"STOP after global step {k}" not in logs[0]
    for rank in (0, 1):  # both stopped after the same step
        assert "preempted in epoch 2 after step 2" in logs[rank], logs[rank][-3000:]
    assert "resumed at epoch 1 from" in logs[0], logs[0][-3000:]
    (run,) = store.runs("requeue2")  # no duplicate run
    assert run.info.status == "FINISHED" and run.data.tags[DETAIL_TAG] == "finished"
    assert [m.step for m in store.client.get_metric_history(run.info.run_id, "val/acc1")] == [1, 2]
    cfg = compose_cfg(cut)
    stop = load_checkpoint(previous_path(checkpoint_path(cfg, config_hash(cfg))))  # the one the last epoch replaced
    assert stop["epoch"] == 1 and stop["partial"]["step"] == 2  # written at the stop, inside epoch 2
    assert_same_as(torchrun_reference(store), run, cfg)


def test_a_preemption_warning_seen_by_one_rank_requeues_the_job_and_resumes_the_run(store, slurm_cluster):
    """submitit's SIGUSR2 (the time-limit or preemption warning) reaches rank 1 alone, right after step k.
    The ranks agree to stop after step k and on why: rank 0, which never caught the signal, checkpoints
    and hands it to submitit, which requeues the job; rank 1 exits 0, so that srun's --kill-on-bad-exit
    (``SLURM_KILL_BAD_EXIT=1``, as on many clusters) does not kill rank 0 before it has requeued. The
    requeued job resumes the run to the figures of an uninterrupted torchrun."""
    cut = [*COMMON, *store.overrides("usr2")]
    k = _steps_per_rank(compose_cfg(cut)) + 2
    proc = store.launch("-m", *TWO_TASKS, *cut, f"trainer.signal_at_step={{step:{k},signal:USR2,rank:1}}",
                        env=store.env(SLURM_KILL_BAD_EXIT="1"), timeout=1200)
    logs = _task_logs(store)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:] + "\n".join(v[-2000:] for v in logs.values()) + slurm_cluster.logs()
    assert "sweep summary: 1 runs" in out and "resumed: 1" in out, out[-3000:]
    assert f"USR2 after global step {k}" in logs[1] and f"USR2 after global step {k}" not in logs[0]
    assert "Caught signal SIGUSR2" in logs[0], logs[0][-3000:]  # submitit's handler, run by rank 0
    assert "resumed at epoch 1 from" in logs[0], logs[0][-3000:]
    (run,) = store.runs("usr2")
    assert run.info.status == "FINISHED"
    assert [m.step for m in store.client.get_metric_history(run.info.run_id, "val/acc1")] == [1, 2]
    cfg = compose_cfg(cut)
    stop = load_checkpoint(previous_path(checkpoint_path(cfg, config_hash(cfg))))  # the one the last epoch replaced
    assert stop["epoch"] == 1 and stop["partial"]["step"] == 2  # written at the agreed stop, inside epoch 2
    assert_same_as(torchrun_reference(store), run, cfg)
