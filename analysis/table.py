"""The ablation table: runs grouped over seeds into a (rows x cols) pivot, with mean, sample std, n,
the delta to the baseline cell of the same row (and a paired-by-seed 95% CI from 3 seeds on), the best
cell of each row, and the paper's reported number for the cells the paper has."""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field
from importlib import resources

import numpy as np
import pandas as pd
from scipy import stats

from dnrt.tracking_schema import (
    FINAL_VAL_ACC1,
    HASH_TAG,
    HEADLINE_TAG,
    VAL_ACC1,
    best_metric,
    final_metric,
    is_execution_key,
    tag_column,
)

from .runs import ALIASES, AnalysisError, resolve_key

PAPER_FIELDS = ("dataset", "model", "act", "regularizer")
HEADLINE_COL = tag_column(HEADLINE_TAG)  # the metric a run is judged by; absent on older runs: val/acc1
HASH_COL = tag_column(HASH_TAG)
TOP1 = VAL_ACC1
MIN_CI_SEEDS = 3
BOOTSTRAP_SAMPLES = 10_000


class OverSeeds:
    """``n``, ``mean`` and sample ``std`` of ``self.values`` (the metric of each run of a cell)."""

    values: list[float]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return float(np.mean(self.values)) if self.values else math.nan

    @property
    def std(self) -> float:
        """Sample standard deviation (ddof=1); NaN for a single run."""
        return float(np.std(self.values, ddof=1)) if self.n > 1 else math.nan


@dataclass
class Cell(OverSeeds):
    """One (row, col) cell: the metric of each run, by seed, and what is derived from it."""

    row: tuple[str, ...]
    col: tuple[str, ...]
    seeds: list[str]
    values: list[float]
    run_ids: list[str]
    identity: dict[str, str | None] = field(default_factory=dict)  # model/act/regularizer/dataset
    delta: float = math.nan
    ci: tuple[float, float] | None = None
    paper: float = math.nan
    best: bool = False
    baseline: bool = False

    def by_seed(self) -> dict[str, float]:
        """Mean value per seed (a seed repeated in one cell is averaged, so pairing stays one-to-one)."""
        out: dict[str, list[float]] = {}
        for s, v in zip(self.seeds, self.values):
            out.setdefault(s, []).append(v)
        return {s: float(np.mean(v)) for s, v in out.items()}


@dataclass
class AblationTable:
    rows: list[str]  # resolved column names of the row keys
    cols: list[str]
    row_values: list[tuple[str, ...]]
    col_values: list[tuple[str, ...]]
    cells: dict[tuple[tuple[str, ...], tuple[str, ...]], Cell]
    metric: str
    baseline: dict[str, str]
    ci_method: str
    minimize: bool
    warnings: list[str] = field(default_factory=list)

    def cell(self, row: tuple[str, ...], col: tuple[str, ...]) -> Cell | None:
        return self.cells.get((row, col))


def add_pivot_args(parser: argparse.ArgumentParser) -> None:
    """Options that shape the table, shared by ``analysis.ablation`` and ``analysis.plots``."""
    g = parser.add_argument_group("table")
    g.add_argument("--rows", default="model", help="comma list of row keys (default: model)")
    g.add_argument("--cols", default="act,regularizer", help="comma list of column keys (default: act,regularizer)")
    g.add_argument("--baseline", default="act=gelu,regularizer=none",
                   help="the baseline cell within each row, KEY=VALUE[,KEY=VALUE] (default: act=gelu,regularizer=none)")
    g.add_argument("--metric", default=FINAL_VAL_ACC1, help=f"MLflow metric to tabulate (default: {FINAL_VAL_ACC1})")
    g.add_argument("--minimize", action="store_true", help="lower is better (default: on for metrics named *loss*)")
    g.add_argument("--ci", choices=("t", "bootstrap"), default="t",
                   help="paired-by-seed 95%% CI of each delta with >= 3 seeds: t interval or bootstrap (default: t)")
    g.add_argument("--paper-dataset", default=None,
                   help="look the paper's numbers up for this dataset instead of the runs' own")


def split_keys(spec: str) -> list[str]:
    return [k.strip() for k in spec.split(",") if k.strip()]


def parse_baseline(spec: str) -> dict[str, str]:
    out = {}
    for part in split_keys(spec):
        key, sep, value = part.partition("=")
        if not sep:
            raise AnalysisError(f"--baseline {spec!r}: expected KEY=VALUE[,KEY=VALUE]")
        out[key.strip()] = value.strip()
    return out


def load_paper(path: str | None = None) -> pd.DataFrame:
    """The paper's reported top-1 (``analysis/paper_results.csv``): table, dataset, model, act,
    regularizer, top1."""
    if path is None:
        with resources.files("analysis").joinpath("paper_results.csv").open() as f:
            return pd.read_csv(f, comment="#", dtype={"top1": float})
    return pd.read_csv(path, comment="#", dtype={"top1": float})


def paper_value(paper: pd.DataFrame, identity: dict[str, str | None], dataset: str | None = None) -> float:
    """The paper's number for (dataset, model, act, regularizer), NaN when the paper has none. The same
    cell appears in several tables with one value; the first is taken."""
    key = {**identity, **({"dataset": dataset} if dataset else {})}
    if any(key.get(f) is None for f in PAPER_FIELDS):
        return math.nan
    hit = paper
    for f in PAPER_FIELDS:
        hit = hit[hit[f] == key[f]]
    return float(hit["top1"].iloc[0]) if len(hit) else math.nan


def headline_metric(metric: str, headline: str) -> str:
    """``metric`` (asked in terms of top-1) for a run whose headline is ``headline``:
    ``final/val_acc1`` -> ``final/val_auc`` and ``val/acc1`` -> ``val/auc`` for ``val/auc``;
    any other metric is itself."""
    if headline == TOP1:
        return metric
    if metric == TOP1:
        return headline
    for summary in (best_metric, final_metric):  # final/val_acc1 -> final/val_auc
        if metric == summary(TOP1):
            return summary(headline)
    return metric


def with_headline(df: pd.DataFrame, metric: str) -> tuple[pd.DataFrame, str]:
    """Runs judged by another metric than top-1 (tag ``dnrt.headline``, e.g. ``val/auc`` for node
    classification) give theirs where top-1 is asked. Returns the frame with the values in
    ``metrics.<name>`` and that name: the headline's own (``final/val_auc``) when every run with a
    value has that headline, ``metric`` when none does, else ``metric`` plus what replaced it."""
    if HEADLINE_COL not in df:
        return df, metric
    heads = df[HEADLINE_COL].fillna(TOP1)
    col = "metrics." + metric
    values = df[col] if col in df else pd.Series(math.nan, index=df.index)
    used = {}
    for head in set(heads) - {TOP1}:
        other = "metrics." + headline_metric(metric, head)
        if other != col and other in df:
            rows = heads == head
            values = values.where(~rows, df[other])
            if df.loc[rows, other].notna().any():
                used[head] = headline_metric(metric, head)
    if not used:
        return df, metric
    top1_rows = heads.eq(TOP1) & (df[col].notna() if col in df else False)
    if len(used) == 1 and not top1_rows.any():
        name = next(iter(used.values()))
    else:
        name = f"{metric} ({', '.join(f'{v} for {k} runs' for k, v in sorted(used.items()))})"
    return df.assign(**{"metrics." + name: values}), name


def paired_ci(diffs: list[float], method: str, level: float = 0.95) -> tuple[float, float]:
    """95% CI of the mean of per-seed differences."""
    d = np.asarray(diffs, dtype=float)
    if method == "bootstrap":
        rng = np.random.default_rng(0)  # fixed: the table must not change between two invocations
        means = d[rng.integers(0, len(d), size=(BOOTSTRAP_SAMPLES, len(d)))].mean(1)
        lo, hi = np.percentile(means, [50 * (1 - level), 50 * (1 + level)])
        return float(lo), float(hi)
    half = stats.t.ppf(0.5 + level / 2, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
    return float(d.mean() - half), float(d.mean() + half)


def _order(values: list[str], first: str | None) -> list[str]:
    """Baseline value first, then numbers numerically, then the rest alphabetically."""
    def key(v: str):
        try:
            return (v != first, 0, float(v), "")
        except ValueError:
            return (v != first, 1, 0.0, v)
    return sorted(values, key=key)


def _resolve(keys: list[str], df: pd.DataFrame, option: str) -> list[str]:
    cols = [resolve_key(k, df.columns) for k in keys]
    missing = [k for k, c in zip(keys, cols) if c not in df.columns]
    if missing:
        known = ", ".join(list(ALIASES) + sorted(c.removeprefix("params.") for c in df.columns
                                                 if c.startswith("params."))[:40])
        raise AnalysisError(f"{option}: unknown key(s) {', '.join(missing)}; known: {known}, ...")
    return cols


def _varying_params(group: pd.DataFrame, ignore: set[str]) -> list[str]:
    """Params that differ within one cell other than the seed and execution settings: a cell that mixes
    e.g. two learning rates is not a seed replicate, so the table warns."""
    out = []
    for col in group.columns:
        if not col.startswith("params.") or col in ignore:
            continue
        key = col.removeprefix("params.")
        if is_execution_key(key):
            continue
        if group[col].fillna("<unset>").nunique() > 1:
            out.append(key)
    return out


def build_table(df: pd.DataFrame, rows: list[str], cols: list[str], metric: str = FINAL_VAL_ACC1,
                baseline: dict[str, str] | None = None, ci_method: str = "t", minimize: bool | None = None,
                paper: pd.DataFrame | None = None, paper_dataset: str | None = None) -> AblationTable:
    """Aggregate the runs in ``df`` (from :func:`analysis.runs.fetch_runs`) into an ablation table."""
    rcols, ccols = _resolve(rows, df, "--rows"), _resolve(cols, df, "--cols")
    df, metric = with_headline(df, metric)
    mcol = "metrics." + metric
    if mcol not in df:
        known = sorted(c.removeprefix("metrics.") for c in df.columns if c.startswith("metrics."))
        raise AnalysisError(f"--metric {metric!r}: no run logged it; logged metrics: {', '.join(known)}")
    minimize = "loss" in metric if minimize is None else minimize
    warnings: list[str] = []
    missing = df[mcol].isna()
    if missing.any():
        warnings.append(f"{int(missing.sum())} run(s) without {metric} left out: "
                        + ", ".join(df.loc[missing, "run_name"].astype(str)))
    df = df[~missing]
    if HASH_COL in df:  # a config re-run with force=true: the newest run counts
        n_before = len(df)
        df = df.sort_values("start_time", ascending=False).drop_duplicates(HASH_COL)
        if len(df) < n_before:
            warnings.append(f"{n_before - len(df)} older run(s) of an identical config left out (newest kept)")
    base_raw = baseline or {}
    base = {}
    for key, value in base_raw.items():
        col = resolve_key(key, df.columns)
        if col in rcols or col in ccols:
            base[col] = value
        else:
            warnings.append(f"baseline key {key!r} is not a row or column key: ignored")
    pivot = rcols + ccols
    seed_col = ALIASES["seed"]
    ignore = set(pivot) | {seed_col}
    row_vals = {c: _order(sorted(set(df[c].astype(str))), base.get(c)) for c in rcols}
    col_vals = {c: _order(sorted(set(df[c].astype(str))), base.get(c)) for c in ccols}
    cells = {}
    for key, group in df.groupby([df[c].astype(str) for c in pivot], sort=False):
        key = tuple(str(k) for k in key)
        row, col = key[: len(rcols)], key[len(rcols):]
        seeds = group[seed_col].astype(str).tolist() if seed_col in group else ["0"] * len(group)
        identity = {}
        for f in PAPER_FIELDS:  # from the pivot key, else the value all the cell's runs share
            c = ALIASES[f]
            vals = set(group[c].astype(str)) if c in group else set()
            identity[f] = key[pivot.index(c)] if c in pivot else (vals.pop() if len(vals) == 1 else None)
        cells[(row, col)] = Cell(row, col, seeds, group[mcol].astype(float).tolist(),
                                 group["run_id"].tolist(), identity)
        varying = _varying_params(group, ignore)
        if varying:
            warnings.append(f"cell {'/'.join(key)} mixes runs that differ in {', '.join(varying[:6])}")
    row_values = [r for r in _product(row_vals, rcols) if any(k[0] == r for k in cells)]
    col_values = [c for c in _product(col_vals, ccols) if any(k[1] == c for k in cells)]
    table = AblationTable(rcols, ccols, row_values, col_values, cells, metric, base, ci_method, minimize, warnings)
    _derive(table, paper if paper is not None else load_paper(), paper_dataset)
    return table


def _product(values: dict[str, list[str]], keys: list[str]) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = [()]
    for k in keys:
        out = [o + (v,) for o in out for v in values[k]]
    return out


def _is_baseline(table: AblationTable, row: tuple[str, ...], col: tuple[str, ...]) -> bool:
    if not table.baseline:
        return False
    named = dict(zip(table.rows + table.cols, row + col))
    return all(named[k] == v for k, v in table.baseline.items())


def _derive(table: AblationTable, paper: pd.DataFrame, paper_dataset: str | None) -> None:
    """Fill delta, CI, best and paper for every cell."""
    for row in table.row_values:
        in_row = [c for c in (table.cell(row, col) for col in table.col_values) if c is not None]
        base = next((c for c in in_row if _is_baseline(table, c.row, c.col)), None)
        for cell in in_row:
            cell.paper = paper_value(paper, cell.identity, paper_dataset)
            if base is None:
                continue
            if cell is base:
                cell.baseline = True
                continue
            cell.delta = cell.mean - base.mean
            mine, theirs = cell.by_seed(), base.by_seed()
            common = sorted(set(mine) & set(theirs))
            if len(common) >= MIN_CI_SEEDS:
                cell.ci = paired_ci([mine[s] - theirs[s] for s in common], table.ci_method)
        finite = [c.mean for c in in_row if math.isfinite(c.mean)]
        if finite:
            best = min(finite) if table.minimize else max(finite)
            for cell in in_row:
                cell.best = cell.mean == best


def to_long_frame(table: AblationTable) -> pd.DataFrame:
    """One row per cell: the keys, mean, std, n, seeds, delta, CI, paper, best and baseline flags."""
    names = [short_name(c) for c in table.rows + table.cols]
    out = []
    for row in table.row_values:
        for col in table.col_values:
            cell = table.cell(row, col)
            if cell is None:
                continue
            out.append({**dict(zip(names, row + col)), "metric": table.metric, "mean": cell.mean, "std": cell.std,
                        "n": cell.n, "seeds": " ".join(sorted(set(cell.seeds))), "delta": cell.delta,
                        "ci_low": cell.ci[0] if cell.ci else math.nan, "ci_high": cell.ci[1] if cell.ci else math.nan,
                        "paper": cell.paper, "best": cell.best, "baseline": cell.baseline})
    return pd.DataFrame(out)


def short_name(col: str) -> str:
    """``params.model.name`` -> ``model``; other columns lose only their ``params.``/``tags.`` prefix."""
    for alias, full in ALIASES.items():
        if col == full:
            return alias
    return col.split(".", 1)[1] if col.startswith(("params.", "tags.", "metrics.")) else col
