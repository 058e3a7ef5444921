"""The paper's table layouts: our runs laid out exactly as the DNRT paper's Tables 1, 2, 3, 5 and 6.

A :class:`Layout` fixes the row groups (data sets, or imbalance ratios), the rows (models) and the columns
(response mechanisms, in the paper's order and under the names it prints), all read from the shipped
paper CSVs. :func:`build_paper_table` fills each cell with our runs' mean ± std (n) over seeds, the
paper's number and our Δ to it; a cell no run has reached yet is *pending*.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from importlib import resources

import pandas as pd

from dnrt.tracking_schema import FINAL_VAL_ACC1

from .runs import ALIASES, AnalysisError
from .table import HASH_COL, OverSeeds, load_paper, with_headline

# (act, regularizer) -> the name the paper prints, in the paper's column order
MECHANISMS: dict[tuple[str, str], str] = {
    ("softplus", "none"): "Softplus", ("elu", "none"): "ELU", ("selu", "none"): "SELU", ("silu", "none"): "SiLU",
    ("relu", "none"): "ReLU", ("gelu", "none"): "GELU", ("gdn", "none"): "GDN", ("raa", "none"): "RAA",
    ("relu", "arr"): "ReLU + ARR", ("gelu", "arr"): "GELU + ARR", ("raa", "arr"): "DNRT",
}
# our names -> the names the paper prints
DATASETS = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "imagenet100": "ImageNet-100", "imagenet": "ImageNet-1K"}
MODELS = {"vit_tiny": "ViT-Tiny", "deit_tiny": "DeiT-Tiny", "cait_xxs": "CaiT-XXS", "pvt_tiny": "PVT-Tiny",
          "tnt_small": "TNT-Small", "alexnet": "AlexNet", "vgg11": "VGG11", "resnet18": "ResNet18",
          "mobilenet": "MobileNet", "shufflenet": "ShuffleNet", "resnet32": "ResNet32", "gcn": "GCN",
          "graphsage": "GraphSAGE"}
IMBALANCE = "params.dataset.imbalance_ratio"
LAYOUT_NAMES = ("paper_vit", "paper_cnn", "paper_imagenet1k", "paper_ablation", "paper_longtail", "paper_graph")


@dataclass(frozen=True)
class Group:
    """A row group: its label and the run params (column -> value) that select its runs."""

    label: str
    select: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Layout:
    name: str
    title: str
    groups: tuple[Group, ...]
    models: tuple[str, ...]
    mechanisms: tuple[tuple[str, str], ...]  # (act, regularizer), in column order
    paper: dict = field(hash=False, compare=False)  # (group label, model, (act, reg)) -> value
    paper_metric: str = "top-1 (%)"

    @property
    def labels(self) -> list[str]:
        return [MECHANISMS[m] for m in self.mechanisms]


def _ordered(values) -> list:
    return list(dict.fromkeys(values))


def _from_main(name: str, table: str, title: str) -> Layout:
    paper = load_paper()
    rows = paper[paper["table"] == table]
    mechs = [m for m in MECHANISMS if m in set(zip(rows["act"], rows["regularizer"]))]
    groups = tuple(Group(DATASETS.get(d, d), ((ALIASES["dataset"], d),)) for d in _ordered(rows["dataset"]))
    values = {(DATASETS.get(r.dataset, r.dataset), r.model, (r.act, r.regularizer)): float(r.top1)
              for r in rows.itertuples()}
    return Layout(name, title, groups, tuple(_ordered(rows["model"])), tuple(mechs), values)


def load_extra() -> pd.DataFrame:
    """Tables 4 and 5 (``analysis/paper_results_extra.csv``): table, setting, model, act, regularizer,
    metric, value."""
    with resources.files("analysis").joinpath("paper_results_extra.csv").open() as f:
        return pd.read_csv(f, comment="#", dtype={"value": float, "setting": str})


def _from_extra(name: str, table: str, title: str, groups: dict[str, Group], metric: str) -> Layout:
    extra = load_extra()
    rows = extra[extra["table"] == table]
    mechs = [m for m in MECHANISMS if m in set(zip(rows["act"], rows["regularizer"]))]
    values = {(groups[r.setting].label, r.model, (r.act, r.regularizer)): float(r.value) for r in rows.itertuples()}
    return Layout(name, title, tuple(groups[s] for s in _ordered(rows["setting"])), tuple(_ordered(rows["model"])),
                  tuple(mechs), values, metric)


def get_layout(name: str) -> Layout:
    """One of :data:`LAYOUT_NAMES`."""
    if name == "paper_vit":
        return _from_main(name, "vit", "Table 1: vision transformers, top-1 (%)")
    if name == "paper_cnn":
        return _from_main(name, "cnn", "Table 2: CNNs, top-1 (%)")
    if name == "paper_imagenet1k":
        return _from_main(name, "imagenet1k", "Table 3: ImageNet-1K, top-1 (%)")
    if name == "paper_ablation":
        return _from_main(name, "ablation", "Table 6: RAA and ARR separately (CIFAR-100), top-1 (%)")
    if name == "paper_longtail":
        groups = {f"cifar10_lt_ratio{r}": Group(f"CIFAR-10-LT, ratio {r}", ((ALIASES["dataset"], "cifar10_lt"),
                                                                              (IMBALANCE, str(r))))
                  for r in (10, 50, 100)}
        return _from_extra(name, "longtail", "Table 5 (right): long-tailed CIFAR-10, top-1 (%)", groups, "top-1 (%)")
    if name == "paper_graph":
        groups = {"dgraph": Group("DGraph", ((ALIASES["dataset"], "dgraphfin"),))}
        return _from_extra(name, "graph", "Table 5 (left): graph node classification, AUC (%)", groups, "AUC (%)")
    raise AnalysisError(f"--layout {name!r}: unknown; choose generic, paper or one of {', '.join(LAYOUT_NAMES)}")


@dataclass
class PaperCell(OverSeeds):
    values: list[float]
    seeds: list[str]
    paper: float
    best: bool = False

    @property
    def pending(self) -> bool:
        return not self.values

    @property
    def delta(self) -> float:
        """Ours minus the paper's."""
        return self.mean - self.paper


@dataclass
class PaperTable:
    layout: Layout
    metric: str
    cells: dict[tuple[str, str, tuple[str, str]], PaperCell]  # (group label, model, mechanism)

    def cell(self, group: str, model: str, mech: tuple[str, str]) -> PaperCell:
        return self.cells[(group, model, mech)]

    @property
    def n_runs(self) -> int:
        return sum(c.n for c in self.cells.values())


def _norm(value: object) -> str:
    """Param values as comparable text: '10', '10.0' and 10 are the same imbalance ratio."""
    try:
        return f"{float(str(value)):g}"
    except ValueError:
        return str(value)


def newest_per_config(df: pd.DataFrame) -> pd.DataFrame:
    """A config re-run with force=true counts once: its newest run."""
    if HASH_COL not in df:
        return df
    return df.sort_values("start_time", ascending=False).drop_duplicates(HASH_COL)


def build_paper_table(df: pd.DataFrame, layout: Layout, metric: str = FINAL_VAL_ACC1) -> PaperTable:
    """Every cell of ``layout`` from the runs in ``df`` (one groupby, no per-cell scan). Runs whose
    headline is not top-1 (AUC on graphs) give their headline for a top-1 ``metric``."""
    datasets = {v for g in layout.groups for c, v in g.select if c == ALIASES["dataset"]}
    if datasets and ALIASES["dataset"] in df:  # the metric's name follows the runs of this table only
        df = df[df[ALIASES["dataset"]].isin(datasets)]
    df, metric = with_headline(df, metric)
    mcol = "metrics." + metric
    df = newest_per_config(df[df[mcol].notna()] if mcol in df else df.iloc[0:0])
    keys = [ALIASES["model"], ALIASES["act"], ALIASES["regularizer"]]
    group_cols = _ordered(c for g in layout.groups for c, _ in g.select)
    found: dict[tuple, tuple[list[float], list[str]]] = {}
    if len(df) and all(c in df for c in keys + group_cols):
        cols = keys + group_cols
        seeds = df[ALIASES["seed"]].astype(str) if ALIASES["seed"] in df else pd.Series("0", index=df.index)
        frame = pd.DataFrame({c: df[c].map(_norm) for c in cols}).assign(_v=df[mcol].astype(float), _s=seeds)
        for key, g in frame.groupby(cols, sort=False):
            found[tuple(key)] = (g["_v"].tolist(), g["_s"].tolist())
    cells = {}
    for group in layout.groups:
        chosen = dict(group.select)
        for model in layout.models:
            for mech in layout.mechanisms:
                key = tuple(_norm(v) for v in (model, *mech, *(chosen[c] for c in group_cols)))
                values, seeds = found.get(key, ([], []))
                cells[(group.label, model, mech)] = PaperCell(values, seeds,
                                                              layout.paper.get((group.label, model, mech), math.nan))
    higher = "loss" not in metric
    for group in layout.groups:
        for model in layout.models:
            row = [cells[(group.label, model, m)] for m in layout.mechanisms]
            done = [c.mean for c in row if not c.pending]
            if done:
                best = max(done) if higher else min(done)
                for c in row:
                    c.best = not c.pending and c.mean == best
    return PaperTable(layout, metric, cells)


def matching_layouts(df: pd.DataFrame, metric: str) -> list[PaperTable]:
    """``--layout paper``: every paper table at least one of the runs fills a cell of."""
    tables = [build_paper_table(df, get_layout(name), metric) for name in LAYOUT_NAMES]
    return [t for t in tables if t.n_runs]
