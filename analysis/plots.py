"""``python -m analysis.plots``: figures of an experiment's runs, as PNG and PDF in ``--out``.

* ``accuracy``: grouped bars of the ablation table (mean ± std over seeds, paper's number as a tick);
* ``val_curves``: val/acc1 per epoch, mean over seeds, per config;
* ``responses`` and ``response_spread``: the last tap's aggregated responses per class, without and with
  ARR (a run with ARR and its twin without, reloaded from their checkpoints);
* ``raa_shifts``: the distribution of the RAA shifts s(x) per layer.

``--run-id`` (repeatable) chooses the runs reloaded for the last three; without it a DNRT run (RAA + ARR)
and its twin without ARR are picked from the selected runs. The files are also logged to the sweep's
parent run (``plots/``) when all the runs belong to one sweep.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
from rich.console import Console

from dnrt.config import EXECUTION_KEYS
from dnrt.tracking import with_retry

from . import figures
from .ablation import EXIT_NO_DATA, report_warnings, table_from_args
from .responses import Collected, collect
from .runs import ALIASES, AnalysisError, add_query_args, log_to_parent, metric_history, run_row
from .table import add_pivot_args

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
    return p


def _same_params(df: pd.DataFrame, row: pd.Series) -> pd.Series:
    """Runs whose params equal ``row``'s except the regularizer's and the execution settings."""
    mask = pd.Series(True, index=df.index)
    for col in df.columns:
        key = col.removeprefix("params.")
        if (not col.startswith("params.") or key.startswith("regularizer.")
                or any(key == k or key.startswith(k + ".") for k in EXECUTION_KEYS)):
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
        raise AnalysisError("no selected run could be reloaded (no checkpoint); the response and shift "
                            "figures need one (trainer.log_checkpoint=true)")
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    err = Console(stderr=True)
    formats = tuple(f.strip() for f in args.formats.split(",") if f.strip())
    out = Path(args.out)
    try:
        table, runs, client = table_from_args(args)
        report_warnings(table, err)
        paths = figures.save(figures.accuracy_bars(table), out, "accuracy", formats)
        history = metric_history(client, [r for c in table.cells.values() for r in c.run_ids], "val/acc1")
        paths += figures.save(figures.val_curves(table, history), out, "val_curves", formats)
        if not args.no_interpret:
            paths += interpret(runs, client, args, formats, err)
    except AnalysisError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        return EXIT_NO_DATA
    for p in paths:
        print(f"wrote {p}")
    log_to_parent(client, runs, paths, "plots", not args.no_log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
