"""Fixed overhead of one sweep job: ``launch.py`` in a subprocess on a tiny synthetic data set.

The job logs ``startup_s`` (process start to the first training step: interpreter, imports,
config, data, model, MLflow run creation; see ``dnrt/engine/trainer.py``). The store is created
(schema migration) before the job, as a sweep's parent does once for all its jobs; that one-off
cost is reported separately.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = "bench-overhead"


def job_command(tmp: Path, seed: int) -> list[str]:
    """A one-epoch job: resnet18, GELU, no regulariser, one batch of 32 synthetic train / val images."""
    return [
        sys.executable, str(ROOT / "launch.py"), "dataset=synthetic", "dataset.num_samples=32",
        "dataset.val_samples=32", "model=resnet18", "act=gelu", "regularizer=none", "trainer.epochs=1",
        "trainer.batch_size=32", "trainer.progress=false", f"seed={seed}", f"tracking.experiment={EXPERIMENT}",
        f"trainer.ckpt_root={tmp / 'ckpt'}", f"hydra.run.dir={tmp / 'hydra' / str(seed)}",
    ]


def read_startup(uri: str, experiment_id: str) -> dict[int, float]:
    """``seed -> startup_s`` of every run in the experiment."""
    from mlflow import MlflowClient

    out = {}
    for run in MlflowClient(uri).search_runs([experiment_id]):
        if "startup_s" in run.data.metrics:
            out[int(run.data.params.get("seed", -1))] = float(run.data.metrics["startup_s"])
    return out


def measure_overhead(runs: int = 1, timeout_s: float = 600.0) -> dict:
    """Run ``runs`` one-epoch jobs one after another (seeds 0..runs-1, fresh temp store and
    checkpoint root) and return the median ``startup_s``, the samples and each job's wall time."""
    from dnrt.tracking import ensure_experiment

    with tempfile.TemporaryDirectory(prefix="dnrt-bench-") as d:
        tmp = Path(d)
        uri = f"sqlite:///{tmp / 'mlflow.db'}"
        t0 = time.perf_counter()
        experiment_id = ensure_experiment(uri, EXPERIMENT)
        store_s = time.perf_counter() - t0
        env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
        walls, errors = [], []
        for seed in range(runs):
            t0 = time.perf_counter()
            proc = subprocess.run(job_command(tmp, seed), cwd=ROOT, env=env, capture_output=True, text=True,
                                  timeout=timeout_s)
            walls.append(round(time.perf_counter() - t0, 2))
            if proc.returncode:
                errors.append(f"seed {seed}: exit {proc.returncode}: {proc.stderr.strip()[-800:]}")
        startup = read_startup(uri, experiment_id)
    samples = [round(startup[s], 2) for s in sorted(startup)]
    return {
        "startup_s": round(statistics.median(samples), 2) if samples else None,
        "startup_s_samples": samples,
        "job_wall_s": walls,
        "store_create_s": round(store_s, 2),
        "job": "resnet18 gelu none, 1 epoch of 32 synthetic images (B=32), fresh sqlite store",
        **({"errors": errors} if errors else {}),
    }
