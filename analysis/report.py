"""``python -m analysis.report``: one self-contained HTML page per sweep.

The page holds the sweep summary (finished / skipped / failed with reasons, wall-clock and device hours
from the runs' own start and end times, the config keys that differ between the runs), the paper tables
the runs fill and the ablation table per data set (as HTML), and the figures embedded as PNG (accuracy
bars or heatmap, validation curves, and the interpretability figures ``analysis.plots`` logged to the
sweep's parent run). It is written to ``--out``/report.html, with a PDF beside it where a Chromium is
installed, and both are logged to the sweep's parent run (``report/``), where the MLflow UI shows the page
inline. Exit code 2 when there is nothing to report.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from rich.console import Console

from dnrt.tracking import with_retry

from . import paper_render, render
from .ablation import EXIT_NO_DATA
from .heatmap import accuracy_figure
from .paper import matching_layouts
from .plots import build_facets, curves
from .runs import (
    AnalysisError,
    add_query_args,
    fetch_runs,
    open_client,
    query_from_args,
    quiet_downloads,
    shared_parent,
)
from .summary import SweepSummary, find_parent, summarize
from .table import add_pivot_args

CHROMIUMS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
PARENT_FIGURES = ("responses", "response_spread", "raa_shifts")
MAX_CURVE_RUNS = 400  # above this the per-run history reads dominate: the page says so instead
STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1500px;color:#222;padding:0 1em}
h1{font-size:1.5em} h2{font-size:1.2em;border-bottom:1px solid #ccc;margin-top:2em}
table{border-collapse:collapse;margin:1em 0;font-size:0.85em}
th,td{border:1px solid #ddd;padding:3px 7px;vertical-align:top} td{text-align:right}
caption{caption-side:bottom;text-align:left;color:#555;font-size:0.9em;padding-top:4px;max-width:1200px}
td.pending{color:#999;font-style:italic} td.best{background:#eef6ee} .paper{color:#666;font-size:0.85em}
tr.ours td{font-weight:500} td.line{text-align:left;color:#666} img{max-width:100%;border:1px solid #eee}
.kv td{text-align:left} .muted{color:#666}
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m analysis.report",
                                description=__doc__.splitlines()[0].replace("``", ""))
    add_query_args(p)
    add_pivot_args(p)
    p.add_argument("--out", default="outputs/report", help="directory for report.html (default: outputs/report)")
    p.add_argument("--no-pdf", action="store_true", help="do not print the page to PDF")
    p.add_argument("--no-log", action="store_true", help="do not log the report to the sweep's parent run")
    return p


def png_data(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def figure_html(name: str, data: str, note: str = "") -> str:
    return (f'<figure id="fig-{html.escape(name)}"><img alt="{html.escape(name)}" '
            f'src="data:image/png;base64,{data}"><figcaption class="muted">{html.escape(note or name)}'
            "</figcaption></figure>")


def parent_figures(client: MlflowClient, parent: str | None) -> dict[str, str]:
    """The interpretability PNGs ``analysis.plots`` logged to the parent run (base64), if any."""
    if parent is None:
        return {}
    out = {}
    try:
        logged = {a.path for a in with_retry(client.list_artifacts, parent, "plots")}
        with tempfile.TemporaryDirectory() as tmp:
            for name in PARENT_FIGURES:
                if f"plots/{name}.png" in logged:
                    path = with_retry(client.download_artifacts, parent, f"plots/{name}.png", tmp)
                    out[name] = base64.b64encode(Path(path).read_bytes()).decode()
    except (MlflowException, OSError):
        return out
    return out


def summary_html(s: SweepSummary) -> str:
    esc = html.escape
    counts = ", ".join(f"{k.lower()}: {v}" for k, v in sorted(s.statuses.items()))
    parts = [f"<p>Runs in MLflow: <b>{esc(counts)}</b>.</p>"]
    if s.launcher:
        parts.append("<p>The launcher's summary: " + esc(", ".join(f"{k}: {v}" for k, v in sorted(s.launcher.items())))
                     + ".</p>")
    if s.problems:
        rows = "".join(f"<tr><td>{esc(n)}</td><td>{esc(st)}</td><td>{esc(why)}</td></tr>" for n, st, why in s.problems)
        parts.append(f'<table class="kv" id="problems"><thead><tr><th>run</th><th>status</th><th>reason</th></tr>'
                     f"</thead><tbody>{rows}</tbody></table>")
    if s.skipped:
        rows = "".join(f"<tr><td>{esc(n)}</td><td>{esc(why)}</td></tr>" for n, why in s.skipped)
        parts.append(f'<details><summary>{len(s.skipped)} skipped</summary><table class="kv"><tbody>{rows}'
                     "</tbody></table></details>")
    hours = "".join(f"<tr><td>run hours on {esc(k)}</td><td>{v:.2f}</td></tr>" for k, v in sorted(s.device_h.items()))
    parts.append(f'<table class="kv" id="timings"><tbody><tr><td>wall clock (first start to last end), hours</td>'
                 f"<td>{s.wall_h:.2f}</td></tr>{hours}</tbody></table>"
                 '<p class="muted">Run hours: the sum of the runs\' durations (end - start), by the device their '
                 "trainer.device param or system metrics name.</p>")
    if s.differing:
        rows = "".join(f"<tr><td>{esc(k)}</td><td>{esc(', '.join(v))}</td></tr>" for k, v in s.differing.items())
        parts.append(f'<h3>Configs that differ between the runs</h3><table class="kv" id="differing"><tbody>{rows}'
                     "</tbody></table>")
    return "\n".join(parts)


def write_pdf(page: Path) -> tuple[Path | None, str]:
    """Print ``page`` to PDF with a headless Chromium; (None, why) when none is installed or it fails."""
    exe = next((shutil.which(c) for c in CHROMIUMS if shutil.which(c)), None)
    if exe is None:
        return None, "no Chromium found to print it"
    pdf = page.with_suffix(".pdf")
    with tempfile.TemporaryDirectory(prefix="dnrt-pdf-") as profile:
        cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
               f"--user-data-dir={profile}", "--no-pdf-header-footer", f"--print-to-pdf={pdf}",
               page.resolve().as_uri()]
        try:
            subprocess.run(cmd, capture_output=True, timeout=180, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return None, f"{exe} failed: {exc}"
    return (pdf, "") if pdf.is_file() and pdf.stat().st_size > 0 else (None, f"{exe} wrote no PDF")


def build_page(args: argparse.Namespace, client: MlflowClient, runs: pd.DataFrame, experiment_id: str,
               parent: str | None, err: Console) -> str:
    esc = html.escape
    title = f"Sweep {args.sweep_id}" if args.sweep_id else f"Experiment {args.experiment}"
    summary = summarize(client, experiment_id, args.sweep_id, parent, runs)
    facets = build_facets(runs, args, err)
    sections = [f"<h1>{esc(title)}: results</h1>",
                f'<p class="muted">experiment {esc(args.experiment)}; {len(runs)} FINISHED runs; store '
                f"{esc(query_from_args(args).uri)}; written {time.strftime('%Y-%m-%d %H:%M:%S %Z')}.</p>",
                "<h2>Sweep summary</h2>", summary_html(summary), "<h2>Tables</h2>"]
    sections += [paper_render.to_html(t) for t in matching_layouts(runs, args.metric)]
    sections += [render.to_html(t, name) for name, t in facets.items()]
    sections.append("<h2>Figures</h2>")
    fig, kind = accuracy_figure(facets)
    sections.append(figure_html("accuracy", png_data(fig), f"{args.metric}: {kind}"))
    n_runs = sum(c.n for t in facets.values() for c in t.cells.values())
    if n_runs <= MAX_CURVE_RUNS:
        try:
            sections.append(figure_html("val_curves", png_data(curves(facets, client)), "val/acc1 per epoch"))
        except AnalysisError as exc:
            sections.append(f'<p class="muted">val_curves not drawn: {esc(str(exc))}</p>')
    else:
        sections.append(f'<p class="muted">val_curves not drawn for {n_runs} runs (one history read per run); '
                        "python -m analysis.plots draws them.</p>")
    for name, data in parent_figures(client, parent).items():
        sections.append(figure_html(name, data, f"{name} (from the sweep's parent run, plots/)"))
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title>"
            f"<style>{STYLE}</style></head><body>{''.join(sections)}</body></html>")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    err = Console(stderr=True)
    try:
        query = query_from_args(args)
        client = open_client(query)
        runs, experiment_id = fetch_runs(query, client)
        parent = find_parent(client, experiment_id, args.sweep_id) if args.sweep_id else shared_parent(runs)
        with quiet_downloads():
            page = build_page(args, client, runs, experiment_id, parent, err)
    except AnalysisError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        return EXIT_NO_DATA
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    paths = [path]
    if args.no_pdf:
        print("PDF: not written (--no-pdf)")
    else:
        pdf, why = write_pdf(path)
        print(f"PDF: {pdf}" if pdf else f"PDF: not written ({why})")
        paths += [pdf] if pdf else []
    if args.no_log:
        pass
    elif parent is None:
        print("not logged to MLflow: the runs do not share one sweep parent run (select one with --sweep-id)")
    else:
        for p in paths:
            with_retry(client.log_artifact, parent, str(p), "report")
        print(f"logged to the sweep's parent run {parent} (artifacts: report/)")
    print(f"report: {path.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
