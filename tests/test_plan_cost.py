"""The plan's cost columns (dnrt/launching/cost.py): steps from the loader's count, step times from
the store before the calibration table, "unknown" without either, and the SLURM time limit."""

from __future__ import annotations

import json
import math

from dnrt.factory import build_components
from dnrt.launching.cost import StepTimes, speed_key
from dnrt.preflight import check_run
from dnrt.tracking_schema import TRAIN_THROUGHPUT
from dnrt.types import DistInfo
from tests.harness.config import SMALL, compose_cfg

EPOCHS = 3
CELLS = [*SMALL, f"trainer.epochs={EPOCHS}", "act=gelu,raa"]


def _plan(store, *args: str, table=None) -> dict:
    env = store.env(DNRT_STEP_TIMES=str(table or store.root / "step_times.json"))
    proc = store.launch("-m", *args, *store.overrides(), "--plan-json", env=env, check=True)
    return json.loads(proc.stdout[proc.stdout.index("{"):])


def _loader_steps(overrides: list[str]) -> int:
    """Steps per epoch as the trainer's own loader counts them."""
    parts = build_components(check_run(compose_cfg(overrides), fit=False), DistInfo())
    return len(parts.train_loader)


def test_calibrated_estimate_is_steps_times_the_calibrated_step_time(store):
    plan = _plan(store, *CELLS, "--calibrate")
    table = StepTimes(store.root / "step_times.json").table
    assert len(table) == 2  # one calibration per distinct (model, act, regularizer, size, batch)
    steps = _loader_steps([*SMALL])
    for row in plan["cells"]:
        cost = row["cost"]
        assert cost["steps_per_epoch"] == steps and cost["total_steps"] == EPOCHS * steps
        assert cost["step_time_source"].startswith("calibration on cpu")
        (calibrated,) = [v for k, v in table.items() if f"|{row['run_name'].split('-')[1]}|" in k]
        assert cost["step_time_s"] == calibrated
        assert math.isclose(cost["wall_h"] * 3600, EPOCHS * steps * calibrated)
        assert cost["fits_timeout"] is None  # not SLURM
    assert math.isclose(plan["cost"]["device_hours"], sum(r["cost"]["wall_h"] for r in plan["cells"]), rel_tol=1e-9)
    # a second plan reads the table: no calibration, the same figures
    again = _plan(store, *CELLS)
    assert [r["cost"] for r in again["cells"]] == [r["cost"] for r in plan["cells"]]


def test_without_store_runs_or_calibration_the_cost_is_unknown(store):
    plan = _plan(store, *CELLS)
    for row in plan["cells"]:
        assert row["cost"]["step_time_source"] == "unknown"
        assert row["cost"]["step_time_s"] is None and row["cost"]["wall_h"] is None
        assert row["cost"]["total_steps"] == EPOCHS * row["cost"]["steps_per_epoch"]
    assert plan["cost"]["cells_unknown"] == 2 and plan["cost"]["device_hours"] == 0


def test_store_runs_are_preferred_over_the_calibration(store):
    store.launch(*SMALL, "trainer.epochs=1", "act=gelu", *store.overrides(), check=True)
    (run,) = store.runs()
    table = StepTimes(store.root / "step_times.json")
    other = compose_cfg([*SMALL, "act=gelu"])
    table.put(speed_key(other), "cpu (1 threads)", 123.0)  # a calibration that must not be used
    plan = _plan(store, *SMALL, f"trainer.epochs={EPOCHS}", "act=gelu", "seed=5")
    (row,) = plan["cells"]
    assert row["action"] == "new"
    expected = int(run.data.params["trainer.batch_size"]) / run.data.metrics[TRAIN_THROUGHPUT]
    assert math.isclose(row["cost"]["step_time_s"], expected)
    assert row["cost"]["step_time_source"] == "store: 1 run(s) on cpu"


def test_a_slurm_cell_over_the_presets_time_limit_is_flagged_with_its_requeues(store):
    """resources=debug_cpu allows 10 minutes; with a calibrated step time the longer cell does not fit."""
    steps = _loader_steps([*SMALL])
    step_s = 10.0
    table = StepTimes(store.root / "step_times.json")
    for act in ("gelu", "raa"):
        table.put(speed_key(compose_cfg([*SMALL, f"act={act}"])), f"cpu ({_threads()} threads)", step_s)
    plan = _plan(store, "hydra/launcher=slurm", "resources=debug_cpu", *SMALL, "act=gelu", "trainer.epochs=1,40")
    by_epochs = {r["cost"]["total_steps"] // steps: r["cost"] for r in plan["cells"]}
    short, long = by_epochs[1], by_epochs[40]
    assert short["fits_timeout"] is True and short["requeues"] == 0
    minutes = 40 * steps * step_s / 60
    assert long["fits_timeout"] is False and long["requeues"] == math.ceil(minutes / 10) - 1
    assert "this machine, not the cluster" in long["step_time_source"]
    assert plan["cost"]["cells_not_fitting_timeout"] == 1


def _threads() -> int:
    import torch

    return torch.get_num_threads()
