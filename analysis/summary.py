"""What a sweep did: its runs by status (with the failures' reasons), the launcher's own summary
(finished / skipped / resumed / failed), wall-clock and device hours from the runs' own start and end
times, and the config keys whose values differ between the runs."""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from dnrt.tracking import with_retry
from dnrt.tracking_schema import (
    DETAIL_TAG,
    KIND_TAG,
    SUMMARY_ARTIFACT,
    SWEEP_KIND,
    SWEEP_TAG,
    SYSTEM_PREFIX,
    RunStatus,
    is_execution_key,
    tag_column,
    tag_filter,
)

from .runs import ALIASES, KIND_COL, AnalysisError, run_row

DETAIL_COL = tag_column(DETAIL_TAG)


@dataclass
class SweepSummary:
    statuses: Counter  # MLflow run status -> count
    problems: list[tuple[str, str, str]]  # (run name, status, reason) of the runs that did not finish
    launcher: Counter  # summary.json status -> count (empty when the parent has none)
    skipped: list[tuple[str, str]]  # (run name, reason) from summary.json
    wall_h: float  # first start to last end
    device_h: dict[str, float]  # "GPU" / "CPU" / unrecorded -> sum of the runs' durations
    differing: dict[str, list[str]] = field(default_factory=dict)  # param -> its values over the runs


def find_parent(client: MlflowClient, experiment_id: str, sweep_id: str) -> str | None:
    """The parent run of sweep ``sweep_id`` (tag ``dnrt.kind=sweep``)."""
    hits = with_retry(client.search_runs, [experiment_id],
                      filter_string=f"{tag_filter(SWEEP_TAG, sweep_id)} and {tag_filter(KIND_TAG, SWEEP_KIND)}",
                      max_results=5)
    return hits[0].info.run_id if hits else None


def all_runs(client: MlflowClient, experiment_id: str, sweep_id: str | None) -> pd.DataFrame:
    """Every child run (any status) of the experiment, or of one sweep; a few paged searches."""
    flt = tag_filter(SWEEP_TAG, sweep_id) if sweep_id else ""
    rows, token = [], None
    while True:
        page = with_retry(client.search_runs, [experiment_id], filter_string=flt, max_results=1000,
                          page_token=token)
        rows += [run_row(r) | {"end_time": r.info.end_time} for r in page]
        token = page.token
        if not token:
            break
    df = pd.DataFrame(rows)
    if len(df) and KIND_COL in df:
        df = df[df[KIND_COL].fillna("") != SWEEP_KIND]
    return df.reset_index(drop=True)


def launcher_summary(client: MlflowClient, parent: str | None) -> list[dict]:
    """The rows of the parent run's ``summary.json`` (written when the sweep ended), [] without one."""
    if parent is None:
        return []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = with_retry(client.download_artifacts, parent, SUMMARY_ARTIFACT, tmp)
            return json.loads(Path(path).read_text())
    except (MlflowException, OSError, ValueError):
        return []


def device_of(row: pd.Series) -> str:
    """GPU or CPU from the run's ``trainer.device`` param, else from its system metrics, else unknown."""
    dev = str(row.get("params.trainer.device", "auto"))
    if dev.startswith("cuda"):
        return "GPU"
    if dev == "cpu":
        return "CPU"
    keys = [k for k, v in row.items() if k.startswith(f"metrics.{SYSTEM_PREFIX}") and pd.notna(v)]
    if any(k.startswith(f"metrics.{SYSTEM_PREFIX}gpu") for k in keys):
        return "GPU"
    return "CPU" if keys else "an unrecorded device (trainer.device=auto)"


def _follows_group(df: pd.DataFrame, col: str) -> bool:
    """``act.base`` etc.: a key of a config group whose value is fixed by the group's choice
    (``act.name``) only repeats that choice, so it is not listed apart."""
    group = col.removeprefix("params.").split(".", 1)[0]
    name = f"params.{group}.name"
    if name == col or name not in df or "." not in col.removeprefix("params."):
        return False
    return bool((df[col].fillna("<unset>").astype(str).groupby(df[name].astype(str)).nunique() <= 1).all())


def differing_params(df: pd.DataFrame, limit: int = 12) -> dict[str, list[str]]:
    """Params with more than one value over the runs (execution settings left out): the sweep's axes,
    and anything else that changed between cells."""
    out = {}
    for col in sorted(c for c in df.columns if c.startswith("params.")):
        key = col.removeprefix("params.")
        if is_execution_key(key):
            continue
        values = sorted(set(df[col].fillna("<unset>").astype(str)))
        if len(values) > 1 and not _follows_group(df, col):
            out[key] = values[:limit] + ([f"... ({len(values)} values)"] if len(values) > limit else [])
    first = [ALIASES[k].removeprefix("params.") for k in ("model", "dataset", "act", "regularizer", "seed")]
    return dict(sorted(out.items(), key=lambda kv: (first.index(kv[0]) if kv[0] in first else len(first), kv[0])))


def summarize(client: MlflowClient, experiment_id: str, sweep_id: str | None, parent: str | None,
              finished: pd.DataFrame) -> SweepSummary:
    """``finished``: the FINISHED runs the tables use (their configs are compared)."""
    runs = all_runs(client, experiment_id, sweep_id)
    if runs.empty:
        raise AnalysisError("no runs to summarize")
    statuses = Counter(runs["status"].astype(str))
    problems = [(str(r["run_name"]), str(r["status"]), str(r.get(DETAIL_COL, "") or ""))
                for _, r in runs.iterrows() if r["status"] != "FINISHED"]
    rows = launcher_summary(client, parent)
    ended = runs[runs["end_time"].notna() & (runs["status"] != "RUNNING")]
    hours = (ended["end_time"].astype(float) - ended["start_time"].astype(float)) / 3.6e6
    device_h: dict[str, float] = {}
    for (_, row), h in zip(ended.iterrows(), hours):
        device_h[device_of(row)] = device_h.get(device_of(row), 0.0) + float(h)
    wall = (float(ended["end_time"].max()) - float(runs["start_time"].min())) / 3.6e6 if len(ended) else 0.0
    return SweepSummary(statuses, sorted(problems), Counter(r.get("status", "?") for r in rows),
                        sorted((r.get("run_name", "?"), str(r.get("detail", ""))) for r in rows
                               if r.get("status") == RunStatus.SKIPPED),
                        wall, device_h, differing_params(finished))
