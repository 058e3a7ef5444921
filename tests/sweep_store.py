"""A small REAL sweep in a temp MLflow store, trained once per test session through ``launch.py -m``
and shared by ``test_analysis.py`` and ``test_ui.py``.

digits, 1 epoch, a third of the data: resnet18 and vit_tiny x gelu and raa x none and arr x seeds 0, 1
(16 runs and the sweep's parent run), checkpoints logged as artifacts. Takes several minutes on two
busy cores, hence built once: the fixture caches it in this module, so both test files (which each
import the fixture) reuse one store. ``DNRT_SWEEP_STORE_DIR`` keeps the store in that directory and
reuses it across sessions (for developing the analysis; unset, every session trains its own).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest
from mlflow import MlflowClient

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = "analysis-test"
MODELS, ACTS, REGS, SEEDS = ("resnet18", "vit_tiny"), ("gelu", "raa"), ("none", "arr"), (0, 1)
SWEEP = [f"model={','.join(MODELS)}", f"act={','.join(ACTS)}", f"regularizer={','.join(REGS)}",
         f"seed={','.join(map(str, SEEDS))}"]
FAST = ["trainer.epochs=1", "dataset.fraction=0.3", "trainer.progress=false", "trainer.log_checkpoint=true"]
N_RUNS = len(MODELS) * len(ACTS) * len(REGS) * len(SEEDS)


@dataclass(frozen=True)
class SweepStore:
    root: str
    uri: str
    experiment: str
    experiment_id: str
    sweep_id: str
    parent_run_id: str
    train_seconds: float

    @property
    def client(self) -> MlflowClient:
        return MlflowClient(self.uri)

    def child_runs(self) -> list:
        """The sweep's FINISHED child runs, read straight from MLflow (the tests' ground truth)."""
        runs = self.client.search_runs([self.experiment_id], max_results=1000)
        return [r for r in runs if r.data.tags.get("dnrt.kind") != "sweep" and r.info.status == "FINISHED"]


def build_sweep_store(root: Path) -> SweepStore:
    """Train the sweep into ``root/mlflow.db`` (artifacts under ``root/mlruns``) and describe it."""
    root.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    cmd = [sys.executable, str(ROOT / "launch.py"), "-m", *SWEEP, *FAST, f"tracking.experiment={EXPERIMENT}",
           f"trainer.ckpt_root={root / 'checkpoints'}", f"hydra.sweep.dir={root / 'multirun'}"]
    t0 = time.monotonic()
    # cwd=root: the experiment's default artifact root (./mlruns) lands in the temp dir, not the repo
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=3600)
    seconds = time.monotonic() - t0
    if proc.returncode != 0:
        raise AssertionError(f"sweep failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("dnrt.kind") == "sweep"]
    children = [r for r in runs if r.data.tags.get("dnrt.kind") != "sweep"]
    assert len(parents) == 1, [r.info.run_name for r in parents]
    assert len(children) == N_RUNS and all(r.info.status == "FINISHED" for r in children), \
        [(r.info.run_name, r.info.status) for r in children]
    parent = parents[0]
    return SweepStore(str(root), uri, EXPERIMENT, exp.experiment_id, parent.data.tags["dnrt.sweep_id"],
                      parent.info.run_id, seconds)


_CACHE: dict[str, SweepStore] = {}


@pytest.fixture(scope="session", name="sweep_store")
def sweep_store_fixture(tmp_path_factory: pytest.TempPathFactory) -> SweepStore:
    """The session's :class:`SweepStore` (import this into a test module; request it as ``sweep_store``)."""
    if "store" not in _CACHE:
        keep = os.environ.get("DNRT_SWEEP_STORE_DIR")
        meta = Path(keep) / "sweep.json" if keep else None
        if meta is not None and meta.is_file():
            _CACHE["store"] = SweepStore(**json.loads(meta.read_text()))
        else:
            store = build_sweep_store(Path(keep) if keep else tmp_path_factory.mktemp("sweep"))
            if meta is not None:
                meta.write_text(json.dumps(asdict(store)))
            _CACHE["store"] = store
        print(f"\n[sweep_store] {N_RUNS} runs in {_CACHE['store'].train_seconds:.0f} s at {_CACHE['store'].root}")
    return _CACHE["store"]
