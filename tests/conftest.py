"""Shared fixtures: composed configs and a throw-away MLflow store per test."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from mlflow import MlflowClient
from omegaconf import DictConfig

from dnrt.tracking_schema import KIND_TAG, SWEEP_KIND

pytest_plugins = ["tests.services.plugin"]

# One intra-op thread in every test process and every process it starts. The two xdist workers and the
# runs they launch share the machine's cores; with torch's default (a thread per core) each process's
# OpenMP threads spin at barriers while another process holds the core, and small forward passes get
# 10-30x slower (test_models_paper, 2026-12-01: about 50 s alone, 590 s beside the other worker).
os.environ["OMP_NUM_THREADS"] = "1"
torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
# Small and fast: a third of digits, batches of 32.
FAST = ["dataset.fraction=0.3", "trainer.batch_size=32", "trainer.progress=false", "trainer.threads=1"]
# timm's test_resnet through the resnet18 config: the ResNet code path (stem, four stages of basic blocks,
# RAA and ARR at every tap) at a fraction of resnet18's cost, for the tests of the machinery (where runs
# stop, resume and fail, what they log, plan and refuse), not of learning.
TINY_RESNET = ["model=resnet18", "model.name=test_resnet"]
# Those tests' runs: the tiny ResNet on 15% of digits.
SMALL = [*TINY_RESNET, *FAST, "dataset.fraction=0.15"]


def compose_cfg(overrides: list[str] = (), return_hydra_config: bool = False) -> DictConfig:
    """Compose ``conf/config.yaml`` with ``overrides`` through Hydra's compose API."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides), return_hydra_config=return_hydra_config)


@dataclass
class Store:
    """A fresh sqlite MLflow store and checkpoint root; ``overrides`` point a run at them."""

    uri: str
    ckpt_root: Path
    root: Path

    @property
    def client(self) -> MlflowClient:
        return MlflowClient(self.uri)

    def overrides(self, experiment: str = "test") -> list[str]:
        return [f"tracking.uri={self.uri}", f"tracking.experiment={experiment}", f"trainer.ckpt_root={self.ckpt_root}"]

    def runs(self, experiment: str = "test", children_only: bool = True) -> list:
        exp = self.client.get_experiment_by_name(experiment)
        if exp is None:
            return []
        runs = self.client.search_runs([exp.experiment_id], max_results=1000)
        return [r for r in runs if r.data.tags.get(KIND_TAG) != SWEEP_KIND] if children_only else runs

    def env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, "MLFLOW_TRACKING_URI": self.uri, "DNRT_CKPT_DIR": str(self.ckpt_root), **extra}

    def launch(self, *args: str, timeout: float = 600, check: bool = False) -> subprocess.CompletedProcess:
        """``python launch.py ARGS`` against this store; returns the finished process."""
        proc = subprocess.run([sys.executable, str(ROOT / "launch.py"), *args], cwd=self.root, env=self.env(),
                              capture_output=True, text=True, timeout=timeout)
        return _checked(proc, check)

    def launch_here(self, *args: str, check: bool = False, env: dict[str, str] | None = None
                    ) -> subprocess.CompletedProcess:
        """``launch.py ARGS`` run in this process: the same script, exit code and output as
        :meth:`launch` without a fresh interpreter's imports (about 8 s of CPU). Not for a command that
        is signalled or killed: that needs a process of its own (:meth:`launch`). ``env`` replaces
        :meth:`env` for the call (the processes the command starts inherit it)."""
        return _checked(run_script(ROOT / "launch.py", list(args), cwd=self.root, env=env or self.env()), check)


def without_session_threads(env: dict[str, str]) -> dict[str, str]:
    """``env`` without the OMP_NUM_THREADS this module sets for the session: for launches whose jobs'
    thread count must come from the launcher's own setup lines, which is what their tests check."""
    return {k: v for k, v in env.items() if k != "OMP_NUM_THREADS"}


def _checked(proc: subprocess.CompletedProcess, check: bool) -> subprocess.CompletedProcess:
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, proc.args))} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def run_script(script: Path, args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run a Python script in this process as ``python SCRIPT ARGS`` would (as ``__main__``, so Hydra
    finds its config next to it): ``sys.argv``, working directory and environment set for the call;
    stdout and stderr captured; ``SystemExit`` becomes the exit code and an uncaught exception a printed
    traceback with exit code 1. Hydra's global state and the logging handlers its job logging installs
    are undone afterwards."""
    import contextlib
    import io
    import logging
    import runpy
    import traceback

    from hydra.core.global_hydra import GlobalHydra

    out, err = io.StringIO(), io.StringIO()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    code = 0
    argv = [str(script), *args]
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        patch.setattr(sys, "argv", argv)
        patch.chdir(cwd)
        for key in set(os.environ) - set(env):
            patch.delenv(key)
        for key, value in env.items():
            patch.setenv(key, value)
        GlobalHydra.instance().clear()
        try:
            runpy.run_path(str(script), run_name="__main__")
        except SystemExit as exc:  # as the interpreter does: sys.exit("message") prints it and exits 1
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            if not isinstance(exc.code, int | None):
                print(exc.code, file=sys.stderr)
        except Exception:
            traceback.print_exc()
            code = 1
        finally:
            GlobalHydra.instance().clear()
            for handler in root.handlers:
                if handler not in handlers:
                    handler.close()
            root.handlers[:] = handlers
            root.setLevel(level)
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="session")
def migrated_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty sqlite store with MLflow's schema, made once: migrating a new file takes seconds."""
    path = tmp_path_factory.mktemp("template") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def store(tmp_path: Path, migrated_db: Path) -> Store:
    """A throw-away store: a copy of the migrated empty one."""
    shutil.copyfile(migrated_db, tmp_path / "mlflow.db")
    return Store(f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "checkpoints", tmp_path)


@pytest.fixture
def fresh_store(tmp_path: Path) -> Store:
    """A store whose sqlite file does not exist yet: the first process to write creates it."""
    return Store(f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "checkpoints", tmp_path)
