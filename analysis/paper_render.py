"""Render a :class:`~analysis.paper.PaperTable` as the paper prints it: Markdown, LaTeX (booktabs), CSV,
HTML and a rich table. Each cell: ``ours ± std (n)`` (best of the row in bold), then the paper's value
and our Δ to it; a cell no run has reached yet reads ``pending``."""

from __future__ import annotations

import html
import math
from pathlib import Path

import pandas as pd
from rich.table import Table

from .paper import MECHANISMS, MODELS, PaperCell, PaperTable
from .render import tex_escape

PENDING = "pending"


def ours_text(cell: PaperCell) -> str:
    if cell.pending:
        return PENDING
    spread = f" ± {cell.std:.2f}" if math.isfinite(cell.std) else ""
    return f"{cell.mean:.2f}{spread} ({cell.n})"


def paper_text(cell: PaperCell) -> str:
    """``paper 92.1, Δ -0.87``; only the paper's number while pending; "" where the paper has none."""
    if not math.isfinite(cell.paper):
        return ""
    return f"paper {cell.paper:.1f}" + ("" if cell.pending else f", Δ {cell.delta:+.2f}")


def caption(table: PaperTable) -> str:
    lay = table.layout
    what = ("the last epoch's" if table.metric.startswith("final/") else
            "the best epoch's" if table.metric.startswith("best/") else "")
    n_cells = len(table.cells)
    pending = sum(c.pending for c in table.cells.values())
    return (f"{lay.title}. Ours: {table.metric} ({what + ' ' if what else ''}validation score), mean ± sample std "
            f"over seeds (n runs), best of each row in bold; paper: its reported {lay.paper_metric}; "
            f"Δ = ours - paper. {n_cells - pending} of {n_cells} cells run, {pending} pending "
            f"({table.n_runs} runs).")


def _rows(table: PaperTable):
    for group in table.layout.groups:
        for i, model in enumerate(table.layout.models):
            cells = [table.cell(group.label, model, m) for m in table.layout.mechanisms]
            yield group.label, i, model, MODELS.get(model, model), cells


def to_markdown(table: PaperTable) -> str:
    lay = table.layout
    out = [f"**{lay.title}** — metric: `{table.metric}`", "",
           "| data | model | " + " | ".join(lay.labels) + " |", "|---|---|" + "---:|" * len(lay.labels)]
    for group, i, _, name, cells in _rows(table):
        texts = []
        for c in cells:
            ours = f"**{ours_text(c)}**" if c.best else (f"*{PENDING}*" if c.pending else ours_text(c))
            texts.append(ours + (f"<br>{paper_text(c)}" if paper_text(c) else ""))
        out.append(f"| {group if i == 0 else ''} | {name} | " + " | ".join(texts) + " |")
    out += ["", caption(table), ""]
    return "\n".join(out)


def to_latex(table: PaperTable) -> str:
    """A booktabs ``table`` (needs ``\\usepackage{booktabs}``): per model one line of ours and one
    smaller line of the paper's number and Δ."""
    lay = table.layout
    n = len(lay.labels)
    out = [r"\begin{table}[t]", r"\centering", r"\small", rf"\caption{{{tex_escape(caption(table))}}}",
           rf"\begin{{tabular}}{{ll{'r' * n}}}", r"\toprule",
           "Data & Model & " + " & ".join(tex_escape(x) for x in lay.labels) + r" \\", r"\midrule"]
    groups = [g.label for g in lay.groups]
    for group, i, _, name, cells in _rows(table):
        ours = []
        for c in cells:
            if c.pending:
                ours.append(rf"\textit{{{PENDING}}}")
                continue
            body = f"{c.mean:.2f}" + (rf" \pm {c.std:.2f}" if math.isfinite(c.std) else "")
            ours.append((rf"$\mathbf{{{body}}}$" if c.best else f"${body}$") + f" ({c.n})")
        if i == 0:
            out.append(rf"\multicolumn{{{n + 2}}}{{l}}{{\textit{{{tex_escape(group)}}}}} \\")
        out.append(f" & {tex_escape(name)} & " + " & ".join(ours) + r" \\")
        paper = [(rf"\scriptsize {c.paper:.1f}" + ("" if c.pending else rf" ($\Delta$ ${c.delta:+.2f}$)"))
                 if math.isfinite(c.paper) else "" for c in cells]
        out.append(r" & \scriptsize paper & " + " & ".join(paper) + r" \\")
        if i == len(lay.models) - 1 and group != groups[-1]:
            out.append(r"\midrule")
    out += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(out)


def to_frame(table: PaperTable) -> pd.DataFrame:
    """One row per cell, in the table's order."""
    rows = []
    for group, _, model, name, cells in _rows(table):
        for (act, reg), c in zip(table.layout.mechanisms, cells):
            rows.append({"group": group, "model": model, "model_name": name, "mechanism": MECHANISMS[(act, reg)],
                         "act": act, "regularizer": reg, "metric": table.metric, "mean": c.mean, "std": c.std, "n": c.n,
                         "seeds": " ".join(sorted(set(c.seeds))), "paper": c.paper, "delta": c.delta,
                         "best": c.best, "pending": c.pending})
    return pd.DataFrame(rows)


def to_html(table: PaperTable) -> str:
    lay = table.layout
    esc = html.escape
    head = "".join(f"<th>{esc(x)}</th>" for x in ["data", "model", *lay.labels])
    body = []
    for group, i, _, name, cells in _rows(table):
        tds = [f'<th rowspan="{len(lay.models)}" class="group">{esc(group)}</th>'] if i == 0 else []
        tds.append(f'<th class="model">{esc(name)}</th>')
        for c in cells:
            cls = "pending" if c.pending else ("best" if c.best else "")
            ours = f"<b>{esc(ours_text(c))}</b>" if c.best else esc(ours_text(c))
            extra = f'<div class="paper">{esc(paper_text(c))}</div>' if paper_text(c) else ""
            tds.append(f'<td class="{cls}"><span class="ours">{ours}</span>{extra}</td>')
        body.append("<tr>" + "".join(tds) + "</tr>")
    return (f'<table class="paper" id="{esc(lay.name)}"><caption>{esc(caption(table))}</caption>'
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")


def to_rich(table: PaperTable) -> Table:
    lay = table.layout
    t = Table(title=f"{lay.title} ({table.metric})", caption=caption(table))
    t.add_column("data", style="cyan")
    t.add_column("model", style="cyan")
    for label in lay.labels:
        t.add_column(label, justify="right")
    for group, i, _, name, cells in _rows(table):
        texts = [f"[bold]{ours_text(c)}[/bold]" if c.best else
                 (f"[dim]{PENDING}[/dim]" if c.pending else ours_text(c)) for c in cells]
        texts = [x + (f"\n[dim]{paper_text(c)}[/dim]" if paper_text(c) else "") for x, c in zip(texts, cells)]
        t.add_row(group if i == 0 else "", name, *texts, end_section=i == len(lay.models) - 1)
    return t


def write_outputs(table: PaperTable, out_dir: str | Path) -> list[Path]:
    """``<layout>.md``, ``<layout>.tex`` and ``<layout>.csv`` in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = table.layout.name
    paths = [out / f"{stem}.md", out / f"{stem}.tex", out / f"{stem}.csv"]
    paths[0].write_text(to_markdown(table), encoding="utf-8")
    paths[1].write_text(to_latex(table), encoding="utf-8")
    to_frame(table).to_csv(paths[2], index=False)
    return paths
