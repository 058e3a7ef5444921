"""The suite's shared fixtures (registered in ``tests/conftest.py`` through ``pytest_plugins``).

- ``store`` / ``fresh_store``: a throw-away :class:`~tests.harness.store.Store` in ``tmp_path``, migrated
  (a copy of ``migrated_db``) or not yet created (the first process to write creates it);
- ``sweep_store`` (session): the small real sweep of :func:`~tests.harness.store.train_sweep_store`;
- ``slurm_cluster``, ``mlflow_server``, ``browser`` (session): the real services of
  ``tests/harness/services``. Each fails under ``CI=true`` and skips elsewhere when its service cannot start.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.harness.services import ServiceUnavailable, claim_once_per_run, unavailable
from tests.harness.services.browser import chrome
from tests.harness.services.mlflow_server import MlflowService, running_mlflow_server
from tests.harness.services.slurm import SlurmCluster, running_cluster
from tests.harness.store import N_RUNS, Store, kept_sweep_dir, migrated_store, sweep_store_at


@pytest.fixture(scope="session")
def migrated_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty sqlite store with MLflow's schema, made once: migrating a new file takes seconds."""
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("template") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def store(tmp_path: Path, migrated_db: Path) -> Store:
    """A throw-away store: a copy of the migrated empty one."""
    return migrated_store(tmp_path, migrated_db)


@pytest.fixture
def fresh_store(tmp_path: Path) -> Store:
    """A store whose sqlite file does not exist yet: the first process to write creates it."""
    return Store(tmp_path)


@pytest.fixture(scope="session")
def sweep_store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """The session's trained sweep store (``.sweep`` describes the sweep). ``DNRT_SWEEP_STORE_DIR`` keeps
    it in that directory and reuses it across sessions; unset, every session trains its own."""
    claim_once_per_run(tmp_path_factory, "the shared sweep store")
    keep = kept_sweep_dir()
    store, seconds = sweep_store_at(keep or tmp_path_factory.mktemp("sweep"), keep is not None)
    print(f"\n[sweep_store] {N_RUNS} runs in {seconds:.0f} s at {store.root}")
    return store


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    """A one-node SLURM cluster (munged, MariaDB, slurmdbd, slurmctld, slurmd) for the session; ``SLURM_CONF``
    is set in ``os.environ`` for the session so submitit / hydra-submitit-launcher find it."""
    claim_once_per_run(tmp_path_factory, "the SLURM cluster")
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
    """``mlflow server`` on a sqlite store with proxied artifacts, for the session (``uri``, ``db_uri``)."""
    with ExitStack() as stack:
        try:
            server = stack.enter_context(running_mlflow_server(tmp_path_factory.mktemp("mlflow-server"),
                                                               timeout=120))
        except ServiceUnavailable as exc:
            unavailable(str(exc))
        yield server


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """Selenium WebDriver on headless Chromium (Debian's chromium + chromedriver), for the session."""
    with ExitStack() as stack:
        try:
            driver = stack.enter_context(chrome())
        except ServiceUnavailable as exc:
            unavailable(str(exc))
        yield driver
