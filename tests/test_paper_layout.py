"""Reading a paper-scale sweep: the paper's table layouts, the heatmap above a dozen series, partial
success of ``analysis.plots`` and the one-page report (opened in headless Chromium).

The stores are generated (``dnrt.testing.generate_sweep_store``): runs shaped like a finished ``paper_vit``
sweep with seeds, some cells left out (pending). Expected numbers come from the runs as MlflowClient
returns them and from the paper CSVs read with the csv module.
"""

from __future__ import annotations

import base64
import csv
import io
import shutil
import statistics
from collections import defaultdict
from pathlib import Path

import matplotlib.image as mpimg
import pandas as pd
import pytest

from analysis import ablation, plots, report
from analysis.heatmap import accuracy_figure, facet_tables
from analysis.runs import RunQuery, fetch_runs
from analysis.table import build_table
from dnrt.testing import generate_sweep_store
from dnrt.tracking_schema import KIND_TAG, SWEEP_KIND
from tests.harness.config import ROOT
from tests.harness.hooks import module_fixture
from tests.harness.store import Store, migrated_store

METRIC = "final/val_acc1"
VITS = ("vit_tiny", "deit_tiny", "cait_xxs", "pvt_tiny", "tnt_small")
DATASETS = ("cifar10", "cifar100", "imagenet100")
# the seven mechanisms we can train (the paper's GDN has no runs: pending)
OURS = (("softplus", "none"), ("elu", "none"), ("selu", "none"), ("silu", "none"), ("relu", "none"),
        ("gelu", "none"), ("raa", "arr"))
NOT_RUN = ("imagenet100", "tnt_small")  # a (dataset, model) row the sweep has not reached: pending
PRINTED = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "imagenet100": "ImageNet-100"}
COLUMNS = ["Softplus", "ELU", "SELU", "SiLU", "ReLU", "GELU", "GDN", "DNRT"]  # Table 1 as printed


def _cell(dataset: str, model: str, act: str, reg: str) -> dict[str, str]:
    return {"dataset.name": dataset, "model.name": model, "act.name": act, "regularizer.name": reg}


@module_fixture
def vit_store(tmp_path_factory: pytest.TempPathFactory, migrated_db: Path) -> Store:
    store = migrated_store(tmp_path_factory.mktemp("paper_vit"), migrated_db, "paper-vit")
    cells = [_cell(d, m, a, r) for d in DATASETS for m in VITS for a, r in OURS if (d, m) != NOT_RUN]
    store.sweep = generate_sweep_store(store.uri, store.experiment, cells, [0, 1, 2], failed=2)
    return store


def runs_by_cell(store: Store) -> dict[tuple[str, str, str, str], list[float]]:
    """final/val_acc1 per (dataset, model, act, regularizer) of the FINISHED runs, from MlflowClient."""
    from mlflow import MlflowClient

    out = defaultdict(list)
    for run in MlflowClient(store.uri).search_runs([store.experiment_id], max_results=5000):
        p = run.data.params
        if run.info.status == "FINISHED" and run.data.tags.get(KIND_TAG) != SWEEP_KIND:
            out[(p["dataset.name"], p["model.name"], p["act.name"], p["regularizer.name"])].append(
                run.data.metrics[METRIC])
    return out


def paper_table(table: str) -> list[dict[str, str]]:
    with (ROOT / "analysis" / "paper_results.csv").open() as f:
        return [r for r in csv.DictReader(line for line in f if not line.startswith("#")) if r["table"] == table]


def args(store: Store, out: Path) -> list[str]:
    return ["--tracking-uri", store.uri, "--experiment", store.experiment, "--out", str(out)]


def test_paper_vit_layout_is_table_1(vit_store: Store, tmp_path: Path) -> None:
    assert ablation.main(args(vit_store, tmp_path) + ["--layout", "paper_vit", "--no-log"]) == 0
    got = pd.read_csv(tmp_path / "paper_vit.csv", dtype={"group": str, "model": str})
    want = paper_table("vit")
    # every cell of Table 1, in the paper's order (row groups, rows, columns)
    assert [(r["group"], r["model"], r["act"], r["regularizer"]) for _, r in got.iterrows()] == \
        [(PRINTED[w["dataset"]], w["model"], w["act"], w["regularizer"]) for w in want]
    assert list(dict.fromkeys(got["mechanism"])) == COLUMNS
    runs = runs_by_cell(vit_store)
    for (_, row), w in zip(got.iterrows(), want):
        values = runs.get((w["dataset"], w["model"], w["act"], w["regularizer"]), [])
        assert row["paper"] == pytest.approx(float(w["top1"]))
        assert row["n"] == len(values) and bool(row["pending"]) == (not values)
        if values:
            assert row["mean"] == pytest.approx(statistics.mean(values), abs=1e-9)
            assert row["std"] == pytest.approx(statistics.stdev(values), abs=1e-9)
            assert row["delta"] == pytest.approx(statistics.mean(values) - float(w["top1"]), abs=1e-9)
            others = [statistics.mean(v) for k, v in runs.items() if k[:2] == (w["dataset"], w["model"])]
            assert bool(row["best"]) == (statistics.mean(values) == max(others))
        else:
            assert w["act"] == "gdn" or (w["dataset"], w["model"]) == NOT_RUN
    assert got["pending"].sum() == 3 * 5 + 7  # GDN everywhere, and the row not reached yet
    md = (tmp_path / "paper_vit.md").read_text()
    assert "| data | model | " + " | ".join(COLUMNS) + " |" in md and "*pending*<br>paper 81.8" in md
    tex = (tmp_path / "paper_vit.tex").read_text()
    assert all(s in tex for s in (r"\toprule", r"\midrule", r"\bottomrule", r"\textit{pending}", "CIFAR-100"))
    assert tex.count(r"\mathbf{") == int(got["best"].sum())


def test_paper_layouts_for_every_preset(vit_store: Store, tmp_path: Path) -> None:
    """``--layout paper`` picks the tables the runs fill; the others can be named and are all pending."""
    assert ablation.main(args(vit_store, tmp_path) + ["--layout", "paper", "--no-log"]) == 0
    # the vit runs also fill Table 6's ViT-Tiny ReLU / GELU / DNRT cells on CIFAR-100
    assert {p.stem for p in tmp_path.glob("*.csv")} == {"paper_vit", "paper_ablation"}
    with (ROOT / "analysis" / "paper_results_extra.csv").open() as f:
        extra = [r for r in csv.DictReader(line for line in f if not line.startswith("#"))]
    for layout, table in (("paper_longtail", "longtail"), ("paper_graph", "graph")):
        assert ablation.main(args(vit_store, tmp_path) + ["--layout", layout, "--no-log"]) == 0
        got = pd.read_csv(tmp_path / f"{layout}.csv")
        want = [r for r in extra if r["table"] == table]
        assert len(got) == len(want) and got["pending"].all()
        assert sorted(got["paper"]) == sorted(float(r["value"]) for r in want)
        assert list(dict.fromkeys(got["mechanism"])) == ["ReLU", "GELU", "DNRT"]
    longtail = pd.read_csv(tmp_path / "paper_longtail.csv")
    assert list(dict.fromkeys(longtail["model"])) == ["vit_tiny", "resnet32"] and longtail["group"].nunique() == 3


def test_heatmap_above_the_threshold_shows_the_table(vit_store: Store) -> None:
    df, _ = fetch_runs(RunQuery(vit_store.uri, vit_store.experiment))

    def build(d: pd.DataFrame):
        return build_table(d, ["model"], ["act", "regularizer"], METRIC, {"act": "gelu", "regularizer": "none"})

    fig, kind = accuracy_figure(facet_tables(df, build))
    assert kind == "heatmap"
    runs = runs_by_cell(vit_store)
    seen = 0
    for ax in fig.axes:
        if not ax.get_title(loc="left"):
            continue  # the colour bar
        dataset = ax.get_title(loc="left")
        rows = [t.get_text() for t in ax.get_yticklabels()]
        cols = [t.get_text() for t in ax.get_xticklabels()]
        for text in ax.texts:
            if text.get_text() == "–":
                continue
            x, y = text.get_position()
            act_reg = OURS[[COLUMNS[i] for i in (0, 1, 2, 3, 4, 5, 7)].index(cols[round(x)])]
            values = runs[(dataset, rows[round(y)], *act_reg)]
            assert text.get_text().rstrip("*") == f"{statistics.mean(values):.2f}"
            seen += 1
    assert seen == sum(1 for k in runs)
    small = df[(df["params.dataset.name"] == "cifar10") & df["params.model.name"].isin(VITS[:2])
               & df["params.act.name"].isin(["gelu", "raa"])]
    assert accuracy_figure(facet_tables(small, build))[1] == "bars"


@module_fixture
def small_store(tmp_path_factory: pytest.TempPathFactory, migrated_db: Path) -> Store:
    """Table 6's grid (CIFAR-100, ViT-Tiny and ResNet18, act x regularizer) with one cell not run yet."""
    store = migrated_store(tmp_path_factory.mktemp("ablation"), migrated_db, "ablation")
    cells = [_cell("cifar100", m, a, r) for m in ("vit_tiny", "resnet18") for a in ("relu", "gelu", "raa")
             for r in ("none", "arr") if (m, a, r) != ("resnet18", "raa", "none")]
    store.sweep = generate_sweep_store(store.uri, store.experiment, cells, [0, 1, 2], failed=1, rng_seed=1)
    return store


def test_plots_without_checkpoints_is_a_partial_success(small_store: Store, tmp_path: Path, capsys) -> None:
    argv = args(small_store, tmp_path) + ["--formats", "png", "--no-log"]
    assert plots.main(argv) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["accuracy.png", "val_curves.png"]
    err = capsys.readouterr().err.replace("\n", " ")
    for name in ("responses", "response_spread", "raa_shifts"):
        assert err.count(f"figure {name} not made") == 1
    assert err.count("trainer.log_checkpoint=true") == 3
    assert plots.main(argv + ["--strict"]) != 0


def test_report_opens_in_chromium(small_store: Store, tmp_path: Path, browser) -> None:
    from mlflow import MlflowClient
    from selenium.webdriver.common.by import By

    out = tmp_path / "report"
    assert report.main(args(small_store, out) + ["--sweep-id", small_store.sweep.sweep_id]) == 0
    page = out / "report.html"
    browser.get(page.resolve().as_uri())
    runs = runs_by_cell(small_store)
    # Table 6 laid out as the paper: ours as mean ± std (n), pending where not run
    cells = browser.find_elements(By.CSS_SELECTOR, "table#paper_ablation tbody td")
    texts = [c.find_element(By.CSS_SELECTOR, ".ours").text for c in cells]
    want = []
    for model in ("vit_tiny", "resnet18"):
        for act, reg in (("relu", "none"), ("gelu", "none"), ("raa", "none"), ("relu", "arr"), ("gelu", "arr"),
                         ("raa", "arr")):
            v = runs.get(("cifar100", model, act, reg))
            want.append(f"{statistics.mean(v):.2f} ± {statistics.stdev(v):.2f} ({len(v)})" if v else "pending")
    assert texts == want
    generic = browser.find_element(By.CSS_SELECTOR, "table.ablation").text
    assert all(f"{statistics.mean(v):.2f} ± {statistics.stdev(v):.2f} (3)" in generic for v in runs.values())
    assert "CUDA out of memory" in browser.find_element(By.ID, "problems").text
    differing = [r.text.split(" ", 1)[0] for r in browser.find_elements(By.CSS_SELECTOR, "#differing tr")]
    assert sorted(differing) == ["act.name", "model.name", "regularizer.name", "seed"]  # the generated axes
    client = MlflowClient(small_store.uri)
    children = [r for r in client.search_runs([small_store.experiment_id], max_results=1000)
                if r.data.tags.get(KIND_TAG) != SWEEP_KIND]
    wall = (max(r.info.end_time for r in children) - min(r.info.start_time for r in children)) / 3.6e6
    cpu = sum(r.info.end_time - r.info.start_time for r in children) / 3.6e6
    timings = dict(line.rsplit(" ", 1) for line in browser.find_element(By.ID, "timings").text.splitlines())
    assert float(timings["wall clock (first start to last end), hours"]) == pytest.approx(wall, abs=0.006)
    assert float(timings["run hours on CPU"]) == pytest.approx(cpu, abs=0.006)
    images = browser.find_elements(By.TAG_NAME, "img")
    assert len(images) >= 2
    for img in images:  # every figure loads in the browser (no broken image) and is a whole PNG
        assert browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", img)
        src = img.get_attribute("src")
        assert src.startswith("data:image/png;base64,")
        pixels = mpimg.imread(io.BytesIO(base64.b64decode(src.split(",", 1)[1])), format="png")
        assert pixels.shape[0] > 100 and pixels.shape[1] > 100 and pixels.std() > 0.01
    logged = {a.path for a in client.list_artifacts(small_store.sweep.parent_run_id, "report")}
    assert "report/report.html" in logged
    copy = client.download_artifacts(small_store.sweep.parent_run_id, "report/report.html", str(tmp_path))
    assert Path(copy).read_bytes() == page.read_bytes()
    if shutil.which("chromium"):
        assert (out / "report.pdf").read_bytes()[:5] == b"%PDF-" and "report/report.pdf" in logged
