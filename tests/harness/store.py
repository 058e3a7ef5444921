"""The tests' MLflow store: :class:`Store`, and the shared sweep store trained once per session."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from mlflow import MlflowClient

from dnrt.testing import StoredSweep
from dnrt.tracking_schema import KIND_TAG, SWEEP_KIND, SWEEP_TAG
from tests.harness import launcher


@dataclass
class Store:
    """A sqlite MLflow store ``root/mlflow.db`` with checkpoints under ``root/checkpoints``: ``overrides``
    point a run at it, ``launch`` runs ``launch.py`` against it. ``sweep`` describes the sweep it holds,
    when it was made to hold one (the session's ``sweep_store``, a generated store)."""

    root: Path
    experiment: str = "test"
    sweep: StoredSweep | None = None

    @property
    def uri(self) -> str:
        return f"sqlite:///{self.root / 'mlflow.db'}"

    @property
    def ckpt_root(self) -> Path:
        return self.root / "checkpoints"

    @property
    def client(self) -> MlflowClient:
        return MlflowClient(self.uri)

    @property
    def experiment_id(self) -> str:
        """The id of :attr:`experiment` (KeyError when it does not exist yet)."""
        exp = self.client.get_experiment_by_name(self.experiment)
        if exp is None:
            raise KeyError(f"no experiment {self.experiment!r} in {self.uri}")
        return exp.experiment_id

    def overrides(self, experiment: str | None = None) -> list[str]:
        """Config overrides that send a run's tracking and checkpoints here."""
        return [f"tracking.uri={self.uri}", f"tracking.experiment={experiment or self.experiment}",
                f"trainer.ckpt_root={self.ckpt_root}"]

    def runs(self, experiment: str | None = None, children_only: bool = True, status: str | None = None) -> list:
        """The experiment's runs from MLflow: without sweep parent runs (``children_only``), of one
        ``status`` (e.g. ``"FINISHED"``) if given."""
        exp = self.client.get_experiment_by_name(experiment or self.experiment)
        if exp is None:
            return []
        runs = self.client.search_runs([exp.experiment_id], max_results=1000)
        if children_only:
            runs = [r for r in runs if r.data.tags.get(KIND_TAG) != SWEEP_KIND]
        return [r for r in runs if status is None or r.info.status == status]

    def env(self, **extra: str) -> dict[str, str]:
        """A launched command's environment (:func:`launcher.base_env`) pointing at this store; ``extra``
        adds to it or overrides it."""
        return launcher.base_env(**{"MLFLOW_TRACKING_URI": self.uri, "DNRT_CKPT_DIR": str(self.ckpt_root), **extra})

    def launch(self, *args: str, own_process: bool = False, env: dict[str, str] | None = None,
               check: bool = False, timeout: float = 900) -> subprocess.CompletedProcess:
        """``python launch.py ARGS`` in :attr:`root` against this store (:func:`launcher.launch`: in this
        process unless ``own_process``); ``env`` replaces :meth:`env`."""
        return launcher.launch(args, cwd=self.root, env=env or self.env(), own_process=own_process,
                               timeout=timeout, check=check)

    def start(self, *args: str) -> subprocess.Popen:
        """``python launch.py ARGS`` against this store in a background process (:func:`launcher.start`)."""
        return launcher.start(args, cwd=self.root, env=self.env())


def migrated_store(root: Path, migrated_db: Path, experiment: str = "test") -> Store:
    """A :class:`Store` in ``root`` holding a copy of ``migrated_db`` (the ``migrated_db`` fixture: an empty
    store MLflow has migrated; migrating a new file takes seconds)."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(migrated_db, root / "mlflow.db")
    return Store(root, experiment)


# ----------------------------------------------------------------------------------------------------------
# The shared sweep store: a small real sweep, trained once per session, read by test_analysis and test_ui.

SWEEP_EXPERIMENT = "analysis-test"
MODELS, ACTS, REGS, SEEDS = ("resnet18", "vit_tiny"), ("gelu", "raa"), ("none", "arr"), (0, 1)
SWEEP = [f"model={','.join(MODELS)}", f"act={','.join(ACTS)}", f"regularizer={','.join(REGS)}",
         f"seed={','.join(map(str, SEEDS))}"]
SWEEP_FAST = ["trainer.epochs=1", "dataset.fraction=0.15", "trainer.progress=false", "trainer.log_checkpoint=true"]
N_RUNS = len(MODELS) * len(ACTS) * len(REGS) * len(SEEDS)


def train_sweep_store(root: Path) -> tuple[Store, float]:
    """Train the sweep (digits, 1 epoch, 15% of the data: resnet18 and vit_tiny x gelu and raa x none
    and arr x seeds 0, 1, checkpoints logged as artifacts) through ``launch.py -m`` into ``root``; return
    the store and the seconds it took. The runs are checked: 16 FINISHED children under one parent."""
    root.mkdir(parents=True, exist_ok=True)
    store = Store(root, SWEEP_EXPERIMENT)
    t0 = time.monotonic()
    # cwd=root (Store.launch): the experiment's default artifact root (./mlruns) lands in the temp dir
    proc = store.launch("-m", *SWEEP, *SWEEP_FAST, *store.overrides(), f"hydra.sweep.dir={root / 'multirun'}")
    seconds = time.monotonic() - t0
    if proc.returncode != 0:
        raise AssertionError(f"sweep failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    parents = [r for r in store.runs(children_only=False) if r.data.tags.get(KIND_TAG) == SWEEP_KIND]
    children = store.runs()
    assert len(parents) == 1, [r.info.run_name for r in parents]
    assert len(children) == N_RUNS and all(r.info.status == "FINISHED" for r in children), \
        [(r.info.run_name, r.info.status) for r in children]
    (parent,) = parents
    store.sweep = StoredSweep(store.uri, SWEEP_EXPERIMENT, store.experiment_id, parent.data.tags[SWEEP_TAG],
                              parent.info.run_id, N_RUNS)
    return store, seconds


def sweep_store_at(root: Path, keep: bool) -> tuple[Store, float]:
    """The sweep store in ``root``: trained there, or with ``keep`` read back from an earlier session's
    ``root/sweep.json`` when there is one (for developing the analysis without retraining)."""
    meta = root / "sweep.json"
    if keep and meta.is_file():
        return Store(root, SWEEP_EXPERIMENT, StoredSweep(**json.loads(meta.read_text()))), 0.0
    store, seconds = train_sweep_store(root)
    if keep:
        meta.write_text(json.dumps(asdict(store.sweep)))
    return store, seconds


def kept_sweep_dir() -> Path | None:
    """``$DNRT_SWEEP_STORE_DIR``: where the sweep store is kept across sessions, if set."""
    keep = os.environ.get("DNRT_SWEEP_STORE_DIR")
    return Path(keep) if keep else None
