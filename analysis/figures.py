"""Plot functions (matplotlib, Agg backend): accuracy bars, validation curves, per-class response
distributions with and without ARR, and the RAA shift distribution per layer."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on clusters or in CI

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from dnrt.tracking_schema import VAL_ACC1  # noqa: E402

from .render import col_label  # noqa: E402
from .responses import Collected  # noqa: E402
from .table import AblationTable, short_name  # noqa: E402


def save(fig: Figure, out_dir: Path, stem: str, formats: tuple[str, ...] = ("png", "pdf")) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{stem}.{fmt}" for fmt in formats]
    for path in paths:
        fig.savefig(path, dpi=150, bbox_inches="tight")
    plt.close(fig)
    return paths


def accuracy_bars(table: AblationTable) -> Figure:
    """Grouped bars: one group per row key, one bar per column config; error bars = sample std over seeds;
    a black tick marks the paper's number where it has one."""
    n_rows, n_cols = len(table.row_values), len(table.col_values)
    width = 0.8 / max(n_cols, 1)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 + n_rows * n_cols * 0.45), 4.0), layout="constrained")
    colors = plt.get_cmap("tab10")
    for j, col in enumerate(table.col_values):
        xs, means, stds = [], [], []
        for i, row in enumerate(table.row_values):
            cell = table.cell(row, col)
            if cell is None:
                continue
            x = i - 0.4 + width * (j + 0.5)
            xs.append(x)
            means.append(cell.mean)
            stds.append(cell.std if math.isfinite(cell.std) else 0.0)
            if math.isfinite(cell.paper):
                ax.plot([x - width / 2, x + width / 2], [cell.paper] * 2, color="black", lw=2,
                        label="paper" if not any(h.get_label() == "paper" for h in ax.lines) else None)
        ax.bar(xs, means, width * 0.95, yerr=stds, capsize=3, color=colors(j % 10), label=col_label(col))
    ax.set_xticks(range(n_rows), [" / ".join(r) for r in table.row_values])
    ax.set_xlabel(" / ".join(short_name(k) for k in table.rows))
    ax.set_ylabel(table.metric)
    ax.set_title(f"{table.metric}: mean ± std over seeds")
    ax.legend(title=" / ".join(short_name(k) for k in table.cols), fontsize=8, loc="upper left",
              bbox_to_anchor=(1.01, 1.0))
    ax.grid(axis="y", alpha=0.3)
    return fig


def val_curves(table: AblationTable, history: pd.DataFrame, metric: str = VAL_ACC1) -> Figure:
    """``metric`` per epoch, mean over seeds (band: ± std), one panel per row key, one line per config.
    ``history`` is the long frame of :func:`analysis.runs.metric_history`."""
    n = len(table.row_values)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.4), squeeze=False, sharey=True, layout="constrained")
    colors = plt.get_cmap("tab10")
    for ax, row in zip(axes[0], table.row_values):
        for j, col in enumerate(table.col_values):
            cell = table.cell(row, col)
            if cell is None:
                continue
            h = history[history["run_id"].isin(cell.run_ids)]
            if h.empty:
                continue
            g = h.groupby("step")["value"].agg(["mean", "std"]).fillna(0.0)
            ax.plot(g.index, g["mean"], marker="o", ms=3, color=colors(j % 10), label=col_label(col))
            ax.fill_between(g.index, g["mean"] - g["std"], g["mean"] + g["std"], color=colors(j % 10), alpha=0.15)
        ax.set_title(" / ".join(row))
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(metric)
    axes[0][-1].legend(title=" / ".join(short_name(k) for k in table.cols), fontsize=8)
    fig.suptitle(f"{metric} per epoch (mean ± std over seeds)")
    return fig


def _label(c: Collected) -> str:
    return f"{'with' if c.has_arr else 'without'} ARR\n{c.run_name}"


def shown_classes(runs: list[Collected], k: int) -> list[int]:
    """The ``k`` classes with the most validation samples common to all runs (ties: lowest label)."""
    counts = None
    for c in runs:
        cnt = pd.Series(c.labels).value_counts()
        counts = cnt if counts is None else counts.reindex(counts.index.intersection(cnt.index)).clip(upper=cnt)
    order = sorted(counts.index, key=lambda lab: (-counts[lab], lab))
    return [int(x) for x in order[:k]]


def response_heatmaps(runs: list[Collected], classes: list[int]) -> Figure:
    """One row per run (without / with ARR), one column per class: the class's samples (rows) by the
    response features (columns) at the last tap; a concentrated class shows as vertical stripes."""
    fig, axes = plt.subplots(len(runs), len(classes), figsize=(2.6 * len(classes), 2.4 * len(runs)),
                             squeeze=False, layout="constrained")
    for i, c in enumerate(runs):
        lo, hi = np.percentile(c.responses, [2, 98])  # one colour scale per run: rows are comparable
        for j, k in enumerate(classes):
            ax = axes[i][j]
            r = c.responses[c.labels == k]
            im = ax.imshow(r, aspect="auto", cmap="viridis", vmin=lo, vmax=hi, interpolation="nearest")
            ax.set_title(f"class {k} (n={len(r)})", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(_label(c), fontsize=8)
        fig.colorbar(im, ax=list(axes[i]), fraction=0.02, pad=0.01)
    fig.suptitle(f"aggregated responses at the last tap ({runs[0].tap}): samples x features per class")
    return fig


def within_class_spread(c: Collected) -> dict[int, np.ndarray]:
    """Per class: each sample's distance to its class mean response, over the class's mean response norm."""
    out = {}
    for k in np.unique(c.labels):
        r = c.responses[c.labels == k]
        mu = r.mean(0)
        out[int(k)] = np.linalg.norm(r - mu, axis=1) / max(float(np.linalg.norm(r, axis=1).mean()), 1e-12)
    return out


def response_spread(runs: list[Collected]) -> Figure:
    """Box plots per class of the within-class spread of the last tap's response, runs side by side:
    ARR should make a class's responses more concentrated (lower)."""
    spreads = [within_class_spread(c) for c in runs]
    classes = sorted(set.intersection(*(set(s) for s in spreads)))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(classes) * len(runs)), 3.6), layout="constrained")
    colors = plt.get_cmap("tab10")
    width = 0.8 / len(runs)
    for i, (c, s) in enumerate(zip(runs, spreads)):
        pos = [k - 0.4 + width * (i + 0.5) for k in range(len(classes))]
        bp = ax.boxplot([s[k] for k in classes], positions=pos, widths=width * 0.9, patch_artist=True,
                        showfliers=False)
        for patch in bp["boxes"]:
            patch.set_facecolor(colors(i))
            patch.set_alpha(0.6)
        bp["boxes"][0].set_label(_label(c).replace("\n", ": "))
    ax.set_xticks(range(len(classes)), [str(k) for k in classes])
    ax.set_xlabel("class")
    ax.set_ylabel("||r - class mean|| / mean ||r||")
    ax.set_title(f"within-class spread of the aggregated response at {runs[0].tap}")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(axis="y", alpha=0.3)
    return fig


def raa_shifts(runs: list[Collected]) -> Figure:
    """Violin per RAA layer of the shifts s(x) over the validation batches, one panel per run."""
    runs = [c for c in runs if c.shifts]
    width = max(6.0, 0.45 * max(len(c.shifts) for c in runs))
    fig, axes = plt.subplots(len(runs), 1, figsize=(width, 3.6 * len(runs)), squeeze=False, layout="constrained")
    for ax, c in zip(axes[:, 0], runs):
        names = list(c.shifts)
        data = [c.shifts[n] if len(c.shifts[n]) else np.zeros(1) for n in names]
        ax.violinplot(data, positions=range(len(names)), showmedians=True, widths=0.8)
        ax.axhline(0.0, color="grey", lw=0.8, ls="--")
        ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
        ax.set_xlabel("RAA layer (module path, model order)")
        ax.set_ylabel("s(x)")
        ax.set_title(f"RAA shifts per layer: {c.run_name}", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    return fig
