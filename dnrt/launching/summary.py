"""The sweep summary: one line per run appended by its job, read and printed at the sweep's end."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from ..tracking_schema import RunStatus
from ..types import Outcome

SUMMARY_FILE = "dnrt_summary.jsonl"


def record(sweep_dir: Path, outcome: Outcome) -> None:
    """Append this job's outcome to the sweep's summary (one small O_APPEND write per job)."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    line = json.dumps(outcome.__dict__, default=str) + "\n"
    fd = os.open(sweep_dir / SUMMARY_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def read_summary(sweep_dir: Path) -> list[dict[str, Any]]:
    path = sweep_dir / SUMMARY_FILE
    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    # A requeued packed job runs its whole pack again: a run it finished before the requeue then
    # reports "skipped". Count each run once, as what happened to it first in this sweep.
    seen: set[str] = set()
    kept = []
    for row in rows:
        run_id = row.get("run_id")
        if run_id is not None and run_id in seen and row["status"] == RunStatus.SKIPPED:
            continue
        seen.add(run_id)
        kept.append(row)
    return kept


def distinguishing(rows: list[dict[str, Any]]) -> list[str]:
    """Per row, the overrides that tell its cell from the others: the keys whose values differ
    between the rows (``optim.lr=1e6``); "" where every row has the same."""
    cells = [dict(o.split("=", 1) for o in r.get("overrides") or [] if "=" in o) for r in rows]
    keys = sorted({k for c in cells for k in c})
    varying = [k for k in keys if len({c.get(k) for c in cells}) > 1]
    return [" ".join(f"{k}={c[k]}" for k in varying if k in c) for c in cells]


def label(row: dict[str, Any], cell: str) -> str:
    """The run name, with the cell's distinguishing overrides where there are some."""
    return f"{row['run_name']} [{cell}]" if cell else row["run_name"]


def failure_lines(rows: list[dict[str, Any]]) -> list[str]:
    """``<run name> [<its distinguishing overrides>]: <why>`` for each failed row."""
    return [f"{label(r, c)}: {r['detail']}" for r, c in zip(rows, distinguishing(rows)) if r["status"] == "failed"]


def print_summary(rows: list[dict[str, Any]], expected: int | None = None) -> Counter:
    counts = Counter(r["status"] for r in rows)
    table = Table(title=f"sweep summary: {len(rows)} runs" + (f" of {expected}" if expected else ""))
    for col in ("run", "cell", "status", "val top-1", "detail"):
        table.add_column(col)
    for r, cell in sorted(zip(rows, distinguishing(rows)), key=lambda rc: (rc[0]["run_name"], rc[1])):
        acc = r.get("val_acc1")
        table.add_row(r["run_name"], cell, r["status"], "" if acc is None or acc != acc else f"{acc:.2f}",
                      str(r.get("detail", ""))[:80])
    console = Console(width=140)
    console.print(table)
    console.print(", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "no runs")
    return counts
