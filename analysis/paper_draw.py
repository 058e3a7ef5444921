"""Drawing of the paper's Figures 2 and 3 (matplotlib, Agg): per-channel response violins and the
with/without-ARR training curves. The data come from :mod:`analysis.paper_figures`."""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")  # files only: no display on clusters or in CI

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from dnrt.tracking_schema import TRAIN_LOSS_CE, VAL_ACC1, VAL_LOSS  # noqa: E402

WITHOUT, WITH = "tab:blue", "tab:red"
GRID_POINTS = 96  # density samples per violin


def density(values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Gaussian kernel density of 1-D ``values`` [n] at ``grid`` [G], Scott's bandwidth. Written out
    (not matplotlib's violinplot) so a constant channel, e.g. a GELU output stuck at 0, is drawn
    instead of failing on a singular covariance."""
    std = float(values.std()) if len(values) > 1 else 0.0
    span = float(np.ptp(grid)) if len(grid) > 1 else 1.0
    h = std * len(values) ** (-1 / 5) if std > 0 else 0.0
    h = max(h, 1e-3 * max(span, 1e-6))  # a constant channel: a narrow bump, not a division by zero
    z = (grid[:, None] - values[None, :]) / h
    return np.exp(-0.5 * z**2).mean(1) / (h * np.sqrt(2 * np.pi))


def channel_violins(ax: Axes, values: np.ndarray, color: str, width: float = 0.8) -> None:
    """One violin per column of ``values`` [N, C] at x = 0..C-1 (channel index), each scaled to the
    same maximum width; the median as a dot."""
    lo, hi = float(values.min()), float(values.max())
    pad = 0.05 * (hi - lo) if hi > lo else 0.05 * max(abs(lo), 1.0)
    for c in range(values.shape[1]):
        v = values[:, c]
        grid = np.linspace(v.min() - pad, v.max() + pad, GRID_POINTS)
        d = density(v, grid)
        d = d / d.max() * width / 2
        ax.fill_betweenx(grid, c - d, c + d, color=color, alpha=0.55, lw=0)
        ax.plot([c], [np.median(v)], marker="o", ms=1.5, color="black")
    ax.set_xlim(-1, values.shape[1])
    ax.grid(axis="y", alpha=0.3)


@dataclass
class ViolinRow:
    """One row of a Figure 2 part: a title (a layer or a class) and the [N, C] values of the run
    without and of the run with the mechanism."""

    title: str
    without: np.ndarray
    with_: np.ndarray


def violin_grid(rows: list[ViolinRow], mechanism: str, suptitle: str, names: tuple[str, str]) -> Figure:
    """Rows x 2 panels (without | with ``mechanism``), the y axis shared within a row; ``names``:
    the two runs' names, shown under the column titles."""
    n_ch = max(r.without.shape[1] for r in rows)
    fig, axes = plt.subplots(len(rows), 2, figsize=(2 * max(5.0, 0.13 * n_ch + 1.5), 2.3 * len(rows)),
                             squeeze=False, sharey="row", layout="constrained")
    for i, row in enumerate(rows):
        for j, (values, color) in enumerate(((row.without, WITHOUT), (row.with_, WITH))):
            ax = axes[i][j]
            channel_violins(ax, values, color)
            ax.set_title(f"{row.title}: {'with' if j else 'without'} {mechanism} (n={len(values)})", fontsize=9)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if j == 0:
                ax.set_ylabel("response")
            if i == len(rows) - 1:
                ax.set_xlabel("channel index")
    fig.suptitle(f"{suptitle}\nwithout: {names[0]}   with: {names[1]}", fontsize=10)
    return fig


# (metric key, legend text, line style) of Figure 3a
LOSS_SERIES = ((TRAIN_LOSS_CE, "train", "-"), (VAL_LOSS, "test", "--"))
ACC_SERIES = ((VAL_ACC1, "test", "-"),)


def curves(history: pd.DataFrame, labels: dict[str, str]) -> Figure:
    """Figure 3: (a) train and test CE loss per epoch, (b) test top-1 per epoch, one colour per run.
    ``history``: long frame ``run_id, key, step, value``; ``labels``: run id -> legend text, the run
    without ARR first."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10.0, 3.8), layout="constrained")
    for (rid, label), color in zip(labels.items(), (WITHOUT, WITH)):
        for ax, series in ((ax_loss, LOSS_SERIES), (ax_acc, ACC_SERIES)):
            for key, text, style in series:
                h = history[(history["run_id"] == rid) & (history["key"] == key)].sort_values("step")
                ax.plot(h["step"], h["value"], style, color=color, marker="o", ms=2.5, label=f"{text}, {label}",
                        gid=f"{rid}|{key}")
    ax_loss.set_title("(a) cross-entropy loss")
    ax_loss.set_ylabel("CE loss")
    ax_acc.set_title("(b) test accuracy")
    ax_acc.set_ylabel("top-1 (%)")
    for ax in (ax_loss, ax_acc):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return fig
