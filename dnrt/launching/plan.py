"""What a sweep would do, cell by cell, read from the store without changing it (``dry_run``).

Each row: the cell's run name, config signature and action: ``new``, ``skip`` (a FINISHED run
exists), ``resume`` (from the checkpoint's epoch), ``busy`` (a live run elsewhere) or ``refused``
(the config cannot run, with the reason). All runs of the experiment are read in one paged
search, so planning 1,000 cells costs one query, not 1,000.
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table

from ..config import ConfigError, DataNotFound, config_hash, run_name
from ..decision import checkpoint_path, decide
from ..preflight import check_run
from ..tracking import open_client, resolve_uri, with_retry
from ..tracking_schema import HASH_TAG
from .cells import Cell
from .cost import (
    Cost,
    Resources,
    StepTimes,
    calibrate,
    calibration_steps,
    device_label,
    device_type,
    estimate,
    nominal_steps,
    speed_key,
    stand_in_config,
    steps_per_epoch,
    store_step_time,
)


@dataclass
class PlanRow:
    cell: int
    run_name: str
    config_hash: str
    action: str  # new | skip | resume | busy | refused
    detail: str = ""
    overrides: str = ""
    cost: Cost | None = None  # None for a refused cell, unless only its data files are missing
    model: str = ""


def check_cells(cells: list[Cell]) -> dict[int, str]:
    """Preflight every composed cell: ``{cell index: reason}`` for those that cannot run."""
    refused = {}
    for cell in cells:
        if cell.cfg is None:
            refused[cell.index] = cell.error
            continue
        try:
            cell.checked = check_run(cell.cfg)
        except DataNotFound as exc:
            refused[cell.index] = str(exc)
            cell.missing_data = exc.data
        except ConfigError as exc:
            refused[cell.index] = str(exc)
    return refused


def _stand_in(cell: Cell, data) -> None:
    """For a cell whose data files are not here but whose data set knows its published size: the
    split's class counts, and the cell checked on stand-in images (every other check still runs)."""
    nominal = getattr(data, "nominal_train_counts", None)
    if nominal is None:
        return
    counts = nominal()
    try:
        cell.stand_in = check_run(stand_in_config(cell.cfg, data, counts))
    except ConfigError:  # another problem than the data: no estimate (the refusal names the first)
        return
    cell.nominal_counts = counts


def _runs_by_hash(cfg: DictConfig) -> dict[str, list]:
    uri = resolve_uri(cfg.tracking.uri)
    found: dict[str, list] = defaultdict(list)
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        return found  # no store yet (and opening it would create one)
    client = open_client(uri)
    exp = with_retry(client.get_experiment_by_name, str(cfg.tracking.experiment))
    if exp is None:
        return found
    token = None
    while True:
        page = with_retry(client.search_runs, [exp.experiment_id], order_by=["attributes.start_time DESC"],
                          max_results=5000, page_token=token)
        for run in page:
            if HASH_TAG in run.data.tags:
                found[run.data.tags[HASH_TAG]].append(run)
        token = page.token
        if not token:
            return found


def plan_cells(cells: list[Cell], refused: dict[int, str], job_id: str, resources: Resources | None = None,
               calibrate_now: bool = False) -> list[PlanRow]:
    """One row per cell; reads the store of the first valid cell's ``tracking`` settings. ``job_id``:
    the job that would run them (a RUNNING run it started is not someone else's live run).
    ``resources``: where they would run (default: here); ``calibrate_now``: time the step of each
    distinct speed key that neither the store nor the calibration table has (module :mod:`.cost`)."""
    for cell in cells:  # a plan prices what only lacks its data; a launch has no use for it
        if cell.missing_data is not None:
            _stand_in(cell, cell.missing_data)
    composed = [c for c in cells if c.cfg is not None]
    runs = _runs_by_hash(composed[0].cfg) if composed else {}
    costs = _Costs(composed[0].cfg, [r for rs in runs.values() for r in rs], resources or Resources(),
                   calibrate_now) if composed else None
    rows = []
    for cell in cells:
        overrides = " ".join(cell.overrides)
        if cell.index in refused:
            name = run_name(cell.cfg) if cell.cfg is not None else "?"
            # data not here: what the cell will cost once it is (its whole schedule)
            cost = costs.of(cell, int(cell.cfg.trainer.epochs)) if cell.stand_in is not None else None
            rows.append(PlanRow(cell.index, name, "", "refused", refused[cell.index], overrides, cost,
                                str(cell.cfg.model.name) if cell.cfg is not None else ""))
            continue
        chash = config_hash(cell.cfg)
        decision, _ = decide(runs.get(chash, []), cell.cfg, checkpoint_path(cell.cfg, chash), job_id)
        detail = decision.detail
        if decision.action == "skip" and not math.isnan(decision.val_acc1):
            detail = f"FINISHED, val top-1 {decision.val_acc1:.2f} (run {decision.run_id})"
        elif decision.action == "resume":
            detail = f"from epoch {decision.epoch} (run {decision.run_id})"
        elif decision.action == "busy":
            detail = f"live elsewhere (run {decision.run_id})"
        remaining = 0 if decision.action in ("skip", "busy") else int(cell.cfg.trainer.epochs) - (decision.epoch or 0)
        rows.append(PlanRow(cell.index, run_name(cell.cfg), chash, decision.action, detail, overrides,
                            costs.of(cell, remaining), str(cell.cfg.model.name)))
    return rows


class _Costs:
    """Step times for the cells of one plan: the store's runs first, then the calibration table
    (filled here when calibrating), else unknown."""

    def __init__(self, cfg: DictConfig, runs: list, res: Resources, calibrate_now: bool):
        self.runs, self.res, self.calibrate_now = runs, res, calibrate_now
        self.table = StepTimes(str(cfg.sweep.get("step_times", "step_times.json")))
        self.calibrate_steps = calibration_steps(cfg)
        self.here = device_label(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
        self.steps: dict[tuple, int | None] = {}

    def step_time(self, cell: Cell) -> tuple[float, str] | None:
        cfg = cell.cfg
        found = store_step_time(cfg, self.runs, device_type(cfg, self.res))
        if found is not None:
            return found
        key = speed_key(cfg)
        seconds = self.table.get(key, self.here)
        run = cell.checked or cell.stand_in
        if seconds is None and self.calibrate_now and run is not None:
            seconds, _ = calibrate(run, self.here, self.calibrate_steps)
            self.table.put(key, self.here, seconds)
        if seconds is None:
            return None
        where = f"calibration on {self.here}"
        if self.res.slurm:
            where += " (this machine, not the cluster's nodes)"
        return seconds, where

    def of(self, cell: Cell, remaining_epochs: int) -> Cost:
        world = self.res.tasks if self.res.slurm else 1
        # a split's size does not depend on the seed (stratified counts): one load per data set and batch
        key = (OmegaConf.to_yaml(cell.cfg.dataset), int(cell.cfg.trainer.batch_size), world)
        if key not in self.steps and cell.checked is not None:
            self.steps[key] = steps_per_epoch(cell.cfg, cell.checked.data, world)
        elif key not in self.steps and cell.nominal_counts is not None:
            self.steps[key] = nominal_steps(cell.cfg, cell.nominal_counts, world)
        steps = self.steps.get(key)
        step_time = self.step_time(cell) if remaining_epochs else None
        if step_time is not None and cell.checked is None:  # priced on stand-in images
            step_time = (step_time[0], step_time[1] + "; data not here: stand-in images, published split size")
        return estimate(cell.cfg, steps, remaining_epochs, step_time, self.res)


def cost_totals(rows: list[PlanRow]) -> dict:
    """Device-hours per model and for the sweep over the cells with an estimate, and how many cells
    that would train have none (their cost is unknown, not zero)."""
    per_model: dict[str, float] = defaultdict(float)
    unknown = 0
    for r in rows:
        if r.cost is None or r.cost.total_steps == 0:
            continue
        if r.cost.device_hours is None:
            unknown += 1
            continue
        per_model[r.model] += r.cost.device_hours
    return {"device_hours": sum(per_model.values()),
            "device_hours_per_model": dict(sorted(per_model.items())),
            "cells_unknown": unknown,
            "cells_data_missing": sum(1 for r in rows if r.action == "refused" and r.cost is not None),
            "cells_refused_unpriced": sum(1 for r in rows if r.action == "refused" and r.cost is None),
            "cells_not_fitting_timeout": sum(
                1 for r in rows if r.cost is not None and r.cost.fits_timeout is False)}


def _fmt(value, spec: str) -> str:
    return "unknown" if value is None else format(value, spec)


def print_plan(rows: list[PlanRow], as_json: bool = False) -> None:
    totals = Counter(r.action for r in rows)
    cost = cost_totals(rows)
    if as_json:
        print(json.dumps({"cells": [asdict(r) for r in rows], "totals": dict(totals), "cost": cost}, indent=2))
        return
    table = Table(title=f"sweep plan: {len(rows)} cells (dry run: nothing is created)")
    for col in ("#", "run", "signature", "action", "detail", "steps/epoch", "steps", "s/step", "wall h", "fits"):
        table.add_column(col, overflow="fold")
    for r in rows:
        c = r.cost or Cost()
        fits = "" if c.fits_timeout is None else ("yes" if c.fits_timeout else f"NO: {c.requeues} requeue(s)")
        step = "" if r.cost is None or c.total_steps == 0 else (
            "unknown" if c.step_time_s is None else f"{c.step_time_s:.4f} ({c.step_time_source})")
        table.add_row(str(r.cell), r.run_name, r.config_hash, r.action, r.detail, _fmt(c.steps_per_epoch, "d"),
                      _fmt(c.total_steps, "d"), step, _fmt(c.wall_h, ".2f") if step else "", fits)
    console = Console(width=200)
    console.print(table)
    console.print("totals: " + ", ".join(f"{k} {v}" for k, v in sorted(totals.items())))
    models = ", ".join(f"{k} {v:.2f}" for k, v in cost["device_hours_per_model"].items())
    line = f"cost: {cost['device_hours']:.2f} device-hours" + (f" ({models})" if models else "")
    if cost["cells_data_missing"]:
        line += f"; includes {cost['cells_data_missing']} refused cell(s) whose data is not here (priced on " \
                "stand-in images of the published size)"
    if cost["cells_refused_unpriced"]:
        line += f"; {cost['cells_refused_unpriced']} refused cell(s) not priced (a config error, or data whose " \
                "size only its files tell)"
    if cost["cells_unknown"]:
        line += f"; {cost['cells_unknown']} cell(s) unknown (no store run, no calibration: --calibrate)"
    if cost["cells_not_fitting_timeout"]:
        line += f"; {cost['cells_not_fitting_timeout']} cell(s) exceed the time limit (requeued)"
    console.print(line)
