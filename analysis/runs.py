"""Fetch the FINISHED child runs of an experiment from MLflow into a flat DataFrame and filter them.

One row per run; columns ``run_id``, ``run_name``, ``start_time``, ``params.<key>``, ``tags.<key>`` and
``metrics.<key>`` (last logged value), as docs/design.md §4 names them. Sweep parent runs (tag
``dnrt.kind=sweep``) are never results and are dropped here.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from dnrt.tracking import resolve_uri, with_retry
from dnrt.tracking_schema import KIND_TAG, PARENT_TAG, SWEEP_KIND, SWEEP_TAG, tag_column

# Short names for the pivot and filter keys: the four axes of the paper's tables (and the seed).
ALIASES = {
    "model": "params.model.name",
    "act": "params.act.name",
    "regularizer": "params.regularizer.name",
    "dataset": "params.dataset.name",
    "seed": "params.seed",
}
PARENT_COL = tag_column(PARENT_TAG)
SWEEP_COL = tag_column(SWEEP_TAG)
KIND_COL = tag_column(KIND_TAG)


class AnalysisError(Exception):
    """A user-facing problem (no runs, unknown key, ...): the CLIs print it and exit with code 2."""


@dataclass
class RunQuery:
    """Which runs to analyse."""

    tracking_uri: str | None = None
    experiment: str = "dnrt"
    sweep_id: str | None = None
    dataset: str | None = None
    filters: list[str] = field(default_factory=list)  # "key=value", key as in :func:`resolve_key`

    @property
    def uri(self) -> str:
        return resolve_uri(self.tracking_uri)

    def describe(self) -> str:
        parts = [f"experiment {self.experiment!r}"]
        if self.sweep_id:
            parts.append(f"sweep {self.sweep_id}")
        if self.dataset:
            parts.append(f"dataset={self.dataset}")
        parts += self.filters
        return ", ".join(parts)


def add_query_args(parser: argparse.ArgumentParser) -> None:
    """The run-selection options shared by ``analysis.ablation`` and ``analysis.plots``."""
    g = parser.add_argument_group("run selection")
    g.add_argument("--tracking-uri", default=None,
                   help="MLflow store (default: $MLFLOW_TRACKING_URI, else sqlite:///<project root>/mlflow.db)")
    g.add_argument("--experiment", default="dnrt", help="MLflow experiment name (default: dnrt)")
    g.add_argument("--sweep-id", default=None, help=f"only runs of this sweep (tag {SWEEP_TAG})")
    g.add_argument("--dataset", default=None, help="only runs on this dataset (param dataset.name)")
    g.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE",
                   help="keep runs whose param or tag KEY equals VALUE (repeatable); KEY is a short name "
                        f"({', '.join(ALIASES)}), a param key (optim.lr), or params.X / tags.X")


def query_from_args(args: argparse.Namespace) -> RunQuery:
    return RunQuery(args.tracking_uri, args.experiment, args.sweep_id, args.dataset, list(args.filter))


def resolve_key(key: str, columns: pd.Index | list[str]) -> str:
    """Map a user key to a DataFrame column: a short alias, an explicit ``params.``/``tags.``/``metrics.``
    column, or a bare param key (then a bare tag key)."""
    if key in ALIASES:
        return ALIASES[key]
    if key.startswith(("params.", "tags.", "metrics.")) or key in ("run_id", "run_name"):
        return key
    for prefix in ("params.", "tags."):
        if prefix + key in columns:
            return prefix + key
    return "params." + key  # unknown keys fail later with a message naming the known ones


def run_row(run) -> dict[str, object]:
    row: dict[str, object] = {"run_id": run.info.run_id, "run_name": run.info.run_name,
                              "status": run.info.status, "start_time": run.info.start_time}
    row.update({f"params.{k}": v for k, v in run.data.params.items()})
    row.update({f"tags.{k}": v for k, v in run.data.tags.items()})
    row.update({f"metrics.{k}": v for k, v in run.data.metrics.items()})
    return row


def open_client(query: RunQuery) -> MlflowClient:
    """A client of the query's store; a sqlite file that does not exist is an error, not a new empty store."""
    uri = query.uri
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        # MlflowClient would create an empty store there: say what is missing instead
        raise AnalysisError(f"no MLflow store at {uri} (no such file); train first or pass --tracking-uri")
    return MlflowClient(uri)


def fetch_runs(query: RunQuery, client: MlflowClient | None = None) -> tuple[pd.DataFrame, str]:
    """FINISHED child runs matching ``query`` and the experiment id; raises :class:`AnalysisError`
    when the experiment is unknown or nothing matches."""
    client = client or open_client(query)
    try:
        exp = with_retry(client.get_experiment_by_name, query.experiment)
    except MlflowException as exc:
        raise AnalysisError(f"cannot read the MLflow store {query.uri}: {str(exc).splitlines()[0]}") from exc
    if exp is None:
        known = [e.name for e in with_retry(client.search_experiments)]
        raise AnalysisError(f"no experiment named {query.experiment!r} in {query.uri} "
                            f"(experiments there: {', '.join(known) or 'none'})")
    runs, token = [], None
    while True:  # page through: search_runs returns at most 1000 runs per call
        page = with_retry(client.search_runs, [exp.experiment_id], filter_string="attributes.status = 'FINISHED'",
                          order_by=["attributes.start_time DESC"], max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            break
    df = pd.DataFrame([run_row(r) for r in runs])
    if not df.empty and KIND_COL in df:
        # columns only the parent had (its 'overrides' param) go with it
        df = df[df[KIND_COL].fillna("") != SWEEP_KIND].dropna(axis=1, how="all")
    if df.empty:
        raise AnalysisError(f"no FINISHED runs in {query.describe()} ({query.uri})")
    df = apply_filters(df, query)
    if df.empty:
        raise AnalysisError(f"no FINISHED runs match {query.describe()} ({query.uri})")
    return df.reset_index(drop=True), exp.experiment_id


def _parse_filter(spec: str) -> tuple[str, str]:
    key, sep, value = spec.partition("=")
    if not sep or not key.strip():
        raise AnalysisError(f"--filter {spec!r}: expected KEY=VALUE")
    return key.strip(), value.strip()


def apply_filters(df: pd.DataFrame, query: RunQuery) -> pd.DataFrame:
    """Keep the rows matching the sweep id, dataset and every ``key=value`` filter (string equality,
    as MLflow stores params and tags as strings)."""
    conditions = [(SWEEP_COL, query.sweep_id), (ALIASES["dataset"], query.dataset)]
    for spec in query.filters:
        key, value = _parse_filter(spec)
        col = resolve_key(key, df.columns)
        if col not in df.columns:
            raise AnalysisError(f"--filter {spec!r}: no param or tag {key!r} on these runs")
        conditions.append((col, value))
    for col, value in conditions:
        if value is None:
            continue
        if col not in df.columns:
            return df.iloc[0:0]
        if col.startswith("metrics."):
            try:
                df = df[pd.to_numeric(df[col], errors="coerce") == float(value)]
            except ValueError as exc:
                raise AnalysisError(f"--filter {col}={value}: a metric compares with a number") from exc
        else:
            df = df[df[col].astype(str) == str(value)]
    return df


def shared_parent(df: pd.DataFrame) -> str | None:
    """The sweep parent run id when every run has the same non-empty ``mlflow.parentRunId``."""
    if PARENT_COL not in df:
        return None
    parents = set(df[PARENT_COL].fillna(""))
    return parents.pop() if len(parents) == 1 and "" not in parents else None


def log_to_parent(client: MlflowClient, runs: pd.DataFrame, paths, folder: str, enabled: bool = True) -> None:
    """Log ``paths`` as artifacts under ``folder`` of the runs' shared sweep parent, if they have one."""
    if not enabled:
        return
    parent = shared_parent(runs)
    if parent is None:
        print("not logged to MLflow: the runs do not share one sweep parent run (select one with --sweep-id)")
        return
    for path in paths:
        with_retry(client.log_artifact, parent, str(path), folder)
    print(f"logged to the sweep's parent run {parent} (artifacts: {folder}/)")


def metric_history(client: MlflowClient, run_ids: list[str], key: str, workers: int = 8) -> pd.DataFrame:
    """Long frame ``run_id, step, value`` of one metric's history for several runs. MLflow has no bulk
    history call in its client, so the per-run calls overlap in a few threads (they wait on the store)."""
    def one(rid: str) -> list[dict]:
        return [{"run_id": rid, "step": m.step, "value": m.value}
                for m in with_retry(client.get_metric_history, rid, key)]

    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(run_ids)))) as pool:
        rows = [r for part in pool.map(one, run_ids) for r in part]
    return pd.DataFrame(rows, columns=["run_id", "step", "value"])


PROGRESS_BAR_VAR = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"


@contextlib.contextmanager
def quiet_downloads() -> Iterator[None]:
    """MLflow without its progress bar per downloaded file (noise in a report) for the duration, unless
    the user set the switch: MLflow reads it from the environment at each download."""
    if PROGRESS_BAR_VAR in os.environ:
        yield
        return
    os.environ[PROGRESS_BAR_VAR] = "false"
    try:
        yield
    finally:
        os.environ.pop(PROGRESS_BAR_VAR, None)
