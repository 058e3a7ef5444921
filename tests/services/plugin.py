"""pytest fixtures for the real services; load with ``pytest_plugins = ["tests.services.plugin"]``.

Fixtures (each fails under ``CI=true`` and skips elsewhere when its service cannot start):

- ``slurm_cluster`` (session): :class:`~tests.services.slurm.SlurmCluster`; ``SLURM_CONF`` is set in
  ``os.environ`` for the whole session so submitit / hydra-submitit-launcher find the cluster.
- ``mlflow_server`` (session): :class:`~tests.services.mlflow_server.MlflowService` (``uri``, ``db_uri``).
- ``browser`` (session): a Selenium WebDriver on headless Chromium.

Tests get markers from the fixtures they use (:data:`AUTO_MARKERS`): ``slurm``, ``browser``, ``services``
(an MLflow server) and ``slow`` (the shared sweep store), so ``make test-fast`` leaves them out.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from tests.services import ServiceUnavailable, claim_once_per_run, unavailable
from tests.services.browser import chrome
from tests.services.mlflow_server import MlflowService, running_mlflow_server
from tests.services.slurm import SlurmCluster, running_cluster

AUTO_MARKERS = {"slurm_cluster": "slurm", "browser": "browser", "mlflow_server": "services",
                "sweep_store": "slow"}
# What the long tests carry (the ones `make test-fast` leaves out): these, and `slow` set in test files.
LONG_MARKERS = frozenset(AUTO_MARKERS.values()) | {"slow"}
# Under pytest-xdist (``-n 2 --dist loadgroup``) each worker has its own session fixtures. Tests that share
# an expensive one run on one worker, so a session still starts one SLURM cluster and builds one sweep
# store: the cluster's tests form one group, the store / MLflow server / browser tests another.
XDIST_GROUPS = {"slurm": ("slurm_cluster",), "store": ("sweep_store", "mlflow_server", "browser")}


def service_group(fixturenames: tuple[str, ...] | list[str]) -> str | None:
    """The xdist group of a test using these fixtures: the first group one of them belongs to."""
    for group, fixtures in XDIST_GROUPS.items():
        if any(f in fixturenames for f in fixtures):
            return group
    return None


def xdist_group(item: pytest.Item) -> str | None:
    """The service group of ``item``, else its module's name when it uses a module-scoped fixture (a
    sweep trained once for a file's tests would otherwise be trained again on the other worker)."""
    group = service_group(getattr(item, "fixturenames", ()))
    if group is not None:
        return group
    info = getattr(item, "_fixtureinfo", None)  # pytest's resolved fixture definitions of the test
    if info is not None and any(defs and defs[-1].scope in ("module", "class", "package")
                                for defs in info.name2fixturedefs.values()):
        return item.module.__name__
    return None


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the xdist_group marks
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark tests by the service fixtures they use, so ``-m "not slurm"`` deselects them, and group
    them for xdist (:data:`XDIST_GROUPS`)."""
    for item in items:
        names = getattr(item, "fixturenames", ())
        for fixture, marker in AUTO_MARKERS.items():
            if fixture in names:
                item.add_marker(marker)
        group = xdist_group(item)
        if group is not None and item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(group))
    # The long tests first, the many short ones last: xdist hands out tests in this order, so the short
    # ones fill in while the other worker finishes a long one, instead of one worker idling at the end
    # while the other runs a long test it drew last (seen: 70 s of a 10-minute run). A group moves as
    # one, so a module-scoped fixture is still built once.
    def group_of(item: pytest.Item) -> str:
        marker = item.get_closest_marker("xdist_group")
        return marker.args[0] if marker and marker.args else item.nodeid

    long_groups = {group_of(item) for item in items if any(item.get_closest_marker(m) for m in LONG_MARKERS)}
    items.sort(key=lambda item: group_of(item) not in long_groups)


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    """A one-node SLURM cluster (munged, MariaDB, slurmdbd, slurmctld, slurmd) for the session."""
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
    """``mlflow server`` on a sqlite store with proxied artifacts, for the session."""
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
