"""analysis/: the ablation table and the plots, checked against a real sweep in a temp MLflow store.

The expected numbers are computed here by hand from the runs as MlflowClient returns them; the CLIs
are called through their ``main(argv)`` (the same code ``python -m`` runs) and, for exit codes, as
real subprocesses.
"""

from __future__ import annotations

import csv
import itertools
import math
import statistics
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis import ablation, plots
from analysis.responses import checkpoint_path, collect
from analysis.runs import AnalysisError, RunQuery, fetch_runs
from analysis.table import build_table, load_paper, paired_ci
from dnrt.tracking_schema import ACT_TAG, CHECKPOINT_TAG, tag_column
from tests.harness.config import ROOT
from tests.harness.store import ACTS, MODELS, REGS, SEEDS, Store
from tests.test_train import assert_run_schema

PAPER_CSV = ROOT / "analysis" / "paper_results.csv"
METRIC = "final/val_acc1"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FIGURES = ("accuracy", "val_curves", "responses", "response_spread", "raa_shifts")


def _key(run) -> tuple[str, str, str]:
    p = run.data.params
    return p["model.name"], p["act.name"], p["regularizer.name"]


def hand_cells(store: Store) -> dict[tuple[str, str, str], list[float]]:
    """final/val_acc1 per (model, act, regularizer), straight from MLflow."""
    cells = defaultdict(list)
    for run in store.runs(status="FINISHED"):
        cells[_key(run)].append(run.data.metrics[METRIC])
    return cells


def base_args(store: Store, out: Path) -> list[str]:
    return ["--tracking-uri", store.uri, "--experiment", store.experiment, "--out", str(out)]


def read_csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"model": str, "act": str, "regularizer": str})


def paper_numbers(dataset: str) -> dict[tuple[str, str, str], float]:
    """The shipped paper CSV read with the csv module (independently of analysis.table)."""
    with PAPER_CSV.open() as f:
        rows = list(csv.DictReader(line for line in f if not line.startswith("#")))
    return {(r["model"], r["act"], r["regularizer"]): float(r["top1"]) for r in rows if r["dataset"] == dataset}


def test_every_sweep_run_has_the_schema(sweep_store: Store) -> None:
    """The 16 runs, launched by ``launch.py -m``, each carry the MLflow schema (ReLU runs through
    ``train()``: tests/test_train.py)."""
    runs = sweep_store.runs(status="FINISHED")
    cells = [(r.data.params["model.name"], r.data.params["act.name"], r.data.params["regularizer.name"],
              int(r.data.params["seed"])) for r in runs]
    assert sorted(cells) == sorted(itertools.product(MODELS, ACTS, REGS, SEEDS))
    for run, (model, act, reg, _) in zip(runs, cells):
        assert_run_schema(sweep_store.client, run, model, act, reg)


def test_table_matches_the_runs(sweep_store: Store, tmp_path: Path, capsys) -> None:
    assert ablation.main(base_args(sweep_store, tmp_path) + ["--no-log"]) == 0
    printed = capsys.readouterr().out
    got = read_csv(tmp_path / "ablation.csv").set_index(["model", "act", "regularizer"])
    cells = hand_cells(sweep_store)
    assert len(got) == len(cells) == 8
    for key, values in cells.items():
        row = got.loc[key]
        assert row["n"] == len(values) == len(SEEDS)
        assert row["mean"] == pytest.approx(statistics.mean(values), abs=1e-9)
        assert row["std"] == pytest.approx(statistics.stdev(values), abs=1e-9)
        base = statistics.mean(cells[(key[0], "gelu", "none")])
        if key[1:] == ("gelu", "none"):
            assert bool(row["baseline"]) and math.isnan(row["delta"])
        else:
            assert not row["baseline"]
            assert row["delta"] == pytest.approx(statistics.mean(values) - base, abs=1e-9)
        assert math.isnan(row["ci_low"]) and math.isnan(row["ci_high"])  # 2 seeds: no CI
        assert math.isnan(row["paper"])  # digits is not in the paper
        best = max(statistics.mean(v) for k, v in cells.items() if k[0] == key[0])
        assert bool(row["best"]) == (statistics.mean(values) == best)
        assert f"{statistics.mean(values):.2f}" in printed
    assert all(m in printed for m in MODELS) and "Δ vs baseline" in printed


def test_single_run_cells_have_a_blank_std(sweep_store: Store, tmp_path: Path) -> None:
    assert ablation.main(base_args(sweep_store, tmp_path) + ["--filter", "seed=1", "--no-log"]) == 0
    got = read_csv(tmp_path / "ablation.csv")
    assert (got["n"] == 1).all() and got["std"].isna().all()
    body = [line.split("|")[3:-1] for line in (tmp_path / "ablation.md").read_text().splitlines()
            if line.startswith("| ") and "mean ± std (n)" in line]
    assert len(body) == len(MODELS) and all("±" not in cell and "(1)" in cell for row in body for cell in row)


@pytest.mark.parametrize("dataset", ["cifar100", "cifar10"])
def test_paper_column_joins_the_paper_csv(sweep_store: Store, tmp_path: Path, dataset: str) -> None:
    args = base_args(sweep_store, tmp_path) + ["--paper-dataset", dataset, "--no-log"]
    assert ablation.main(args) == 0
    got = read_csv(tmp_path / "ablation.csv")
    expected = paper_numbers(dataset)
    filled = 0
    for _, row in got.iterrows():
        want = expected.get((row["model"], row["act"], row["regularizer"]))
        if want is None:
            assert math.isnan(row["paper"]), row.to_dict()
        else:
            assert row["paper"] == pytest.approx(want)
            filled += 1
    if dataset == "cifar100":  # table 6 (the ablation) has every cell of our grid
        assert filled == 8 and got.set_index(["model", "act", "regularizer"]).loc[("vit_tiny", "raa", "arr"),
                                                                                 "paper"] == 71.4
    else:  # tables 1 and 2: only the baselines and DNRT, so the mixed cells stay blank
        assert 0 < filled < 8


def test_outputs_are_written_and_logged_to_the_parent(sweep_store: Store, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert ablation.main(base_args(sweep_store, out) + ["--sweep-id", sweep_store.sweep.sweep_id]) == 0
    md, tex = (out / "ablation.md").read_text(), (out / "ablation.tex").read_text()
    assert "| model |" in md and "| resnet18 | mean ± std (n) |" in md and "**" in md  # best cell in bold
    for needle in (r"\begin{tabular}", r"\toprule", r"\midrule", r"\bottomrule", r"\pm", "vit\\_tiny"):
        assert needle in tex
    assert tex.count(r"\mathbf{") == int(read_csv(out / "ablation.csv")["best"].sum()) >= len(MODELS)
    client = sweep_store.client
    logged = {a.path for a in client.list_artifacts(sweep_store.sweep.parent_run_id, "ablation")}
    assert logged == {"ablation/ablation.md", "ablation/ablation.tex", "ablation/ablation.csv"}
    copy = client.download_artifacts(sweep_store.sweep.parent_run_id, "ablation/ablation.csv", str(tmp_path))
    assert Path(copy).read_text() == (out / "ablation.csv").read_text()


def test_other_pivots_and_filters(sweep_store: Store, tmp_path: Path) -> None:
    args = base_args(sweep_store, tmp_path) + ["--rows", "model,act", "--cols", "regularizer.name",
                                               "--baseline", "regularizer=none",
                                               "--filter", f"{tag_column(ACT_TAG)}=raa",
                                               "--filter", "optim.opt=adamw", "--no-log"]
    assert ablation.main(args) == 0
    got = read_csv(tmp_path / "ablation.csv")
    # a full param key names the same column as its short name
    assert set(got["act"]) == {"raa"} and set(got.columns) >= {"model", "act", "regularizer"}
    cells = hand_cells(sweep_store)
    for _, row in got.iterrows():
        values = cells[(row["model"], row["act"], row["regularizer"])]
        assert row["mean"] == pytest.approx(statistics.mean(values))
        assert row["baseline"] == (row["regularizer"] == "none")
        if row["regularizer"] == "arr":
            base = statistics.mean(cells[(row["model"], "raa", "none")])
            assert row["delta"] == pytest.approx(statistics.mean(values) - base)


def test_ci_needs_three_paired_seeds() -> None:
    """The CI path on hand-made runs (the real sweep has 2 seeds): t interval and bootstrap."""
    seeds = ["0", "1", "2", "3"]
    base, dnrt = [70.0, 71.0, 69.5, 70.5], [72.0, 72.5, 71.0, 73.5]
    rows = [{"run_id": f"{a}{s}", "run_name": f"{a}{s}", "start_time": i, "params.model.name": "m",
             "params.act.name": a, "params.regularizer.name": r, "params.seed": s, f"metrics.{METRIC}": v}
            for i, (a, r, vals) in enumerate([("gelu", "none", base), ("raa", "arr", dnrt)])
            for s, v in zip(seeds, vals)]
    df = pd.DataFrame(rows)
    table = build_table(df, ["model"], ["act", "regularizer"], METRIC, {"act": "gelu", "regularizer": "none"})
    cell = table.cell(("m",), ("raa", "arr"))
    diffs = np.subtract(dnrt, base)
    want = stats.ttest_1samp(diffs, 0.0).confidence_interval(0.95)
    assert cell.ci == pytest.approx((want.low, want.high))
    assert cell.delta == pytest.approx(diffs.mean())
    lo, hi = paired_ci(list(diffs), "bootstrap")
    assert diffs.min() <= lo < diffs.mean() < hi <= diffs.max()
    assert paired_ci(list(diffs), "bootstrap") == (lo, hi)  # seeded: the same table twice
    two = build_table(df[df["params.seed"].isin(["0", "1"])], ["model"], ["act", "regularizer"], METRIC,
                      {"act": "gelu", "regularizer": "none"})
    assert two.cell(("m",), ("raa", "arr")).ci is None


def run_cli(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)


def test_empty_store_and_no_match_exit_2(sweep_store: Store, tmp_path: Path, capsys) -> None:
    missing = run_cli("analysis.ablation", "--tracking-uri", f"sqlite:///{tmp_path / 'none.db'}",
                      "--out", str(tmp_path))
    assert missing.returncode == 2 and "no MLflow store" in missing.stderr and "Traceback" not in missing.stderr
    assert not (tmp_path / "none.db").exists()  # reading never creates a store
    assert plots.main([*base_args(sweep_store, tmp_path), "--filter", "model=alexnet"]) == 2
    assert "no FINISHED runs match" in capsys.readouterr().err and not list(tmp_path.glob("*.png"))
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    from mlflow import MlflowClient

    MlflowClient(empty).search_experiments()  # creates the schema: a store with no experiment of ours
    cases = [
        (["--tracking-uri", empty], "no experiment named 'dnrt'"),
        (["--tracking-uri", sweep_store.uri, "--experiment", "nope"], "no experiment named 'nope'"),
        (base_args(sweep_store, tmp_path)[:4] + ["--dataset", "cifar100"], "no FINISHED runs match"),
        (base_args(sweep_store, tmp_path)[:4] + ["--sweep-id", "x"], "no FINISHED runs match"),
        (base_args(sweep_store, tmp_path)[:4] + ["--rows", "colour"], "unknown key(s) colour"),
        (base_args(sweep_store, tmp_path)[:4] + ["--filter", "nokey"], "expected KEY=VALUE"),
    ]
    for argv, message in cases:
        assert ablation.main(argv + ["--out", str(tmp_path / "x")]) == 2, argv
        err = capsys.readouterr().err
        assert message in err.replace("\n", " "), (argv, err)
    assert not (tmp_path / "x").exists()


def test_plots_are_valid_png_and_pdf(sweep_store: Store, tmp_path: Path) -> None:
    out = tmp_path / "plots"
    assert plots.main(base_args(sweep_store, out) + ["--sweep-id", sweep_store.sweep.sweep_id, "--batches", "2"]) == 0
    for stem in FIGURES:
        png, pdf = out / f"{stem}.png", out / f"{stem}.pdf"
        assert png.read_bytes()[:8] == PNG_MAGIC
        image = mpimg.imread(png)
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
        assert image.std() > 0.01  # something drawn, not a blank canvas
        data = pdf.read_bytes()
        assert data.startswith(b"%PDF") and b"%%EOF" in data[-64:] and len(data) > 2000
    logged = {a.path for a in sweep_store.client.list_artifacts(sweep_store.sweep.parent_run_id, "plots")}
    assert {f"plots/{s}.{e}" for s in FIGURES for e in ("png", "pdf")} <= logged


def test_runs_picked_for_the_figures_are_twins(sweep_store: Store) -> None:
    client = sweep_store.client
    df, _ = fetch_runs(RunQuery(sweep_store.uri, sweep_store.experiment), client)
    without, with_arr = (df.set_index("run_id").loc[i] for i in plots.pick_runs(df, client, []))
    assert (with_arr["params.act.name"], with_arr["params.regularizer.name"]) == ("raa", "arr")
    assert without["params.regularizer.name"] == "none"
    for key in ("params.model.name", "params.act.name", "params.seed", "params.dataset.name"):
        assert without[key] == with_arr[key]
    gelu_arr = df[(df["params.act.name"] == "gelu") & (df["params.regularizer.name"] == "arr")].iloc[0]
    chosen, mate = plots.pick_runs(df, client, [gelu_arr["run_id"]])
    mate = df.set_index("run_id").loc[mate]
    assert chosen == gelu_arr["run_id"] and mate["params.regularizer.name"] == "none"
    assert (mate["params.model.name"], mate["params.act.name"], mate["params.seed"]) == (
        gelu_arr["params.model.name"], "gelu", gelu_arr["params.seed"])


def test_reloaded_model_reproduces_the_logged_accuracy(sweep_store: Store) -> None:
    """The checkpoint artifact, config and ARR memory really are the run's: the reloaded model scores the
    run's own final/val_acc1 on the whole validation split."""
    client = sweep_store.client
    runs = {(r.data.params["model.name"], r.data.params["act.name"], r.data.params["regularizer.name"],
             r.data.params["seed"]): r for r in sweep_store.runs(status="FINISHED")}
    dnrt = runs[("vit_tiny", "raa", "arr", "0")]
    got = collect(client, dnrt.info.run_id, batches=10_000)
    assert 100.0 * np.mean(got.predictions == got.labels) == pytest.approx(dnrt.data.metrics[METRIC], abs=1e-6)
    assert got.responses.shape == (len(got.labels), 192) and got.tap.startswith("blocks.")
    assert len(got.shifts) == 12 and all(len(v) and np.std(v) > 0 for v in got.shifts.values())
    assert got.memory is not None and got.memory.shape == (10, 192) and np.abs(got.memory).sum() > 0
    plain = collect(client, runs[("resnet18", "gelu", "none", "1")].info.run_id, batches=1)
    assert plain.shifts == {} and plain.memory is None and plain.responses.shape[1] == 512


class _NoArtifacts:
    """A client whose runs logged no artifacts: the checkpoint must come from the dnrt.checkpoint tag."""

    def list_artifacts(self, run_id: str, path: str | None = None) -> list:
        return []


def test_checkpoint_falls_back_to_the_tag(sweep_store: Store, tmp_path: Path) -> None:
    run = sweep_store.runs(status="FINISHED")[0]
    path = checkpoint_path(_NoArtifacts(), run, tmp_path)
    assert path == Path(run.data.tags[CHECKPOINT_TAG]) and path.is_file()
    moved = SimpleNamespace(info=run.info, data=SimpleNamespace(tags={CHECKPOINT_TAG: str(tmp_path / "gone.pt")}))
    with pytest.raises(AnalysisError, match="has no checkpoint"):
        checkpoint_path(_NoArtifacts(), moved, tmp_path)


def test_paper_csv_names_its_source() -> None:
    head = PAPER_CSV.read_text().splitlines()[0]
    assert head.startswith("#") and "ICLR 2024" in head and "1, 2, 3 and 6" in head
    paper = load_paper()
    assert list(paper.columns) == ["table", "dataset", "model", "act", "regularizer", "top1"] and len(paper) > 200
