"""``python -m analysis.plots``: figures of an experiment's runs, as PNG and PDF in ``--out``.

* ``accuracy``: grouped bars of the ablation table (mean ± std over seeds, paper's number as a tick);
  above a dozen series, a heatmap per data set (models x mechanisms, coloured by Δ to the baseline);
* ``val_curves``: val/acc1 per epoch, mean over seeds, per config (a data set x model grid when large);
* ``responses`` and ``response_spread``: the last tap's aggregated responses per class, without and with
  ARR (a run with ARR and its twin without, reloaded from their checkpoints);
* ``raa_shifts``: the distribution of the RAA shifts s(x) per layer.

``--run-id`` (repeatable) chooses the runs reloaded for the last three; without it a DNRT run (RAA + ARR)
and its twin without ARR are picked from the selected runs. The files are also logged to the sweep's
parent run (``plots/``) when all the runs belong to one sweep.

A figure that cannot be made (no checkpoint to reload, ...) is a warning naming the reason and the fix;
the exit code is 0 when at least one figure was written, 2 when none (``--strict``: 2 when any is missing).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
from rich.console import Console

from dnrt.tracking import with_retry
from dnrt.tracking_schema import VAL_ACC1, is_execution_key

from . import figures
from .ablation import EXIT_NO_DATA
from .heatmap import HEATMAP_ABOVE, accuracy_figure, curves_grid, facet_tables, series
from .responses import Collected, collect
from .runs import (
    ALIASES,
    AnalysisError,
    add_query_args,
    fetch_runs,
    log_to_parent,
    metric_history,
    open_client,
    query_from_args,
    run_row,
)
from .table import AblationTable, add_pivot_args, build_table, parse_baseline, split_keys

REG = ALIASES["regularizer"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m analysis.plots",
                                description=__doc__.splitlines()[0].replace("``", ""))
    add_query_args(p)
    add_pivot_args(p)
    g = p.add_argument_group("interpretability figures")
    g.add_argument("--run-id", action="append", default=[], help="run to reload (repeatable); default: automatic")
    g.add_argument("--classes", type=int, default=4, help="classes shown in the response heat-maps (default: 4)")
    g.add_argument("--batches", type=int, default=8, help="validation batches per reloaded model (default: 8)")
    g.add_argument("--device", default="cpu", help="torch device for the reloaded models (default: cpu)")
    g.add_argument("--no-interpret", action="store_true", help="only the accuracy and curve figures")
    p.add_argument("--formats", default="png,pdf", help="comma list of file formats (default: png,pdf)")
    p.add_argument("--out", default="outputs/plots", help="output directory (default: outputs/plots)")
    p.add_argument("--no-log", action="store_true", help="do not log the files to the sweep's parent run")
    p.add_argument("--strict", action="store_true", help="exit 2 when any figure cannot be made")
    return p


def _same_params(df: pd.DataFrame, row: pd.Series) -> pd.Series:
    """Runs whose params equal ``row``'s except the regularizer's and the execution settings."""
    mask = pd.Series(True, index=df.index)
    for col in df.columns:
        key = col.removeprefix("params.")
        if not col.startswith("params.") or key.startswith("regularizer.") or is_execution_key(key):
            continue
        value = row.get(col)
        mask &= df[col].fillna("<unset>").astype(str) == ("<unset>" if pd.isna(value) else str(value))
    return mask


def twin(df: pd.DataFrame, row: pd.Series) -> pd.Series | None:
    """The run that differs from ``row`` only in having (or not having) ARR."""
    other = "none" if str(row.get(REG)) == "arr" else "arr"
    hits = df[_same_params(df, row) & (df[REG].astype(str) == other)]
    return hits.iloc[0] if len(hits) else None


def pick_runs(df: pd.DataFrame, client, run_ids: list[str]) -> list[str]:
    """Runs to reload: ``run_ids`` (one id gets its ARR twin added), else a DNRT run and its twin."""
    if run_ids:
        if len(run_ids) > 1:
            return list(run_ids)
        row = pd.Series(run_row(with_retry(client.get_run, run_ids[0])))
        mate = twin(df, row)
        return run_ids if mate is None else [run_ids[0], mate["run_id"]]
    act = df[ALIASES["act"]].astype(str)
    order = df.assign(_raa=~act.str.startswith("raa")).sort_values(["_raa", ALIASES["model"], ALIASES["seed"]])
    for _, row in order[order[REG].astype(str) == "arr"].iterrows():
        mate = twin(df, row)
        if mate is not None:
            return [mate["run_id"], row["run_id"]]
    return [order.iloc[0]["run_id"]]  # no ARR pair: one run (its responses and shifts) still tells something


INTERPRET_FIGURES = ("responses", "response_spread", "raa_shifts")
CHECKPOINT_FIX = "train with trainer.log_checkpoint=true, or pass --run-id of a run that has a checkpoint"


def interpret(df: pd.DataFrame, client, args: argparse.Namespace, formats: tuple[str, ...], err: Console
              ) -> list[Path]:
    ids = pick_runs(df, client, args.run_id)
    runs: list[Collected] = []
    for rid in ids:
        try:
            runs.append(collect(client, rid, args.batches, args.device))
        except AnalysisError:
            if args.run_id:
                raise
            err.print(f"[yellow]warning:[/yellow] run {rid}: cannot reload it, skipped", highlight=False)
    if not runs:
        raise AnalysisError("no selected run could be reloaded: none has a checkpoint")
    runs.sort(key=lambda c: c.has_arr)  # without ARR first, as in the paper's figures
    out = Path(args.out)
    paths = figures.save(figures.response_heatmaps(runs, figures.shown_classes(runs, args.classes)), out,
                         "responses", formats)
    paths += figures.save(figures.response_spread(runs), out, "response_spread", formats)
    if any(c.shifts for c in runs):
        paths += figures.save(figures.raa_shifts(runs), out, "raa_shifts", formats)
    else:
        err.print("[yellow]note:[/yellow] no RAA layer in the reloaded runs: raa_shifts not drawn", highlight=False)
    return paths


def build_facets(runs: pd.DataFrame, args: argparse.Namespace, err: Console) -> dict[str, AblationTable]:
    """The ablation table per data set (each facet's warnings printed once)."""
    def build(df: pd.DataFrame) -> AblationTable:
        return build_table(df, split_keys(args.rows), split_keys(args.cols), args.metric,
                           parse_baseline(args.baseline), args.ci, True if args.minimize else None,
                           paper_dataset=args.paper_dataset)
    tables = {k: t for k, t in facet_tables(runs, build).items() if t.cells}
    if not tables:
        raise AnalysisError(f"no run logged {args.metric}")
    for name, table in tables.items():
        for w in table.warnings:
            err.print(f"[yellow]warning:[/yellow] {name}: {w}", highlight=False)
    return tables


def curves(tables: dict[str, AblationTable], client) -> figures.Figure:
    """val/acc1 per epoch: one panel per row for a small sweep, else the data set x model grid."""
    run_ids = [r for t in tables.values() for c in t.cells.values() for r in c.run_ids]
    history = metric_history(client, run_ids, VAL_ACC1)
    if history.empty:
        raise AnalysisError("no run logged val/acc1 per epoch")
    small = len(tables) == 1 and series(tables) <= HEATMAP_ABOVE
    return figures.val_curves(next(iter(tables.values())), history) if small else curves_grid(tables, history)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    err = Console(stderr=True)
    formats = tuple(f.strip() for f in args.formats.split(",") if f.strip())
    out = Path(args.out)
    try:
        query = query_from_args(args)
        client = open_client(query)
        runs, _ = fetch_runs(query, client)
        tables = build_facets(runs, args, err)
    except AnalysisError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        return EXIT_NO_DATA
    jobs = [(("accuracy",), lambda: figures.save(accuracy_figure(tables)[0], out, "accuracy", formats), None),
            (("val_curves",), lambda: figures.save(curves(tables, client), out, "val_curves", formats), None)]
    if not args.no_interpret:
        jobs.append((INTERPRET_FIGURES, lambda: interpret(runs, client, args, formats, err), CHECKPOINT_FIX))
    paths: list[Path] = []
    missing = 0
    for names, make, fix in jobs:
        try:
            paths += make()
        except AnalysisError as exc:
            for name in names:
                missing += 1
                tail = f"; fix: {fix}" if fix else ""
                err.print(f"[yellow]warning:[/yellow] figure {name} not made: {exc}{tail}", highlight=False,
                          soft_wrap=True)
    for p in paths:
        print(f"wrote {p}")
    if paths:
        log_to_parent(client, runs, paths, "plots", not args.no_log)
    if not paths:
        err.print("[red]error:[/red] no figure could be made", highlight=False)
        return EXIT_NO_DATA
    return EXIT_NO_DATA if args.strict and missing else 0


if __name__ == "__main__":
    sys.exit(main())
