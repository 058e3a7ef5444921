"""``python -m analysis.seed_curves``: Figure-3-style curves averaged over seeds.

One row of panels per model: train CE (``train/loss_ce``, without the ARR term), validation CE
(``val/loss``) and validation top-1 (``val/acc1``) per epoch, one line per act x regularizer cell,
the mean over seeds with a band of ± one sample std. ``analysis.paper_figures fig3`` draws one pair
of runs that differ only in the regularizer; this one reads a seed sweep whose cells may differ in
both (e.g. ``mechanism=gelu,dnrt``). Writes ``seed_curves.{png,pdf}`` and ``seed_curves.csv``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
from matplotlib.ticker import MaxNLocator

from dnrt.tracking_schema import TRAIN_LOSS_CE, VAL_ACC1, VAL_LOSS

from .figures import plt, save
from .runs import ALIASES, AnalysisError, add_query_args, fetch_runs, metric_history, open_client, query_from_args

KEYS = ((TRAIN_LOSS_CE, "train CE"), (VAL_LOSS, "val CE"), (VAL_ACC1, "val top-1 (%)"))


def histories(client, runs: pd.DataFrame) -> pd.DataFrame:
    """Long frame ``model, cell, seed, key, step, value`` of the curve metrics of ``runs``."""
    meta = pd.DataFrame({
        "run_id": runs["run_id"],
        "model": runs[ALIASES["model"]],
        "cell": runs[ALIASES["act"]] + "+" + runs[ALIASES["regularizer"]],
        "seed": runs[ALIASES["seed"]],
    })
    frames = [metric_history(client, list(meta["run_id"]), key).assign(key=key) for key, _ in KEYS]
    return pd.concat(frames, ignore_index=True).merge(meta, on="run_id")


def summarise(long: pd.DataFrame) -> pd.DataFrame:
    """Mean, sample std and seed count per model, cell, metric and epoch (MLflow step = epoch)."""
    g = long.groupby(["model", "cell", "key", "step"])["value"]
    return g.agg(mean="mean", std="std", n="count").reset_index()


def draw(stats: pd.DataFrame):
    models = sorted(stats["model"].unique())
    fig, axes = plt.subplots(len(models), len(KEYS), figsize=(4.2 * len(KEYS), 3.0 * len(models)), squeeze=False)
    for r, model in enumerate(models):
        for c, (key, label) in enumerate(KEYS):
            ax = axes[r][c]
            for cell, s in stats[(stats["model"] == model) & (stats["key"] == key)].groupby("cell"):
                s = s.sort_values("step")
                epoch = s["step"]  # MLflow step = epoch, 1-based
                line, = ax.plot(epoch, s["mean"], marker="o", ms=3, label=f"{cell} (n={s['n'].min()})")
                ax.fill_between(epoch, s["mean"] - s["std"].fillna(0), s["mean"] + s["std"].fillna(0),
                                color=line.get_color(), alpha=0.2)
            ax.set_title(f"{model}: {label}", fontsize=10)
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
        axes[r][-1].legend(fontsize=8)
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m analysis.seed_curves", description=__doc__.splitlines()[0])
    add_query_args(p)
    p.add_argument("--out", default="outputs/figures", help="output directory (default: outputs/figures)")
    p.add_argument("--formats", default="png,pdf", help="comma list of file formats (default: png,pdf)")
    args = p.parse_args(argv)
    query = query_from_args(args)
    try:
        client = open_client(query)
        runs, _ = fetch_runs(query, client)
        stats = summarise(histories(client, runs))
    except AnalysisError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    paths = save(draw(stats), out, "seed_curves", tuple(args.formats.split(",")))
    stats.to_csv(out / "seed_curves.csv", index=False)
    for path in [*paths, out / "seed_curves.csv"]:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
