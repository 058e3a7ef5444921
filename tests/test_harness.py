"""The test harness's own tests: the in-process launcher, the tiers and the xdist groups (tests/harness)."""

from __future__ import annotations

import json
import logging
import os
import sys
import textwrap
from collections import defaultdict
from pathlib import Path

import pytest
import torch
from hydra.core.global_hydra import GlobalHydra

from tests.harness import launcher
from tests.harness.config import ROOT
from tests.harness.hooks import XDIST_GROUPS
from tests.harness.store import Store


def script(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "script.py"
    path.write_text(textwrap.dedent(body))
    return path


@pytest.mark.parametrize(("body", "code"), [("pass", 0), ("import sys; sys.exit()", 0), ("raise SystemExit(2)", 2),
                                            ("import sys; sys.exit(0)", 0), ("import sys; sys.exit(3)", 3)])
def test_run_script_returns_the_exit_code_the_interpreter_would(tmp_path: Path, body: str, code: int) -> None:
    proc = launcher.run_script(script(tmp_path, body), [], cwd=tmp_path, env=dict(os.environ))
    assert proc.returncode == code
    assert proc.args == [str(tmp_path / "script.py")]


def test_run_script_prints_a_system_exit_message_and_exits_1(tmp_path: Path) -> None:
    body = 'import sys; print("to stdout"); sys.exit("error: model.name=resnet81 is not a model")'
    proc = launcher.run_script(script(tmp_path, body), [], cwd=tmp_path, env=dict(os.environ))
    assert proc.returncode == 1
    assert proc.stdout == "to stdout\n"
    assert proc.stderr == "error: model.name=resnet81 is not a model\n"


def test_run_script_turns_an_uncaught_exception_into_a_traceback_and_exit_1(tmp_path: Path) -> None:
    body = """\
        def inner():
            raise ValueError("boom")
        inner()
    """
    proc = launcher.run_script(script(tmp_path, body), [], cwd=tmp_path, env=dict(os.environ))
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    assert lines[0] == "Traceback (most recent call last):" and lines[-1] == "ValueError: boom"
    assert any("in inner" in line for line in lines)


def test_run_script_runs_as_main_with_the_given_argv_cwd_and_env(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("DNRT_HARNESS_OUTER", "outer")  # in os.environ, not in env: hidden from the script
    body = """\
        import json, os, sys
        env = os.environ
        print(json.dumps({"name": __name__, "argv": sys.argv, "cwd": os.getcwd(),
                          "inner": env.get("DNRT_HARNESS_INNER"), "outer": env.get("DNRT_HARNESS_OUTER")}))
        sys.argv.append("changed"); os.environ["DNRT_HARNESS_SET"] = "1"; os.chdir("/")
    """
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "DNRT_HARNESS_OUTER"} | {"DNRT_HARNESS_INNER": "inner"}
    argv, cwd, environ = sys.argv[:], os.getcwd(), dict(os.environ)
    proc = launcher.run_script(script(tmp_path, body), ["-m", "seed=0,1"], cwd=work, env=env)
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout)
    assert seen == {"name": "__main__", "argv": [str(tmp_path / "script.py"), "-m", "seed=0,1"],
                    "cwd": str(work), "inner": "inner", "outer": None}
    assert (sys.argv, os.getcwd(), dict(os.environ)) == (argv, cwd, environ)  # all three restored


def test_run_script_undoes_hydra_logging_and_thread_state(tmp_path: Path) -> None:
    """A real ``@hydra.main`` app, then Hydra initialised and left so: Hydra's global state, the job-logging
    handlers Hydra installs on the root logger, the root level and torch's thread count are what they were
    before the call."""
    body = f"""\
        import logging
        import hydra
        import torch

        @hydra.main(version_base="1.3", config_path=None, config_name=None)
        def main(cfg):
            logging.getLogger(__name__).info("inside the job")
            logging.getLogger().setLevel(logging.DEBUG)
            torch.set_num_threads({torch.get_num_threads() + 1})

        main()
        hydra.initialize(version_base="1.3", config_path=None)  # entered, never left: Hydra stays initialised
    """
    root = logging.getLogger()
    handlers, level, threads = root.handlers[:], root.level, torch.get_num_threads()
    proc = launcher.run_script(script(tmp_path, body), [f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path,
                               env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr
    assert "inside the job" in (tmp_path / "run" / "script.log").read_text()  # Hydra's job logging was on
    assert not GlobalHydra.instance().is_initialized()
    assert root.handlers == handlers and root.level == level
    assert torch.get_num_threads() == threads


def test_launched_commands_get_the_users_thread_setting_not_the_sessions(monkeypatch) -> None:
    assert os.environ["OMP_NUM_THREADS"] == launcher.SESSION_THREADS["OMP_NUM_THREADS"]  # the session's
    assert torch.get_num_threads() == int(launcher.SESSION_THREADS["OMP_NUM_THREADS"])
    user = launcher._USER_ENV["OMP_NUM_THREADS"]
    assert launcher.base_env().get("OMP_NUM_THREADS") == user
    assert launcher.base_env(X="1")["X"] == "1"


# ----------------------------------------------------------------------------------------------------------
# Tiers and xdist groups, in a pytest run of generated tests that loads only the harness's hooks.

CONFTEST = """\
    import json, os
    import pytest
    from tests.harness.hooks import module_fixture

    pytest_plugins = ["tests.harness.hooks"]

    @pytest.fixture(scope="session")
    def slurm_cluster(): return "cluster"

    @pytest.fixture(scope="session")
    def sweep_store(): return "store"

    @pytest.fixture(scope="session")
    def mlflow_server(): return "server"

    @module_fixture
    def trained(): return "trained"

    @pytest.fixture
    def record(request):
        yield
        with open(os.environ["HARNESS_RECORD"], "a") as f:
            f.write(json.dumps([os.environ.get("PYTEST_XDIST_WORKER", "main"), request.node.name,
                                request.node.module.__name__]) + "\\n")
"""
TESTS = """\
    import pytest

    @pytest.mark.parametrize("i", range(4))
    def test_plain(record, i): pass

    @pytest.mark.parametrize("i", range(3))
    def test_cluster(record, slurm_cluster, i): pass

    @pytest.mark.parametrize("i", range(2))
    def test_store(record, sweep_store, i): pass

    def test_server(record, mlflow_server): pass

    @pytest.mark.parametrize("i", range(3))
    def test_trained(record, trained, i): pass

    @pytest.mark.slow
    def test_marked_slow(record): pass
"""


@pytest.fixture
def generated(pytester: pytest.Pytester, monkeypatch) -> pytest.Pytester:
    pytester.makeconftest(textwrap.dedent(CONFTEST))
    pytester.makepyfile(test_one=textwrap.dedent(TESTS), test_two=textwrap.dedent(TESTS))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("HARNESS_RECORD", str(pytester.path / "record.jsonl"))
    for key in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
        monkeypatch.delenv(key, raising=False)  # this session's, when it runs under xdist itself
    return pytester


def test_the_fast_tier_is_every_test_without_a_long_marker(generated: pytest.Pytester) -> None:
    result = generated.runpytest("-p", "no:randomly", "-p", "no:cacheprovider", "-m", "fast", "--collect-only", "-q")
    selected = {line.split("::")[1] for line in result.outlines if "::" in line}
    # long: the tests using a service fixture (slurm, services), the sweep store (slow), or marked slow
    names = {f"test_plain[{i}]" for i in range(4)} | {f"test_trained[{i}]" for i in range(3)}
    assert selected == names, result.outlines


def test_tests_sharing_a_session_or_module_fixture_run_on_one_xdist_worker(generated: pytest.Pytester) -> None:
    result = generated.runpytest_subprocess("-p", "no:randomly", "-p", "no:cacheprovider", "-n", "2",
                                            "--dist", "loadgroup")
    result.assert_outcomes(passed=28)
    workers: dict[str, set[str]] = defaultdict(set)
    for line in (generated.path / "record.jsonl").read_text().splitlines():
        worker, name, module = json.loads(line)
        base = name.split("[")[0]
        key = {"test_cluster": "slurm", "test_store": "store", "test_server": "store"}.get(base)
        key = key or (f"trained {module}" if base == "test_trained" else f"{worker} {name} {module}")
        workers[key].add(worker)
    assert set(XDIST_GROUPS) == {"slurm", "store"}
    for group in ("slurm", "store", "trained test_one", "trained test_two"):
        assert len(workers[group]) == 1, (group, dict(workers))
    assert set().union(*workers.values()) == {"gw0", "gw1"}  # both workers ran tests: the groups mattered


def test_a_store_env_points_at_the_store_and_extra_keys_override(tmp_path: Path) -> None:
    store = Store(tmp_path)
    env = store.env()
    assert env["MLFLOW_TRACKING_URI"] == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert env["DNRT_CKPT_DIR"] == str(tmp_path / "checkpoints")
    assert store.env(MLFLOW_TRACKING_URI="http://127.0.0.1:5000", X="1")["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:5000"
