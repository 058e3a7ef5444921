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
from tests.harness.config import SMALL, TINY_RESNET, compose_cfg

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


def _published_steps(dataset: str, fraction: float, batch: int) -> int:
    """Steps per epoch from the published CIFAR train splits, written out: CIFAR-100's 100 x 500 images,
    CIFAR-10-LT's floor(5000 * 100^(-k/9)) per class (ratio 100); per class floor(f * n + 0.5) (at least
    1); the last partial batch kept when both the set and the batch are even (``drop_last=odd``)."""
    counts = [500] * 100 if dataset == "cifar100" else [math.floor(5000 * 100 ** (-k / 9)) for k in range(10)]
    n = sum(max(1, math.floor(fraction * c + 0.5)) for c in counts)
    return math.ceil(n / batch) if n % 2 == 0 and batch % 2 == 0 else n // batch


def test_cells_whose_cifar_files_are_not_here_are_priced_from_the_published_split(store, tmp_path):
    """No CIFAR files under data_dir: the cells are refused (they cannot run here) but still priced, their
    steps from the published split sizes and their step time calibrated on stand-in images of that shape."""
    plan = _plan(store, *TINY_RESNET, "trainer.progress=false", "trainer.threads=1", "trainer.batch_size=64",
                 f"data_dir={tmp_path / 'nothing'}", "dataset=cifar100,cifar10_lt", "dataset.fraction=0.1,1.0",
                 "dataset.drop_last=odd", "trainer.epochs=2", "--calibrate", "sweep.calibrate_steps=[0,1]")
    table = StepTimes(store.root / "step_times.json").table
    (calibrated,) = table.values()  # one speed key: same model, act, regularizer, size and batch
    for row in plan["cells"]:
        assert row["action"] == "refused" and "not found" in row["detail"]
        dataset = "cifar100" if "cifar100" in row["run_name"] else "cifar10_lt"
        fraction = float(next(o for o in row["overrides"].split() if o.startswith("dataset.fraction=")).split("=")[1])
        cost = row["cost"]
        assert cost["steps_per_epoch"] == _published_steps(dataset, fraction, 64), row["overrides"]
        assert cost["step_time_s"] == calibrated and "stand-in images" in cost["step_time_source"]
        assert math.isclose(cost["wall_h"] * 3600, 2 * cost["steps_per_epoch"] * calibrated)
    assert plan["cost"]["cells_data_missing"] == 4 and plan["cost"]["cells_unknown"] == 0


def test_a_refused_cell_without_a_published_size_is_not_priced(store, tmp_path):
    plan = _plan(store, *TINY_RESNET, "trainer.progress=false", f"data_dir={tmp_path / 'nothing'}",
                 "dataset=imagenet100")
    (row,) = plan["cells"]
    assert row["action"] == "refused" and row["cost"] is None
    assert plan["cost"]["cells_refused_unpriced"] == 1 and plan["cost"]["cells_data_missing"] == 0


def test_a_bad_calibrate_steps_is_one_line_naming_the_key(store):
    proc = store.launch("-m", *SMALL, *store.overrides(), "--plan", "--calibrate", "sweep.calibrate_steps=[2]")
    assert proc.returncode == 2
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert line.startswith("error: sweep.calibrate_steps=[2]: expected [warm-up steps >= 0, timed steps >= 1]")


def test_steps_follow_the_loaders_odd_rule(store):
    """``dataset.drop_last=odd`` keeps the last partial batch of an even set and batch: the plan counts
    what the trainer's loader counts, which here is one step more than dropping it."""
    odd = [*SMALL, "dataset.drop_last=odd"]
    plan = _plan(store, *odd, "trainer.epochs=1")
    (row,) = plan["cells"]
    assert row["cost"]["steps_per_epoch"] == _loader_steps(odd) == _loader_steps([*SMALL, "dataset.drop_last=true"]) + 1


def test_plan_json_prints_the_json_alone_for_a_sweep_and_an_optuna_search(store):
    """``--plan-json | jq`` works: logs go to stderr. An Optuna search (whose later trials depend on
    results a plan does not produce) is planned as its first batch of trials, and exits 0."""
    for args, cells in ((["seed=0,1,2"], 3), (["hparams_search=arr_optuna", "hydra.sweeper.n_jobs=2"], 2)):
        proc = store.launch("-m", *SMALL, *args, *store.overrides(), "--plan-json")
        assert proc.returncode == 0, proc.stderr[-3000:]
        plan = json.loads(proc.stdout)
        assert plan["totals"] == {"new": cells}, args
    assert "picks each later trial from the results of earlier ones: the plan shows its first 2" in proc.stderr
    assert not store.runs()  # a plan creates nothing
