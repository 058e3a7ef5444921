"""One run trained across two SLURM tasks (``tasks_per_node=2``, gloo on the CPU) of the real test
cluster (tests/services/slurm.py): one MLflow run, the same ARR memory on both ranks, and the same
figures as ``torchrun --nproc_per_node 2`` of the same config."""

from __future__ import annotations

import os
import subprocess
import sys

import torch

from dnrt.config import config_hash
from dnrt.engine.checkpoint import load_checkpoint
from dnrt.tracking_schema import ARR_RANKS_TAG, FINAL_VAL_ACC1, HASH_TAG, TRAIN_LOSS, TRAIN_LOSS_ARR
from dnrt.train import checkpoint_path
from tests.harness.config import FAST, ROOT, compose_cfg

# two tasks of one core each on the one-node cluster; each task's process holds torch and a model
TWO_TASKS = ["hydra/launcher=slurm", "resources=debug_cpu", "hydra.launcher.tasks_per_node=2",
             "hydra.launcher.mem_gb=2"]
COMMON = ["model=resnet18", "model.name=test_resnet", "act=raa", "regularizer=arr", "trainer.epochs=2", *FAST,
          "dataset.fraction=0.15"]


def test_two_slurm_tasks_train_one_run_as_torchrun_does(store, slurm_cluster):
    ref = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                          "--master_port", str(29500 + os.getpid() % 1000), str(ROOT / "launch.py"), *COMMON,
                          *store.overrides("torchrun")], cwd=store.root, env=store.env(), capture_output=True,
                         text=True, timeout=900)
    assert ref.returncode == 0, ref.stdout[-3000:] + ref.stderr[-3000:]
    proc = store.launch("-m", *TWO_TASKS, *COMMON, *store.overrides("slurm2"), timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:] + slurm_cluster.logs()
    (a,), (b,) = store.runs("torchrun"), store.runs("slurm2")  # rank 0 logs: one run each
    assert b.info.status == "FINISHED"
    assert b.data.tags[ARR_RANKS_TAG] == "true"
    for metric in (FINAL_VAL_ACC1, TRAIN_LOSS, TRAIN_LOSS_ARR):
        assert b.data.metrics[metric] == a.data.metrics[metric], metric
    ca = load_checkpoint(checkpoint_path(compose_cfg([*COMMON, *store.overrides("torchrun")]),
                                         a.data.tags[HASH_TAG]))
    cfg = compose_cfg([*COMMON, *store.overrides("slurm2")])
    assert b.data.tags[HASH_TAG] == config_hash(cfg)
    cb = load_checkpoint(checkpoint_path(cfg, config_hash(cfg)))
    for part in ("model", "arr"):
        for key, tensor in ca[part].items():
            assert torch.equal(tensor, cb[part][key]), key
