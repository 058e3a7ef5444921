"""Figures that scale to the paper's full grid: one panel per data set (facet), a heatmap of models x
mechanisms annotated with our mean and coloured by Δ to the row's baseline (diverging map centred at 0,
``*`` and a frame where the paired 95% CI of Δ excludes 0), and validation curves as a data set x model
grid. :func:`accuracy_figure` keeps the grouped bars for small sweeps."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")  # files only: no display on clusters or in CI

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import TwoSlopeNorm  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from dnrt.tracking_schema import VAL_ACC1  # noqa: E402

from .figures import accuracy_bars  # noqa: E402
from .paper import MECHANISMS  # noqa: E402
from .render import col_label  # noqa: E402
from .runs import ALIASES  # noqa: E402
from .table import AblationTable, short_name  # noqa: E402

HEATMAP_ABOVE = 12  # series (row x column cells over all facets) beyond which bars stop being readable


def series(tables: dict[str, AblationTable]) -> int:
    return sum(len(t.row_values) * len(t.col_values) for t in tables.values())


def column_label(table: AblationTable, col: tuple[str, ...]) -> str:
    """The paper's mechanism name when the columns are (act, regularizer), else ``a / b``."""
    if [short_name(c) for c in table.cols] == ["act", "regularizer"] and tuple(col) in MECHANISMS:
        return MECHANISMS[tuple(col)]
    return col_label(col)


def ordered_cols(table: AblationTable) -> list[tuple[str, ...]]:
    """Columns in the paper's mechanism order where they are mechanisms, the others after."""
    order = list(MECHANISMS)
    return sorted(table.col_values, key=lambda c: (order.index(tuple(c)) if tuple(c) in order else len(order),
                                                   table.col_values.index(c)))


def annotation(cell) -> str:
    """The text drawn in a heatmap cell: the mean (2 decimals), ``*`` when the CI of Δ excludes 0."""
    star = "*" if cell.ci is not None and (cell.ci[0] > 0 or cell.ci[1] < 0) else ""
    return f"{cell.mean:.2f}{star}"


def heatmap(tables: dict[str, AblationTable]) -> Figure:
    """One panel per facet (data set): rows x columns, text = mean, colour = Δ to the row's baseline."""
    deltas = [c.delta for t in tables.values() for c in t.cells.values() if math.isfinite(c.delta)]
    span = max([abs(d) for d in deltas] + [1e-6])
    norm = TwoSlopeNorm(vcenter=0.0, vmin=-span, vmax=span)
    cmap = plt.get_cmap("RdBu").with_extremes(bad="#dddddd")
    n_cols = max(len(t.col_values) for t in tables.values())
    heights = [max(len(t.row_values), 1) for t in tables.values()]
    fig, axes = plt.subplots(len(tables), 1, figsize=(2.0 + 0.95 * n_cols, 1.3 + 0.42 * sum(heights)
                                                      + 0.9 * len(tables)),
                             squeeze=False, layout="constrained", gridspec_kw={"height_ratios": heights})
    image = None
    for ax, (facet, table) in zip(axes[:, 0], tables.items()):
        cols = ordered_cols(table)
        grid = np.full((len(table.row_values), len(cols)), np.nan)
        for i, row in enumerate(table.row_values):
            for j, col in enumerate(cols):
                cell = table.cell(row, col)
                if cell is None:
                    ax.text(j, i, "–", ha="center", va="center", fontsize=8, color="#777777")
                    continue
                grid[i, j] = 0.0 if cell.baseline else cell.delta
                weight = "bold" if cell.best else "normal"
                dark = abs(norm(grid[i, j]) - 0.5) > 0.3 if math.isfinite(grid[i, j]) else False
                ax.text(j, i, annotation(cell), ha="center", va="center", fontsize=8, fontweight=weight,
                        color="white" if dark else "black", gid=f"cell:{i}:{j}")
                if cell.ci is not None and (cell.ci[0] > 0 or cell.ci[1] < 0):
                    ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, lw=1.6, ec="black"))
        image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, norm=norm, aspect="auto")
        ax.set_xticks(range(len(cols)), [column_label(table, c) for c in cols], rotation=30, ha="right",
                      fontsize=8)
        ax.set_yticks(range(len(table.row_values)), [" / ".join(r) for r in table.row_values], fontsize=8)
        ax.set_title(facet, fontsize=10, loc="left", fontweight="bold")
    first = next(iter(tables.values()))
    base = ", ".join(f"{short_name(k)}={v}" for k, v in first.baseline.items()) or "none"
    fig.suptitle(f"{first.metric}, mean over seeds; colour: Δ to {base} of the row; * and frame: paired 95% CI "
                 "of Δ excludes 0; bold: best of the row", fontsize=9)
    if image is not None:
        fig.colorbar(image, ax=list(axes[:, 0]), fraction=0.03, pad=0.01, label="Δ to the row's baseline")
    return fig


def accuracy_figure(tables: dict[str, AblationTable]) -> tuple[Figure, str]:
    """Grouped bars for a small sweep (one facet), else the heatmap; returns (figure, "bars"|"heatmap")."""
    if len(tables) == 1 and series(tables) <= HEATMAP_ABOVE:
        return accuracy_bars(next(iter(tables.values()))), "bars"
    return heatmap(tables), "heatmap"


def curves_grid(tables: dict[str, AblationTable], history: pd.DataFrame, metric: str = VAL_ACC1) -> Figure:
    """``metric`` per epoch, mean over seeds: a panel per (facet, row), a line per column (20 colours,
    then dashed)."""
    n_rows = max(len(t.row_values) for t in tables.values())
    fig, axes = plt.subplots(len(tables), n_rows, figsize=(3.2 * n_rows, 2.6 * len(tables) + 0.8), squeeze=False,
                             sharey=True, layout="constrained")
    colors = plt.get_cmap("tab20")
    by_run = dict(tuple(history.groupby("run_id"))) if len(history) else {}
    handles: dict[str, object] = {}
    for r, (facet, table) in enumerate(tables.items()):
        cols = ordered_cols(table)
        for k, ax in enumerate(axes[r]):
            if k >= len(table.row_values):
                ax.set_visible(False)
                continue
            row = table.row_values[k]
            for j, col in enumerate(cols):
                cell = table.cell(row, col)
                parts = [by_run[i] for i in (cell.run_ids if cell else []) if i in by_run]
                if not parts:
                    continue
                g = pd.concat(parts).groupby("step")["value"].mean()
                (line,) = ax.plot(g.index, g.values, color=colors(j % 20), ls="-" if j < 20 else "--", lw=1.2)
                handles.setdefault(column_label(table, col), line)
            ax.set_title(f"{facet}: {' / '.join(row)}", fontsize=8)
            ax.grid(alpha=0.3)
            ax.tick_params(labelsize=7)
        axes[r][0].set_ylabel(metric, fontsize=8)
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncol=min(len(handles), 8),
                   fontsize=8)
    fig.suptitle(f"{metric} per epoch, mean over seeds")
    return fig


def facet_tables(runs: pd.DataFrame, build) -> dict[str, AblationTable]:
    """One table per data set (``build(runs_of_one_dataset)``); one table, named after its data set,
    when the runs have a single one."""
    col = ALIASES["dataset"]
    if col not in runs:
        return {"all runs": build(runs)}
    return {str(name): build(group.reset_index(drop=True)) for name, group in runs.groupby(runs[col].astype(str),
                                                                                          sort=True)}
