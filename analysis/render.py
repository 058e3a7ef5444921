"""Render an :class:`~analysis.table.AblationTable`: a rich table for the terminal, Markdown, LaTeX
(booktabs) and CSV.

Every format uses the paper's layout: one block per row key with up to four lines, ``mean ± std (n)``,
``Δ`` to the row's baseline, its ``95% CI`` (from 3 paired seeds) and the ``paper``'s number; the best
cell of each row is bold.
"""

from __future__ import annotations

import html
import math
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .table import AblationTable, Cell, short_name, to_long_frame

LINES = ("ours", "delta", "ci", "paper")
LINE_LABEL = {"ours": "mean ± std (n)", "delta": "Δ vs baseline", "ci": "95% CI of Δ", "paper": "paper"}


def _num(x: float, signed: bool = False) -> str:
    return f"{x:+.2f}" if signed else f"{x:.2f}"


def cell_text(cell: Cell | None, line: str) -> str:
    """Plain text of one line of one cell ("" when it does not apply)."""
    if cell is None:
        return ""
    if line == "ours":
        spread = f" ± {_num(cell.std)}" if math.isfinite(cell.std) else ""
        return f"{_num(cell.mean)}{spread} ({cell.n})"
    if line == "delta":
        return "baseline" if cell.baseline else (_num(cell.delta, True) if math.isfinite(cell.delta) else "")
    if line == "ci":
        return f"[{_num(cell.ci[0], True)}, {_num(cell.ci[1], True)}]" if cell.ci else ""
    return f"{cell.paper:.1f}" if math.isfinite(cell.paper) else ""


def _row_lines(table: AblationTable, row: tuple[str, ...]) -> list[str]:
    """The lines a row block needs: ``ours`` always, the others only where some cell has a value."""
    cells = [table.cell(row, c) for c in table.col_values]
    return [line for line in LINES if line == "ours" or any(cell_text(c, line) not in ("", "baseline")
                                                            for c in cells)]


def _line_texts(table: AblationTable, row: tuple[str, ...], line: str, best_fmt: str) -> list[str]:
    """One text per column for ``line`` of ``row``; the row's best ``ours`` cell through ``best_fmt``."""
    texts = []
    for col in table.col_values:
        cell = table.cell(row, col)
        text = cell_text(cell, line)
        texts.append(best_fmt.format(text) if line == "ours" and cell is not None and cell.best else text)
    return texts


def col_label(col: tuple[str, ...]) -> str:
    return " / ".join(col)


def caption(table: AblationTable) -> str:
    n_runs = sum(c.n for c in table.cells.values())
    base = ", ".join(f"{short_name(k)}={v}" for k, v in table.baseline.items()) or "none"
    goal = "lower" if table.minimize else "higher"
    return (f"{table.metric} over seeds ({n_runs} runs; {goal} is better, best per row in bold); "
            f"Δ to the baseline {base} of the same row; CI: paired by seed ({table.ci_method}); "
            f"paper: the DNRT paper's reported top-1")


def to_rich(table: AblationTable) -> Table:
    t = Table(title=f"ablation: {table.metric}; columns: {' / '.join(short_name(k) for k in table.cols)}",
              caption=caption(table), show_lines=False)
    for key in table.rows:
        t.add_column(short_name(key), style="cyan")
    t.add_column("", style="dim")
    for col in table.col_values:
        t.add_column(col_label(col), justify="right")
    for i, row in enumerate(table.row_values):
        lines = _row_lines(table, row)
        for j, line in enumerate(lines):
            texts = _line_texts(table, row, line, "[bold]{}[/bold]")
            keys = list(row) if j == 0 else [""] * len(row)
            last = j == len(lines) - 1 and i < len(table.row_values) - 1
            t.add_row(*keys, LINE_LABEL[line], *texts, end_section=last)
    return t


def print_rich(table: AblationTable, console: Console | None = None) -> None:
    (console or Console(width=200)).print(to_rich(table))


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def to_markdown(table: AblationTable) -> str:
    head = [short_name(k) for k in table.rows] + [""] + [col_label(c) for c in table.col_values]
    out = [f"**{table.metric}** — columns: {' / '.join(short_name(k) for k in table.cols)}", "",
           "| " + " | ".join(_md_escape(h) for h in head) + " |",
           "|" + "|".join(["---"] * (len(table.rows) + 1) + ["---:"] * len(table.col_values)) + "|"]
    for row in table.row_values:
        for j, line in enumerate(_row_lines(table, row)):
            texts = _line_texts(table, row, line, "**{}**")
            keys = list(row) if j == 0 else [""] * len(row)
            out.append("| " + " | ".join(_md_escape(x) for x in keys + [LINE_LABEL[line]] + texts) + " |")
    out += ["", caption(table), ""]
    return "\n".join(out)


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
        "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "Δ": r"$\Delta$", "±": r"$\pm$"}


def tex_escape(text: str) -> str:
    return "".join(_TEX.get(ch, ch) for ch in text)


def _tex_cell(cell: Cell | None, line: str) -> str:
    text = cell_text(cell, line)
    if not text or cell is None:
        return ""
    if line == "ours":
        body = text.replace(" ± ", r" \pm ").replace(f" ({cell.n})", "")
        body = rf"\mathbf{{{body}}}" if cell.best else body
        return f"${body}$ ({cell.n})"
    if line == "delta" and cell.baseline:
        return r"\textit{baseline}"
    return f"${text}$" if line in ("delta", "ci") else text


def to_latex(table: AblationTable) -> str:
    """A booktabs ``table`` environment (needs ``\\usepackage{booktabs}``)."""
    n_keys = len(table.rows) + 1
    spec = "l" * n_keys + "r" * len(table.col_values)
    head = [tex_escape(short_name(k)) for k in table.rows] + [""] + [tex_escape(col_label(c)) for c in table.col_values]
    out = [r"\begin{table}[t]", r"\centering", rf"\caption{{{tex_escape(caption(table))}}}",
           rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
           " & " * n_keys + rf"\multicolumn{{{len(table.col_values)}}}{{c}}"
           rf"{{{tex_escape(' / '.join(short_name(k) for k in table.cols))}}} \\",
           rf"\cmidrule(lr){{{n_keys + 1}-{n_keys + len(table.col_values)}}}",
           " & ".join(head) + r" \\", r"\midrule"]
    for i, row in enumerate(table.row_values):
        for j, line in enumerate(_row_lines(table, row)):
            keys = [tex_escape(v) for v in row] if j == 0 else [""] * len(row)
            cells = [_tex_cell(table.cell(row, col), line) for col in table.col_values]
            out.append(" & ".join(keys + [tex_escape(LINE_LABEL[line])] + cells) + r" \\")
        if i < len(table.row_values) - 1:
            out.append(r"\midrule")
    out += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(out)


def to_html(table: AblationTable, title: str = "") -> str:
    """An HTML table with the same blocks and lines as the Markdown one (best cell in bold)."""
    esc = html.escape
    head = "".join(f"<th>{esc(h)}</th>" for h in [short_name(k) for k in table.rows] + [""]
                   + [col_label(c) for c in table.col_values])
    body = []
    for row in table.row_values:
        lines = _row_lines(table, row)
        for j, line in enumerate(lines):
            keys = "".join(f'<th rowspan="{len(lines)}">{esc(v)}</th>' for v in row) if j == 0 else ""
            cells = "".join(f'<td class="{"best" if "<b>" in t else ""}">{t}</td>'
                            for t in _line_texts(table, row, line, "<b>{}</b>"))
            body.append(f'<tr class="{line}">{keys}<td class="line">{esc(LINE_LABEL[line])}</td>{cells}</tr>')
    cap = esc((title + ": " if title else "") + caption(table))
    return (f'<table class="ablation"><caption>{cap}</caption><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table>")


def write_outputs(table: AblationTable, out_dir: str | Path, stem: str = "ablation") -> list[Path]:
    """Write ``<stem>.md``, ``<stem>.tex`` and ``<stem>.csv`` (one row per cell) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{stem}.md", out / f"{stem}.tex", out / f"{stem}.csv"]
    paths[0].write_text(to_markdown(table), encoding="utf-8")
    paths[1].write_text(to_latex(table), encoding="utf-8")
    to_long_frame(table).to_csv(paths[2], index=False)
    return paths
