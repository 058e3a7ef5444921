"""launch.py as a user runs it: help, bad input, and a sweep whose cells fail independently."""

import pytest

from tests.conftest import FAST

# Each test starts launch.py (seconds of imports): not in `make test-fast`.
pytestmark = pytest.mark.slow


def test_help_lists_the_groups(store):
    proc = store.launch("--help", check=True)
    for group in ("model", "act", "regularizer", "dataset", "optim", "sched", "trainer", "tracking"):
        assert f"{group}:" in proc.stdout, group
    assert "raa_relu" in proc.stdout and "vit_tiny" in proc.stdout


def test_unknown_group_option_keeps_hydras_listing(store):
    proc = store.launch("model=resnet81")
    assert proc.returncode != 0
    assert "resnet81" in proc.stderr and "Available options" in proc.stderr and "resnet18" in proc.stderr
    assert store.runs() == []


@pytest.mark.parametrize("override,key", [("optim.lr=-1", "optim.lr"), ("trainer.epochs=0", "trainer.epochs")])
def test_invalid_value_exits_2_naming_the_key_and_records_nothing(store, override, key):
    proc = store.launch(override, *FAST, "tracking.experiment=test")
    assert proc.returncode == 2
    assert f"error: {key}=" in proc.stderr, proc.stderr
    assert store.runs() == []  # refused before any run exists


def test_packed_worker_isolates_a_failing_cell_summarises_and_exits_non_zero(store):
    # the failing cell (its loss becomes NaN) comes first: the one worker process running both cells
    # must go on to the next (the in-process launcher: tests/test_sweep_outcomes.py)
    launcher = ["hydra/launcher=parallel", "hydra.launcher.max_jobs=1"]
    proc = store.launch("-m", *launcher, "optim.lr=1e30,1e-3", "trainer.epochs=1", *FAST, "tracking.experiment=test")
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "sweep summary" in out and "finished: 1" in out and "failed: 1" in out
    assert "NonFiniteLoss" in out
    runs = store.runs()
    assert sorted(r.info.status for r in runs) == ["FAILED", "FINISHED"]
    parents = [r for r in store.runs(children_only=False) if r.data.tags.get("dnrt.kind") == "sweep"]
    assert len(parents) == 1 and parents[0].info.status == "FAILED"
    assert {r.data.tags["mlflow.parentRunId"] for r in runs} == {parents[0].info.run_id}
    assert {r.data.tags["dnrt.sweep_id"] for r in runs} == {parents[0].data.tags["dnrt.sweep_id"]}
    (finished,) = [r for r in runs if r.info.status == "FINISHED"]
    assert finished.data.tags["dnrt.startup"] == "warm"  # the same process ran the failed cell first
    assert len({r.data.tags["dnrt.job_id"] for r in runs}) == 1, [r.data.tags for r in runs]
