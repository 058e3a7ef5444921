"""``python -m analysis.ablation``: the ablation table of an experiment's FINISHED runs.

Prints a rich table, writes Markdown, LaTeX (booktabs) and CSV into ``--out`` and logs those files as
artifacts (``ablation/``) of the sweep's parent run when all the runs belong to one sweep. Exit code 2,
with a one-line message on stderr, when there is nothing to tabulate.

``--layout generic`` (default) pivots ``--rows`` x ``--cols``; ``--layout paper_vit`` (``paper_cnn``,
``paper_imagenet1k``, ``paper_ablation``, ``paper_longtail``, ``paper_graph``) lays the runs out as that
paper table, every cell present (``pending`` until run); ``--layout paper`` writes every paper table
the runs fill a cell of.
"""

from __future__ import annotations

import argparse
import sys

from mlflow import MlflowClient
from rich.console import Console

from . import paper_render
from .paper import LAYOUT_NAMES, PaperTable, build_paper_table, get_layout, matching_layouts
from .render import print_rich, write_outputs
from .runs import AnalysisError, add_query_args, fetch_runs, log_to_parent, open_client, query_from_args
from .table import AblationTable, add_pivot_args, build_table, parse_baseline, split_keys

EXIT_NO_DATA = 2


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m analysis.ablation",
                                description=__doc__.splitlines()[0].replace("``", ""))
    add_query_args(p)
    add_pivot_args(p)
    p.add_argument("--layout", default="generic", choices=("generic", "paper", *LAYOUT_NAMES),
                   help="generic: the --rows x --cols pivot (default); paper_*: that paper table's layout; "
                        "paper: every paper table the runs fill")
    p.add_argument("--out", default="outputs/ablation",
                   help="directory for ablation.{md,tex,csv} (paper layouts: <layout>.{md,tex,csv})")
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


def paper_tables(runs, layout: str, metric: str) -> list[PaperTable]:
    """The paper tables ``--layout`` asks for (``paper``: those the runs fill a cell of)."""
    if layout == "paper":
        tables = matching_layouts(runs, metric)
        if not tables:
            raise AnalysisError(f"--layout paper: no run fills a cell of any paper table ({', '.join(LAYOUT_NAMES)}); "
                                "name one with --layout to see it all pending")
        return tables
    return [build_paper_table(runs, get_layout(layout), metric)]


def report_warnings(table: AblationTable, err: Console) -> None:
    for w in table.warnings:
        err.print(f"[yellow]warning:[/yellow] {w}", highlight=False)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    err = Console(stderr=True)
    if args.layout != "generic":
        return main_paper(args, err)
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


def main_paper(args: argparse.Namespace, err: Console) -> int:
    try:
        query = query_from_args(args)
        client = open_client(query)
        runs, _ = fetch_runs(query, client)
        tables = paper_tables(runs, args.layout, args.metric)
    except AnalysisError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        return EXIT_NO_DATA
    console = Console(width=240)
    paths = []
    for table in tables:
        console.print(paper_render.to_rich(table))
        paths += paper_render.write_outputs(table, args.out)
    print(f"wrote {', '.join(str(p) for p in paths)}")
    log_to_parent(client, runs, paths, "ablation", not args.no_log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
