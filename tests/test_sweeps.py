"""Sweeps at scale against real components: the parallel launcher on fresh sqlite stores, a real
MLflow server, DDP with gloo, an interrupted sweep, and the launcher/tracking error paths."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
import torch

from dnrt.config import config_hash
from dnrt.engine.checkpoint import load_checkpoint
from dnrt.train import checkpoint_path
from tests.conftest import FAST, ROOT, compose_cfg

PARALLEL = ["hydra/launcher=parallel", "trainer.epochs=1", *FAST, "dataset.fraction=0.15"]


def _finished_by_hash(runs):
    return {r.data.tags["dnrt.config_hash"] for r in runs if r.info.status == "FINISHED"}


@pytest.mark.parametrize("attempt", range(2))  # repeated: the races it guards against are intermittent
def test_parallel_sweep_on_a_brand_new_sqlite_store(fresh_store, attempt):
    store = fresh_store
    assert not (store.root / "mlflow.db").exists()
    env = {**store.env(), "DNRT_MAX_PARALLEL": "6"}  # all six start together
    proc = subprocess.run([sys.executable, str(ROOT / "launch.py"), "-m", *PARALLEL, "seed=0,1,2",
                           "act=gelu,raa", f"tracking.experiment=fresh{attempt}"], cwd=store.root, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    runs = store.runs(f"fresh{attempt}")
    assert len(runs) == 6 and all(r.info.status == "FINISHED" for r in runs)
    assert len(_finished_by_hash(runs)) == 6
    default = store.client.get_experiment_by_name("Default")
    assert default is None or store.client.search_runs([default.experiment_id]) == []


def test_eight_runs_on_four_workers_log_to_a_real_mlflow_server(store, mlflow_server):
    env = {**store.env(), "MLFLOW_TRACKING_URI": mlflow_server.uri, "DNRT_MAX_PARALLEL": "4"}
    proc = subprocess.run([sys.executable, str(ROOT / "launch.py"), "-m", "hydra/launcher=parallel", "tracking=server",
                           "trainer.epochs=2", *FAST, "dataset.fraction=0.1", "seed=range(8)",
                           "tracking.experiment=server8"], cwd=store.root, env=env, capture_output=True, text=True,
                          timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    from mlflow import MlflowClient

    client = MlflowClient(mlflow_server.uri)
    exp = client.get_experiment_by_name("server8")
    runs = [r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("dnrt.kind") != "sweep"]
    assert len(runs) == 8 and all(r.info.status == "FINISHED" for r in runs)
    for run in runs:  # every epoch of every metric arrived exactly once
        for key in ("train/loss", "val/acc1", "lr", "epoch_time_s"):
            assert [m.step for m in client.get_metric_history(run.info.run_id, key)] == [1, 2], key
        assert "final/val_acc1" in run.data.metrics


def test_unreachable_tracking_server_fails_before_training(store):
    proc = store.launch("tracking.uri=http://127.0.0.1:9", *FAST)
    assert proc.returncode != 0
    assert "http://127.0.0.1:9" in proc.stderr and "unreachable" in proc.stderr
    assert not store.ckpt_root.exists()


def test_slurm_preset_without_sbatch_says_to_use_parallel(store):
    env = {**store.env(), "PATH": os.path.dirname(sys.executable)}  # a PATH with no SLURM on it
    proc = subprocess.run([sys.executable, str(ROOT / "launch.py"), "-m", "hydra/launcher=slurm", "seed=0,1"],
                          cwd=store.root, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "sbatch" in proc.stderr and "hydra/launcher=parallel" in proc.stderr
    assert store.runs() == []


def _kill_tree(pid: int) -> None:
    parent = psutil.Process(pid)
    procs = [parent, *parent.children(recursive=True)]
    for p in procs:
        p.kill()  # SIGKILL: nothing gets to mark its MLflow run
    psutil.wait_procs(procs, timeout=30)


def test_interrupted_sweep_finishes_only_what_is_missing(store):
    args = [sys.executable, str(ROOT / "launch.py"), "-m", *PARALLEL, "trainer.epochs=2", "seed=0,1,2,3",
            "tracking.experiment=test"]
    env = {**store.env(), "DNRT_MAX_PARALLEL": "1"}  # one worker, so the kill lands mid-sweep
    first = subprocess.Popen(args, cwd=store.root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while time.time() < deadline and not any(r.info.status == "FINISHED" for r in store.runs()):
        time.sleep(2)
    _kill_tree(first.pid)
    before = store.runs()
    done_before = _finished_by_hash(before)
    assert len(done_before) >= 1 and len(done_before) < 4, [r.info.status for r in before]

    proc = subprocess.run(args, cwd=store.root, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    runs = store.runs()
    finished = [r for r in runs if r.info.status == "FINISHED"]
    assert len(finished) == 4 and len(_finished_by_hash(finished)) == 4
    assert not any(r.info.status == "RUNNING" for r in runs)  # the killed ones were recognised as dead
    out = proc.stdout + proc.stderr
    assert f"skipped: {len(done_before)}" in out
    for run in finished:  # resumed or not, each epoch is logged once
        assert [m.step for m in store.client.get_metric_history(run.info.run_id, "val/acc1")] == [1, 2]


def test_ddp_two_processes_match_one_process_and_share_the_arr_memory(store):
    common = ["model=vit_tiny", "act=raa", "regularizer=arr", "trainer.epochs=2", *FAST, "trainer.batch_size=32"]
    single = store.launch(*common, "tracking.experiment=single")
    assert single.returncode == 0, single.stderr[-3000:]
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                          "--master_port", str(29500 + os.getpid() % 1000), str(ROOT / "launch.py"), *common,
                          "tracking.experiment=ddp"], cwd=store.root, env=store.env(), capture_output=True, text=True,
                         timeout=900)
    assert ddp.returncode == 0, ddp.stdout[-3000:] + ddp.stderr[-3000:]
    (one,), (two,) = store.runs("single"), store.runs("ddp")  # only rank 0 logs: one run
    assert two.data.tags["dnrt.arr_ranks_identical"] == "true"
    assert two.data.metrics["final/val_acc1"] == pytest.approx(one.data.metrics["final/val_acc1"], abs=0.6)
    assert two.data.metrics["train/loss"] == pytest.approx(one.data.metrics["train/loss"], rel=1e-3)
    a = load_checkpoint(checkpoint_path(compose_cfg([*common, *store.overrides("single")]),
                                        one.data.tags["dnrt.config_hash"]))
    b = load_checkpoint(checkpoint_path(compose_cfg([*common, *store.overrides("ddp")]),
                                        two.data.tags["dnrt.config_hash"]))
    for key in a["arr"]:  # same global batches in the same order: the same class means, up to the drift
        # that float all-reduce order puts into the weights over two epochs (about 1e-3 in deep taps)
        assert torch.allclose(a["arr"][key].double(), b["arr"][key].double(), rtol=2e-2, atol=1e-2), key


def test_sigterm_checkpoints_mid_epoch_and_the_same_command_resumes_exactly(store):
    common = ["model=resnet18", "act=raa", "regularizer=arr", "trainer.epochs=2", *FAST, "dataset.fraction=0.6"]
    ref = store.launch(*common, "tracking.experiment=ref")
    assert ref.returncode == 0, ref.stderr[-2000:]
    args = [sys.executable, str(ROOT / "launch.py"), *common, "tracking.experiment=cut", "trainer.progress=true"]
    proc = subprocess.Popen(args, cwd=store.root, env=store.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    deadline = time.time() + 300
    while time.time() < deadline:  # wait until epoch 1 is logged, then stop it inside epoch 2
        runs = store.runs("cut")
        if runs and store.client.get_metric_history(runs[0].info.run_id, "val/acc1"):
            break
        time.sleep(0.5)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0 and "checkpointing at the next step" in out, out[-2000:]
    (cut,) = store.runs("cut")
    assert cut.info.status == "KILLED"
    cfg = compose_cfg([*common, *store.overrides("cut")])
    partial = load_checkpoint(checkpoint_path(cfg, config_hash(cfg)))
    assert partial["epoch"] == 1 and partial["partial"]["step"] > 0
    again = store.launch(*common, "tracking.experiment=cut")
    assert again.returncode == 0, again.stderr[-2000:]
    (cut,), (ref_run,) = store.runs("cut"), store.runs("ref")
    assert cut.info.status == "FINISHED"
    assert [m.step for m in store.client.get_metric_history(cut.info.run_id, "val/acc1")] == [1, 2]
    final_cut = load_checkpoint(checkpoint_path(cfg, config_hash(cfg)))
    ref_cfg = compose_cfg([*common, *store.overrides("ref")])
    final_ref = load_checkpoint(checkpoint_path(ref_cfg, config_hash(ref_cfg)))
    for key, tensor in final_ref["model"].items():
        assert torch.equal(tensor, final_cut["model"][key]), key
    assert cut.data.metrics["final/val_acc1"] == ref_run.data.metrics["final/val_acc1"]
