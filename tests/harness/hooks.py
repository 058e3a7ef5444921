"""The suite's pytest hooks: the markers and the test tiers, the xdist groups, the session's thread policy.

**Tiers** (defined here only): a test is *long* when it carries one of :data:`LONG_MARKERS` (set in a
test file, or from the fixtures it uses, :data:`FIXTURE_MARKERS`); every other test gets the marker
``fast``. ``make test-fast`` runs ``pytest -m fast``.

**xdist groups** (``-n 2 --dist loadgroup``): each worker has its own session fixtures, so tests that share
an expensive one must run on one worker, or the SLURM cluster would start twice and the sweep store be
trained twice. A test gets an ``xdist_group`` mark from the fixture names it requests
(``item.fixturenames``, public API): :data:`XDIST_GROUPS` for the session services, and its module's name
when it uses a fixture made with :func:`module_fixture` (a sweep trained once for a file's tests).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import pytest

from tests.harness import launcher

MARKERS = {
    "slow": "longer end-to-end tests",
    "slurm": "needs a real SLURM cluster",
    "browser": "needs headless Chromium",
    "services": "needs an MLflow server process",
    "fast": "the fast tier: none of the long markers (set by tests/harness/hooks.py, not by hand)",
}
LONG_MARKERS = frozenset({"slow", "slurm", "browser", "services"})
FIXTURE_MARKERS = {"slurm_cluster": "slurm", "browser": "browser", "mlflow_server": "services",
                   "sweep_store": "slow"}
XDIST_GROUPS = {"slurm": ("slurm_cluster",), "store": ("sweep_store", "mlflow_server", "browser")}
MODULE_FIXTURES: set[str] = set()  # the names module_fixture registered


def module_fixture(fn: Callable | None = None, *, name: str | None = None):
    """``pytest.fixture(scope="module")`` whose users run on one xdist worker (grouped by module)."""
    def wrap(f: Callable):
        MODULE_FIXTURES.add(name or f.__name__)
        return pytest.fixture(scope="module", name=name)(f)
    return wrap(fn) if fn is not None else wrap


def group_of(fixturenames: Iterable[str], module: str) -> str | None:
    """The xdist group of a test in ``module`` requesting ``fixturenames``: the first of
    :data:`XDIST_GROUPS` one of them belongs to, else ``module`` if one is a :func:`module_fixture`."""
    names = set(fixturenames)
    for group, fixtures in XDIST_GROUPS.items():
        if names.intersection(fixtures):
            return group
    return module if names & MODULE_FIXTURES else None


def pytest_configure(config: pytest.Config) -> None:
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")
    launcher.set_session_threads()


@pytest.hookimpl(tryfirst=True)  # before xdist reads the xdist_group marks and `-m` deselects
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark tests by the fixtures they use and by tier, group them for xdist, and put the long ones first."""
    for item in items:
        names = getattr(item, "fixturenames", ())
        for fixture, marker in FIXTURE_MARKERS.items():
            if fixture in names:
                item.add_marker(marker)
        if not any(item.get_closest_marker(m) for m in LONG_MARKERS):
            item.add_marker("fast")
        module = getattr(item, "module", None)
        group = group_of(names, module.__name__ if module is not None else item.nodeid.split("::")[0])
        if group is not None and item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(group))

    # The long tests first, the many short ones last: xdist hands out tests in this order, so the short
    # ones fill in while the other worker finishes a long one, instead of one worker idling at the end
    # while the other runs a long test it drew last. A group moves as one, so a module fixture is still
    # built once.
    def group_key(item: pytest.Item) -> str:
        marker = item.get_closest_marker("xdist_group")
        return marker.args[0] if marker and marker.args else item.nodeid

    long_groups = {group_key(item) for item in items if item.get_closest_marker("fast") is None}
    items.sort(key=lambda item: group_key(item) not in long_groups)
