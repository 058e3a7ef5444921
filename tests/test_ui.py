"""The real ``mlflow ui`` over the session's sweep store: its REST API lists the sweep's runs with their
params and metrics, and the experiment page, rendered in headless Chromium, shows every run name."""

from __future__ import annotations

import json
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import matplotlib.image as mpimg
import pytest

from dnrt.tracking_schema import (
    ACT_TAG,
    HASH_TAG,
    KIND_TAG,
    MODEL_TAG,
    REGULARIZER_TAG,
    SWEEP_KIND,
    SWEEP_TAG,
    tag_filter,
)
from tests.harness.hooks import module_fixture
from tests.harness.services import unavailable
from tests.harness.services.mlflow_server import MlflowService, start_mlflow_ui
from tests.harness.store import Store

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
CHROME_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1600,1800")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
COMPARED_PARAMS = ("model.name", "act.name", "regularizer.name", "dataset.name", "seed", "optim.lr")
COMPARED_TAGS = (MODEL_TAG, ACT_TAG, REGULARIZER_TAG, HASH_TAG, "mlflow.parentRunId")


@module_fixture
def ui(sweep_store: Store, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowService]:
    with start_mlflow_ui(sweep_store.uri, timeout=240, log_dir=tmp_path_factory.mktemp("mlflow-ui")) as service:
        yield service


def api(ui: MlflowService, path: str, body: dict | None = None, query: dict | None = None) -> dict:
    """GET (``query``) or POST (``body``) ``/api/2.0/mlflow/<path>`` and decode the JSON answer."""
    url = f"{ui.uri}/api/2.0/mlflow/{path}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.load(resp)


def _as_dict(entries: list[dict]) -> dict[str, object]:
    return {e["key"]: e["value"] for e in entries}


def test_rest_api_lists_the_sweep(ui: MlflowService, sweep_store: Store) -> None:
    exp = api(ui, "experiments/get-by-name", query={"experiment_name": sweep_store.experiment})["experiment"]
    assert exp["experiment_id"] == sweep_store.experiment_id
    found = api(ui, "runs/search", {"experiment_ids": [exp["experiment_id"]], "max_results": 1000,
                                    "filter": tag_filter(SWEEP_TAG, sweep_store.sweep.sweep_id)})["runs"]
    served = {r["info"]["run_name"]: r for r in found}
    parent = served.pop(f"sweep-{sweep_store.sweep.sweep_id}")
    assert _as_dict(parent["data"]["tags"])[KIND_TAG] == SWEEP_KIND
    truth = {r.info.run_name: r for r in sweep_store.runs(status="FINISHED")}
    assert set(served) == set(truth) and len(truth) == 16
    for name, run in served.items():
        want = truth[name]
        params, metrics, tags = (_as_dict(run["data"][k]) for k in ("params", "metrics", "tags"))
        p = want.data.params
        assert name == f"{p['model.name']}-{p['act.name']}-{p['regularizer.name']}-{p['dataset.name']}-s{p['seed']}"
        assert run["info"]["status"] == "FINISHED"
        assert {k: params[k] for k in COMPARED_PARAMS} == {k: p[k] for k in COMPARED_PARAMS}
        assert {k: tags[k] for k in COMPARED_TAGS} == {k: want.data.tags[k] for k in COMPARED_TAGS}
        for key in ("final/val_acc1", "best/val_acc1", "val/acc1", "train/loss"):
            assert metrics[key] == pytest.approx(want.data.metrics[key])
    some = truth[sorted(truth)[0]]
    history = api(ui, "metrics/get-history", query={"run_id": some.info.run_id, "metric_key": "val/acc1"})
    assert [(m["step"], m["value"]) for m in history["metrics"]] == [(1, pytest.approx(some.data.metrics["val/acc1"]))]


@pytest.fixture
def chrome(request: pytest.FixtureRequest) -> Iterator[object]:
    """Headless Chromium through Selenium (the suite's ``browser`` fixture when it provides a WebDriver)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.remote.webdriver import WebDriver

    try:
        shared = request.getfixturevalue("browser")
    except pytest.FixtureLookupError:
        shared = None
    if isinstance(shared, WebDriver):
        shared.set_window_size(1600, 1800)
        yield shared
        return
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        unavailable(f"headless Chromium needs {CHROMIUM} and {CHROMEDRIVER} (Debian: chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    with tempfile.TemporaryDirectory(prefix="dnrt-chrome-") as profile:
        options.add_argument(f"--user-data-dir={profile}")
        driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
        driver.set_page_load_timeout(180)
        try:
            yield driver
        finally:
            driver.quit()


def _page_text(driver) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.TAG_NAME, "body").text


def test_experiment_page_shows_every_run(ui: MlflowService, sweep_store: Store, chrome, tmp_path: Path
                                         ) -> None:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    names = sorted(r.info.run_name for r in sweep_store.runs(status="FINISHED"))
    parent_name = f"sweep-{sweep_store.sweep.sweep_id}"
    # The experiment's runs view: MLflow 3 opens a bare /#/experiments/<id> on its GenAI overview instead.
    chrome.get(f"{ui.uri}/#/experiments/{sweep_store.experiment_id}/runs")
    wait = WebDriverWait(chrome, 180, poll_frequency=1.0)
    try:
        wait.until(lambda d: parent_name in _page_text(d))
    except TimeoutException:
        pytest.fail(f"{parent_name} never rendered; page text:\n{_page_text(chrome)[:2000]}")
    # The sweep's children are nested under its (collapsed) parent row: expand it as a user would.
    row = f"[role='row'][row-id='{sweep_store.sweep.parent_run_id}']"
    expanders = [b for sel in (f"{row} button[data-component-id*='runnamecellrenderer']", f"{row} button")
                 for b in chrome.find_elements(By.CSS_SELECTOR, sel) if b.is_displayed()]
    assert expanders, "no expand button on the sweep's parent row"
    expanders[0].click()
    try:
        wait.until(lambda d: all(n in _page_text(d) for n in names))
    except TimeoutException:
        text = _page_text(chrome)
        pytest.fail(f"run names missing from the page: {[n for n in names if n not in text]}\n{text[:2000]}")
    shot = tmp_path / "experiment.png"
    assert chrome.save_screenshot(str(shot))
    assert shot.read_bytes()[:8] == PNG_MAGIC and shot.stat().st_size > 10_000
    image = mpimg.imread(shot)
    assert image.shape[0] > 500 and image.shape[1] > 800 and image.std() > 0.01
