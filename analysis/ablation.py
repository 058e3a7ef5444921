"""``python -m analysis.ablation``: the ablation table of an experiment's FINISHED runs.

Prints a rich table, writes Markdown, LaTeX (booktabs) and CSV into ``--out`` and logs those files as
artifacts (``ablation/``) of the sweep's parent run when all the runs belong to one sweep. Exit code 2,
with a one-line message on stderr, when there is nothing to tabulate.
"""

from __future__ import annotations

import argparse
import sys

from mlflow import MlflowClient
from rich.console import Console

from .render import print_rich, write_outputs
from .runs import AnalysisError, add_query_args, fetch_runs, log_to_parent, open_client, query_from_args
from .table import AblationTable, add_pivot_args, build_table, parse_baseline, split_keys

EXIT_NO_DATA = 2


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m analysis.ablation",
                                description=__doc__.splitlines()[0].replace("``", ""))
    add_query_args(p)
    add_pivot_args(p)
    p.add_argument("--out", default="outputs/ablation", help="directory for ablation.{md,tex,csv}")
    p.add_argument("--no-log", action="store_true", help="do not log the files to the sweep's parent run")
    return p


def table_from_args(args: argparse.Namespace, client: MlflowClient | None = None):
    """Fetch the runs and build the table the arguments describe; returns (table, runs, client)."""
    query = query_from_args(args)
    client = client or open_client(query)
    runs, _ = fetch_runs(query, client)
    table = build_table(runs, split_keys(args.rows), split_keys(args.cols), args.metric,
                        parse_baseline(args.baseline), args.ci, True if args.minimize else None,
                        paper_dataset=args.paper_dataset)
    return table, runs, client


def report_warnings(table: AblationTable, err: Console) -> None:
    for w in table.warnings:
        err.print(f"[yellow]warning:[/yellow] {w}", highlight=False)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    err = Console(stderr=True)
    try:
        table, runs, client = table_from_args(args)
    except AnalysisError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        return EXIT_NO_DATA
    report_warnings(table, err)
    print_rich(table)
    paths = write_outputs(table, args.out)
    print(f"wrote {', '.join(str(p) for p in paths)}")
    log_to_parent(client, runs, paths, "ablation", not args.no_log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
