"""A small REAL sweep in a temp MLflow store, trained once per test session through ``launch.py -m``
and shared by ``test_analysis.py`` and ``test_ui.py``.

digits, 1 epoch, 15% of the data: resnet18 and vit_tiny x gelu and raa x none and arr x seeds 0, 1
(16 runs and the sweep's parent run), checkpoints logged as artifacts. Takes several minutes on two
busy cores, hence built once: the fixture caches it in this module, so both test files (which each
import the fixture) reuse one store. ``DNRT_SWEEP_STORE_DIR`` keeps the store in that directory and
reuses it across sessions (for developing the analysis; unset, every session trains its own).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

from dnrt.tracking_schema import DETAIL_TAG, HASH_TAG, KIND_TAG, PARENT_TAG, RUN_NAME_TAG, SWEEP_KIND, SWEEP_TAG
from tests.conftest import ROOT, run_script
from tests.services import claim_once_per_run

EXPERIMENT = "analysis-test"
MODELS, ACTS, REGS, SEEDS = ("resnet18", "vit_tiny"), ("gelu", "raa"), ("none", "arr"), (0, 1)
SWEEP = [f"model={','.join(MODELS)}", f"act={','.join(ACTS)}", f"regularizer={','.join(REGS)}",
         f"seed={','.join(map(str, SEEDS))}"]
FAST = ["trainer.epochs=1", "dataset.fraction=0.15", "trainer.progress=false", "trainer.log_checkpoint=true"]
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
        return [r for r in runs if r.data.tags.get(KIND_TAG) != SWEEP_KIND and r.info.status == "FINISHED"]


def build_sweep_store(root: Path) -> SweepStore:
    """Train the sweep into ``root/mlflow.db`` (artifacts under ``root/mlruns``) and describe it."""
    root.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    args = ["-m", *SWEEP, *FAST, f"tracking.experiment={EXPERIMENT}", f"trainer.ckpt_root={root / 'checkpoints'}",
            f"hydra.sweep.dir={root / 'multirun'}"]
    t0 = time.monotonic()
    # in this process (the local launcher trains the runs here: no second interpreter's imports); cwd=root:
    # the experiment's default artifact root (./mlruns) lands in the temp dir, not the repo
    proc = run_script(ROOT / "launch.py", args, cwd=root, env=env)
    seconds = time.monotonic() - t0
    if proc.returncode != 0:
        raise AssertionError(f"sweep failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get(KIND_TAG) == SWEEP_KIND]
    children = [r for r in runs if r.data.tags.get(KIND_TAG) != SWEEP_KIND]
    assert len(parents) == 1, [r.info.run_name for r in parents]
    assert len(children) == N_RUNS and all(r.info.status == "FINISHED" for r in children), \
        [(r.info.run_name, r.info.status) for r in children]
    parent = parents[0]
    return SweepStore(str(root), uri, EXPERIMENT, exp.experiment_id, parent.data.tags[SWEEP_TAG],
                      parent.info.run_id, seconds)


_CACHE: dict[str, SweepStore] = {}


@pytest.fixture(scope="session", name="sweep_store")
def sweep_store_fixture(tmp_path_factory: pytest.TempPathFactory) -> SweepStore:
    """The session's :class:`SweepStore` (import this into a test module; request it as ``sweep_store``)."""
    if "store" not in _CACHE:
        claim_once_per_run(tmp_path_factory, "the shared sweep store")
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


# ---------------------------------------------------------------------------------------------------------
# Generated stores: runs written straight through MlflowClient (no training), shaped like a finished sweep.

@dataclass(frozen=True)
class GeneratedStore:
    uri: str
    experiment: str
    experiment_id: str
    sweep_id: str
    parent_run_id: str
    n_runs: int


def generate_store(uri: str, experiment: str, cells: list[dict[str, str]], seeds: list[int], epochs: int = 3,
                   failed: int = 0, rng_seed: int = 0, extra_params: dict[str, str] | None = None
                   ) -> GeneratedStore:
    """Write one sweep into the sqlite store ``uri``: a parent run and, per cell (a dict of param keys ->
    values, e.g. ``{"model.name": "vit_tiny", "act.name": "gelu", ...}``) and seed, a FINISHED run with the
    docs/design.md §4 names (params, tags, per-epoch ``val/acc1``, ``final/val_acc1``, ``best/val_acc1``);
    ``failed`` more runs (the first cells again, seed 99) end FAILED with a reason. Values are random
    (seeded); the tests read them back through MlflowClient as their ground truth.

    The rows go in through MLflow's own SQLAlchemy models in one transaction: the client's three
    round trips per run take ~0.1 s each, too slow for hundreds of runs in a test."""
    import uuid

    from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlMetric, SqlParam, SqlRun, SqlTag
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    rng = np.random.default_rng(rng_seed)
    client = MlflowClient(uri)  # creates and migrates the schema on first use
    exp = client.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp else client.create_experiment(experiment)
    location = client.get_experiment(exp_id).artifact_location
    sweep_id = f"gen-{rng_seed}-{len(cells)}x{len(seeds)}"
    t0 = 1_700_000_000_000
    jobs = [(c, s, "FINISHED") for c in cells for s in seeds] + [(c, 99, "FAILED") for c in cells[:failed]]
    pid = uuid.uuid4().hex
    rows: list = [SqlRun(run_uuid=pid, name=f"sweep-{sweep_id}", experiment_id=int(exp_id), status="FINISHED",
                         start_time=t0, end_time=t0 + len(jobs) * 60_000, lifecycle_stage="active",
                         artifact_uri=f"{location}/{pid}/artifacts", user_id="test", source_name="",
                         source_type="LOCAL", entry_point_name="", source_version="")]
    rows += [SqlTag(run_uuid=pid, key=k, value=v) for k, v in
             {SWEEP_TAG: sweep_id, KIND_TAG: SWEEP_KIND, RUN_NAME_TAG: f"sweep-{sweep_id}"}.items()]
    for i, (cell, seed, status) in enumerate(jobs):
        rid = uuid.uuid4().hex
        params = {"seed": str(seed), "trainer.epochs": str(epochs), "trainer.device": "cpu", "optim.lr": "0.001",
                  **(extra_params or {}), **cell}
        name = "-".join(params.get(k, "") for k in ("model.name", "act.name", "regularizer.name", "dataset.name"))
        start = t0 + i * 60_000
        tags = {PARENT_TAG: pid, SWEEP_TAG: sweep_id, HASH_TAG: f"{sweep_id}-{i}",
                DETAIL_TAG: "finished" if status == "FINISHED" else "failed: CUDA out of memory",
                RUN_NAME_TAG: f"{name}-s{seed}"}
        rows.append(SqlRun(run_uuid=rid, name=f"{name}-s{seed}", experiment_id=int(exp_id), status=status,
                           start_time=start, end_time=start + 45_000, lifecycle_stage="active",
                           artifact_uri=f"{location}/{rid}/artifacts", user_id="test", source_name="",
                           source_type="LOCAL", entry_point_name="", source_version=""))
        rows += [SqlParam(run_uuid=rid, key=k, value=v) for k, v in params.items()]
        rows += [SqlTag(run_uuid=rid, key=k, value=v) for k, v in tags.items()]
        accs = np.clip(50 + 40 * rng.random() + np.cumsum(rng.normal(1.0, 0.5, epochs)), 0, 100)
        history = [("val/acc1", float(a), e + 1) for e, a in enumerate(accs)]
        if status == "FINISHED":
            history += [("final/val_acc1", float(accs[-1]), epochs), ("best/val_acc1", float(accs.max()), epochs)]
        latest = {}
        for key, value, step in history:
            rows.append(SqlMetric(run_uuid=rid, key=key, value=value, timestamp=start, step=step, is_nan=False))
            latest[key] = (value, step)
        rows += [SqlLatestMetric(run_uuid=rid, key=k, value=v, timestamp=start, step=s, is_nan=False)
                 for k, (v, s) in latest.items()]
    engine = create_engine(uri)
    with Session(engine) as session, session.begin():
        session.add_all(rows)
    engine.dispose()
    return GeneratedStore(uri, experiment, exp_id, sweep_id, pid, len(jobs))
