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

from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from ..config import ConfigError, config_hash, run_name
from ..decision import checkpoint_path, decide
from ..preflight import check_run
from ..tracking import open_client, resolve_uri, with_retry
from ..tracking_schema import HASH_TAG
from .cells import Cell


@dataclass
class PlanRow:
    cell: int
    run_name: str
    config_hash: str
    action: str  # new | skip | resume | busy | refused
    detail: str = ""
    overrides: str = ""


def check_cells(cells: list[Cell]) -> dict[int, str]:
    """Preflight every composed cell: ``{cell index: reason}`` for those that cannot run."""
    refused = {}
    for cell in cells:
        if cell.cfg is None:
            refused[cell.index] = cell.error
            continue
        try:
            check_run(cell.cfg)
        except ConfigError as exc:
            refused[cell.index] = str(exc)
    return refused


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


def plan_cells(cells: list[Cell], refused: dict[int, str], job_id: str) -> list[PlanRow]:
    """One row per cell; reads the store of the first valid cell's ``tracking`` settings. ``job_id``:
    the job that would run them (a RUNNING run it started is not someone else's live run)."""
    valid = [c for c in cells if c.index not in refused]
    runs = _runs_by_hash(valid[0].cfg) if valid else {}
    rows = []
    for cell in cells:
        overrides = " ".join(cell.overrides)
        if cell.index in refused:
            name = run_name(cell.cfg) if cell.cfg is not None else "?"
            rows.append(PlanRow(cell.index, name, "", "refused", refused[cell.index], overrides))
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
        rows.append(PlanRow(cell.index, run_name(cell.cfg), chash, decision.action, detail, overrides))
    return rows


def print_plan(rows: list[PlanRow], as_json: bool = False) -> None:
    totals = Counter(r.action for r in rows)
    if as_json:
        print(json.dumps({"cells": [asdict(r) for r in rows], "totals": dict(totals)}, indent=2))
        return
    table = Table(title=f"sweep plan: {len(rows)} cells (dry run: nothing is created)")
    for col in ("#", "run", "signature", "action", "detail"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(str(r.cell), r.run_name, r.config_hash, r.action, r.detail)
    console = Console(width=160)
    console.print(table)
    console.print("totals: " + ", ".join(f"{k} {v}" for k, v in sorted(totals.items())))
