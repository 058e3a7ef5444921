"""``python -m analysis.paper_figures fig2|fig3``: the paper's Figures 2 and 3 from an experiment's runs.

* ``fig2``: response distributions per channel (the first ``--channels``), runs reloaded from their
  checkpoints. (a) ``fig2a``: the MLP activation's output on the class token (the token mean where a
  model has none) in ``--layers`` (1-based), a run without RAA (its base activation, e.g. GELU) beside
  its twin with RAA; (b) ``fig2b``: the aggregated response at ARR's last tap for ``--classes`` (CIFAR-10:
  airplane, bird, dog; other data sets: the first three), a run without ARR beside its twin with ARR.
  ``fig2.npz`` holds the plotted values (``a_layer{k}_{without,with}``, ``b_class{k}_{without,with}``).
* ``fig3``: a run without ARR and its twin with ARR: (a) train CE (``train/loss_ce``, without the ARR
  term) and test CE (``val/loss``) per epoch, (b) test top-1 (``val/acc1``); ``fig3.csv`` the series.
  The runs of ``python launch.py experiment=paper_fig3`` (weak augmentation) are preferred.

Twins differ only in the act (or regularizer) params and execution settings. Exit code 2, with the
reason, when the experiment lacks the runs a figure needs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow import MlflowClient
from rich.console import Console

from dnrt.tracking_schema import TRAIN_LOSS_CE, VAL_ACC1, VAL_LOSS, is_execution_key

from . import paper_draw
from .ablation import EXIT_NO_DATA
from .figures import save
from .responses import Collected, collect
from .runs import ALIASES, AnalysisError, add_query_args, fetch_runs, metric_history, open_client, query_from_args

ACT, REG = ALIASES["act"], ALIASES["regularizer"]
CIFAR10_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
PAPER_CLASSES = {"cifar10": (0, 2, 5), "cifar10_lt": (0, 2, 5)}  # airplane, bird, dog
PAPER_LAYERS = (1, 4, 10)
FIG3_KEYS = (TRAIN_LOSS_CE, VAL_LOSS, VAL_ACC1)
MAKE_RUNS = "python launch.py experiment=paper_fig3"


def _col(df: pd.DataFrame, key: str) -> pd.Series:
    col = key if key.startswith("params.") else f"params.{key}"
    return df[col].fillna("").astype(str) if col in df else pd.Series("", index=df.index)


def same_except(df: pd.DataFrame, row: pd.Series, group: str) -> pd.Series:
    """Runs whose params equal ``row``'s except ``group``'s (``act``, ``regularizer``) and the execution
    settings (docs/design.md §5)."""
    mask = pd.Series(True, index=df.index)
    for col in df.columns:
        key = col.removeprefix("params.")
        if not col.startswith("params.") or key.startswith(group + ".") or is_execution_key(key):
            continue
        value = row.get(col)
        mask &= df[col].fillna("<unset>").astype(str) == ("<unset>" if pd.isna(value) else str(value))
    return mask


def find_pair(df: pd.DataFrame, group: str, is_with: pd.Series, baseline: Callable[[pd.Series], pd.Series],
              prefer: list[pd.Series]) -> tuple[pd.Series, pd.Series] | None:
    """(without, with): the first run of ``is_with`` (ordered by the ``prefer`` masks, then the newest)
    that has a twin differing only in ``group`` and matching ``baseline(row)`` (a mask over ``df``)."""
    order = df.assign(**{f"_p{i}": ~m for i, m in enumerate(prefer)})
    keys = [f"_p{i}" for i in range(len(prefer))] + ["start_time"]
    order = order[is_with].sort_values(keys, ascending=[True] * len(prefer) + [False])
    for _, row in order.iterrows():
        hits = df[same_except(df, row, group) & baseline(row)]
        if len(hits):
            return hits.sort_values("start_time", ascending=False).iloc[0], df.loc[row.name]
    return None


def arr_pair(df: pd.DataFrame, prefer_flip: bool = False) -> tuple[pd.Series, pd.Series] | None:
    """A run with ARR and its twin without (GELU runs first; with ``prefer_flip``, weak augmentation first)."""
    prefer = [_col(df, "dataset.augment") == "flip"] if prefer_flip else []
    return find_pair(df, "regularizer", _col(df, REG) == "arr", lambda _: _col(df, REG) == "none",
                     prefer + [_col(df, ACT) == "gelu"])


def raa_pair(df: pd.DataFrame) -> tuple[pd.Series, pd.Series] | None:
    """A RAA run and its twin with RAA's base activation (the paper's RAA, without ARR, first)."""
    base = _col(df, "act.base")
    is_raa = _col(df, ACT).str.startswith("raa") & (base != "")
    return find_pair(df, "act", is_raa, lambda row: _col(df, ACT) == str(row.get("params.act.base")),
                     [_col(df, REG) == "none", _col(df, ACT) == "raa"])


def missing(what: str, df: pd.DataFrame, query_text: str) -> AnalysisError:
    acts = ", ".join(sorted(set(_col(df, ACT)))) or "none"
    regs = ", ".join(sorted(set(_col(df, REG)))) or "none"
    return AnalysisError(f"{query_text} has no {what} ({len(df)} FINISHED runs; acts: {acts}; regularizers: "
                         f"{regs}); make them, e.g. {MAKE_RUNS}")


def _label(row: pd.Series) -> str:
    return str(row["run_name"])


# ----------------------------------------------------------------------------------------------- Figure 2

def class_names(dataset: str) -> Callable[[int], str]:
    if dataset in PAPER_CLASSES:
        return lambda k: CIFAR10_NAMES[k] if 0 <= k < len(CIFAR10_NAMES) else f"class {k}"
    return lambda k: f"class {k}"


def default_classes(dataset: str) -> tuple[int, ...]:
    """The paper's airplane, bird and dog on CIFAR-10; the first three classes elsewhere."""
    return PAPER_CLASSES.get(dataset, (0, 1, 2))


def layer_rows(without: Collected, with_: Collected, layers: list[int], channels: int) -> list[paper_draw.ViolinRow]:
    return [paper_draw.ViolinRow(f"layer {k}", without.mlp[k][:, :channels], with_.mlp[k][:, :channels])
            for k in layers]


def class_rows(without: Collected, with_: Collected, classes: list[int], name: Callable[[int], str],
               channels: int) -> list[paper_draw.ViolinRow]:
    rows = []
    for k in classes:
        parts = [c.responses[c.labels == k][:, :channels] for c in (without, with_)]
        empty = [c.run_name for c, p in zip((without, with_), parts) if not len(p)]
        if empty:
            raise AnalysisError(f"class {k} has no sample in the collected validation batches of "
                                f"{', '.join(empty)}; raise --batches or choose --classes")
        rows.append(paper_draw.ViolinRow(name(k), *parts))
    return rows


def fig2(client: MlflowClient, df: pd.DataFrame, args: argparse.Namespace, query_text: str,
         formats: tuple[str, ...]) -> list[Path]:
    parts = sorted(set(args.parts.split(",")))
    pairs = {"a": raa_pair(df) if "a" in parts else None, "b": arr_pair(df) if "b" in parts else None}
    need = {"a": "a RAA run and its twin with the base activation", "b": "a run with ARR and its twin without"}
    lacking = [f"pair for Figure 2{p} ({need[p]})" for p in parts if pairs[p] is None]
    if lacking:
        raise missing(" and no ".join(lacking), df, query_text)
    layers = [int(k) for k in args.layers.split(",")]
    cache: dict[str, Collected] = {}
    for p in parts:
        for row in pairs[p]:
            rid = row["run_id"]
            if rid not in cache:
                cache[rid] = collect(client, rid, args.batches, args.device, layers if p == "a" else ())
            elif p == "a" and not cache[rid].mlp:
                cache[rid] = collect(client, rid, args.batches, args.device, layers)
    out, paths, arrays = Path(args.out), [], {}
    for p in parts:
        without, with_ = (cache[r["run_id"]] for r in pairs[p])
        names = (without.run_name, with_.run_name)
        if p == "a":
            token = "class token" if without.pooling == "cls" else f"{without.pooling} (no class token)"
            rows = layer_rows(without, with_, layers, args.channels)
            keys = [f"layer{k}" for k in layers]
            title = f"(a) MLP activation responses on the {token}, first {args.channels} channels"
            fig = paper_draw.violin_grid(rows, "RAA", title, names)
        else:
            dataset = str(without.cfg.dataset.name)
            classes = [int(k) for k in args.classes.split(",")] if args.classes else list(default_classes(dataset))
            rows = class_rows(without, with_, classes, class_names(dataset), args.channels)
            keys = [f"class{k}" for k in classes]
            title = f"(b) aggregated responses at {without.tap}, first {args.channels} channels"
            fig = paper_draw.violin_grid(rows, "ARR", title, names)
        for key, r in zip(keys, rows):
            arrays[f"{p}_{key}_without"], arrays[f"{p}_{key}_with"] = r.without, r.with_
        paths += save(fig, out, f"fig2{p}", formats)
        print(f"Figure 2{p}: without {names[0]} ({pairs[p][0]['run_id']}), with {names[1]} ({pairs[p][1]['run_id']})")
    np.savez(out / "fig2.npz", **arrays)
    return [*paths, out / "fig2.npz"]


# ----------------------------------------------------------------------------------------------- Figure 3

def fig3_history(client: MlflowClient, without: pd.Series, with_: pd.Series) -> pd.DataFrame:
    """Long frame ``run_id, key, step, value`` of the Figure 3 metrics; a run lacking one is an error."""
    frames = []
    for key in FIG3_KEYS:
        h = metric_history(client, [without["run_id"], with_["run_id"]], key)
        for row in (without, with_):
            if not (h["run_id"] == row["run_id"]).any():
                raise AnalysisError(f"run {row['run_name']} ({row['run_id']}) logged no {key} per epoch")
        frames.append(h.assign(key=key))
    return pd.concat(frames, ignore_index=True)[["run_id", "key", "step", "value"]]


def fig3(client: MlflowClient, df: pd.DataFrame, args: argparse.Namespace, query_text: str,
         formats: tuple[str, ...]) -> list[Path]:
    pair = arr_pair(df, prefer_flip=True)
    if pair is None:
        raise missing("pair of runs that differ only in the regularizer (none and arr)", df, query_text)
    without, with_ = pair
    history = fig3_history(client, without, with_)
    labels = {without["run_id"]: f"without ARR ({_label(without)})", with_["run_id"]: f"with ARR ({_label(with_)})"}
    fig = paper_draw.curves(history, labels)
    augment = str(without.get("params.dataset.augment", ""))
    fig.suptitle(f"{without.get('params.model.name', '')} on {without.get('params.dataset.name', '')}, "
                 f"augment={augment}" + ("" if augment == "flip" else " (the paper uses flip only)"), fontsize=10)
    out = Path(args.out)
    paths = save(fig, out, "fig3", formats)
    history.assign(series=history["run_id"].map(labels)).to_csv(out / "fig3.csv", index=False)
    print(f"Figure 3: without ARR {_label(without)} ({without['run_id']}), with ARR {_label(with_)} "
          f"({with_['run_id']})")
    return [*paths, out / "fig3.csv"]


# ------------------------------------------------------------------------------------------------ the CLI

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m analysis.paper_figures",
                                description=__doc__.splitlines()[0].replace("``", ""))
    sub = p.add_subparsers(dest="figure", required=True)
    for name, text in (("fig2", "response distributions without and with RAA / ARR"),
                       ("fig3", "train/test loss and test top-1 per epoch without and with ARR")):
        s = sub.add_parser(name, help=text)
        add_query_args(s)
        s.add_argument("--out", default="outputs/figures", help="output directory (default: outputs/figures)")
        s.add_argument("--formats", default="png,pdf", help="comma list of file formats (default: png,pdf)")
        if name == "fig2":
            s.add_argument("--layers", default=",".join(map(str, PAPER_LAYERS)),
                           help="1-based MLP layers of part (a) (default: 1,4,10 as the paper)")
            s.add_argument("--classes", default=None,
                           help="class labels of part (b) (default: 0,2,5 = airplane,bird,dog on CIFAR-10, "
                                "else 0,1,2)")
            s.add_argument("--channels", type=int, default=50, help="first channels shown (default: 50)")
            s.add_argument("--parts", default="a,b", choices=("a", "b", "a,b", "b,a"), help="default: a,b")
            s.add_argument("--batches", type=int, default=8, help="validation batches per run (default: 8)")
            s.add_argument("--device", default="cpu", help="torch device for the reloaded models (default: cpu)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    err = Console(stderr=True)
    formats = tuple(f.strip() for f in args.formats.split(",") if f.strip())
    try:
        query = query_from_args(args)
        client = open_client(query)
        df, _ = fetch_runs(query, client)
        make = fig2 if args.figure == "fig2" else fig3
        paths = make(client, df, args, query.describe(), formats)
    except (AnalysisError, ValueError) as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        return EXIT_NO_DATA
    for path in paths:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
