"""What a sweep leaves behind: a cell that fails mid-training, the summary and counts on the sweep's
parent run, and an Optuna search whose trials are MLflow runs."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from dnrt.tracking_schema import DETAIL_TAG, JOB_TAG, KIND_TAG, STARTUP_TAG, SWEEP_KIND, SWEEP_TAG
from tests.harness.config import FAST, TINY_RESNET
from tests.harness.hooks import module_fixture
from tests.harness.store import Store, migrated_store

# Local sweeps and an Optuna search end to end: not in `make test-fast`.
pytestmark = pytest.mark.slow

TINY = ["trainer.epochs=1", *TINY_RESNET, *FAST, "dataset.fraction=0.1"]


@module_fixture
def failed_sweep(tmp_path_factory, migrated_db) -> tuple[Store, subprocess.CompletedProcess]:
    """A sweep of two cells packed into one worker process (the parallel launcher with one job);
    optim.lr=1e30 drives the first cell's loss to NaN mid-epoch, and the same process must go on to the
    second. The launchers share the per-cell isolation (:func:`dnrt.launching.entry.run_job`); the SLURM
    case is tests/test_slurm.py's."""
    store = migrated_store(tmp_path_factory.mktemp("failed-sweep"), migrated_db)
    launcher = ["hydra/launcher=parallel", "hydra.launcher.max_jobs=1"]
    return store, store.launch("-m", *launcher, "optim.lr=1e30,1e-3", *TINY, *store.overrides())


def test_a_cell_failing_mid_training_fails_alone(failed_sweep):
    store, proc = failed_sweep
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "1 run(s) failed" in out, out[-3000:]
    runs = {float(r.data.params["optim.lr"]): r for r in store.runs()}
    assert sorted(runs) == [1e-3, 1e30]
    good, bad = runs[1e-3], runs[1e30]
    assert good.info.status == "FINISHED" and "final/val_acc1" in good.data.metrics
    assert bad.info.status == "FAILED"
    assert bad.data.tags[DETAIL_TAG].startswith("failed: NonFiniteLoss: training loss became nan")
    error = Path(store.client.download_artifacts(bad.info.run_id, "error.txt", str(store.root)))
    assert "Traceback" in error.read_text() and "NonFiniteLoss" in error.read_text()
    assert "sweep summary" in out and "finished: 1" in out and "failed: 1" in out
    assert good.data.tags[STARTUP_TAG] == "warm"  # the process that failed the first cell ran it
    assert good.data.tags[JOB_TAG] == bad.data.tags[JOB_TAG]  # one worker ran both


def test_sweep_summary_and_counts_are_on_the_parent_run(failed_sweep):
    store, _ = failed_sweep
    everything = store.runs(children_only=False)
    (parent,) = [r for r in everything if r.data.tags.get(KIND_TAG) == SWEEP_KIND]
    children = [r for r in everything if r is not parent]
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in children)
    assert {r.data.tags[SWEEP_TAG] for r in children} == {parent.data.tags[SWEEP_TAG]}
    assert parent.info.status == "FAILED"  # a run of it failed
    summary = json.loads(Path(store.client.download_artifacts(parent.info.run_id, "summary.json",
                                                               str(store.root))).read_text())
    mlflow_status = {"FINISHED": "finished", "FAILED": "failed"}
    assert sorted((row["run_name"], row["status"]) for row in summary if row["status"] != "failed") == sorted(
        (r.info.run_name, mlflow_status[r.info.status]) for r in children if r.info.status == "FINISHED")
    (failed_row,) = [row for row in summary if row["status"] == "failed"]
    assert "NonFiniteLoss" in failed_row["detail"]
    for status in ("finished", "skipped", "resumed", "failed", "stopped"):
        expected = sum(mlflow_status.get(r.info.status) == status for r in children)
        assert parent.data.metrics[f"sweep/{status}"] == expected, status


def test_arr_optuna_search_runs_its_trials(store):
    proc = store.launch("hparams_search=arr_optuna", "hydra.sweeper.n_trials=2", *TINY, *store.overrides(),
                             f"hydra.sweep.dir={store.root / 'search'}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    trials = store.runs()
    assert len(trials) == 2 and all(r.info.status == "FINISHED" for r in trials)
    points = {(float(r.data.params["regularizer.weight"]), float(r.data.params["regularizer.momentum"]))
              for r in trials}
    assert len(points) == 2  # two different points of the search space
    assert all(0.5 <= lam <= 50.0 and 0.01 <= m <= 1.0 for lam, m in points)
    assert all(r.data.params["act.name"] == "raa" and r.data.params["regularizer.name"] == "arr" for r in trials)
    best = yaml.safe_load((store.root / "search" / "optimization_results.yaml").read_text())
    assert best["best_value"] == max(r.data.metrics["final/val_acc1"] for r in trials)
