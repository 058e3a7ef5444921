"""pytest fixtures for the real services; load with ``pytest_plugins = ["tests.services.plugin"]``.

Fixtures (each fails under ``CI=true`` and skips elsewhere when its service cannot start):

- ``slurm_cluster`` (session): :class:`~tests.services.slurm.SlurmCluster`; ``SLURM_CONF`` is set in
  ``os.environ`` for the whole session so submitit / hydra-submitit-launcher find the cluster.
- ``mlflow_server`` (session): :class:`~tests.services.mlflow_server.MlflowService` (``uri``, ``db_uri``).
- ``mlflow_ui`` (function): ``mlflow_ui(backend_uri) -> MlflowService``, an ``mlflow ui`` on that store,
  stopped at the end of the test.
- ``browser`` (session): a Selenium WebDriver on headless Chromium.

Tests using ``slurm_cluster`` / ``browser`` get the ``slurm`` / ``browser`` markers automatically.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack

import pytest

from tests.services import ServiceUnavailable, unavailable
from tests.services.browser import chrome
from tests.services.mlflow_server import MlflowService, running_mlflow_server, start_mlflow_ui
from tests.services.slurm import SlurmCluster, running_cluster

AUTO_MARKERS = {"slurm_cluster": "slurm", "browser": "browser"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark tests by the service fixtures they use, so ``-m "not slurm"`` deselects them."""
    for item in items:
        for fixture, marker in AUTO_MARKERS.items():
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(marker)


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    """A one-node SLURM cluster (munged, MariaDB, slurmdbd, slurmctld, slurmd) for the session."""
    with ExitStack() as stack:
        try:
            cluster = stack.enter_context(running_cluster(timeout=90))
        except ServiceUnavailable as exc:
            unavailable(str(exc))
        patch = stack.enter_context(pytest.MonkeyPatch.context())
        patch.setenv("SLURM_CONF", str(cluster.conf_path))
        yield cluster


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowService]:
    """``mlflow server`` on a sqlite store with proxied artifacts, for the session."""
    with ExitStack() as stack:
        try:
            server = stack.enter_context(running_mlflow_server(tmp_path_factory.mktemp("mlflow-server"),
                                                               timeout=120))
        except ServiceUnavailable as exc:
            unavailable(str(exc))
        yield server


@pytest.fixture
def mlflow_ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], MlflowService]]:
    """Start ``mlflow ui`` on a backend store: ``ui = mlflow_ui(store_uri); browser.get(ui.uri)``."""
    with ExitStack() as stack:
        log_dir = tmp_path_factory.mktemp("mlflow-ui")

        def open_ui(backend_uri: str) -> MlflowService:
            try:
                return stack.enter_context(start_mlflow_ui(backend_uri, timeout=120, log_dir=log_dir))
            except ServiceUnavailable as exc:
                unavailable(str(exc))

        yield open_ui


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """Selenium WebDriver on headless Chromium (Debian's chromium + chromedriver), for the session."""
    with ExitStack() as stack:
        try:
            driver = stack.enter_context(chrome())
        except ServiceUnavailable as exc:
            unavailable(str(exc))
        yield driver
