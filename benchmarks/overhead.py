"""Fixed overhead of sweep runs: a real ``launch.py -m`` sweep of tiny runs, read back from MLflow.

Every run logs ``startup_s``, the time from its job's start to its first training step, and a
``dnrt.startup`` tag (see ``dnrt.launching.process.JobClock``):

- ``cold``: the first run of a fresh process: interpreter, imports of torch / torchvision / timm /
  MLflow, config, data, model and MLflow run creation;
- ``warm``: a later run of the same worker (``hydra/launcher=parallel`` deals a sweep's runs to
  ``$DNRT_MAX_PARALLEL`` workers; SLURM with ``hydra.launcher.runs_per_job``): config, data,
  model and run creation only.

The sweep runs with one worker, so run 1 is cold and the rest warm. The store is created before
the sweep (its parent does that once for all its runs); that one-off cost is reported apart, and
so is the bare import time of a fresh interpreter.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dnrt.tracking_schema import STARTUP, STARTUP_COLD, STARTUP_TAG, STARTUP_WARM

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = "bench-overhead"
IMPORTS = "import dnrt.launching.entry, mlflow.store.tracking.sqlalchemy_store"


def job_command(tmp: Path, runs: int) -> list[str]:
    """A sweep of ``runs`` one-epoch runs (seeds 0..runs-1): resnet18, GELU, no regulariser, one
    batch of 32 synthetic train / val images each."""
    return [
        sys.executable, str(ROOT / "launch.py"), "-m", "hydra/launcher=parallel", "dataset=synthetic",
        "dataset.num_samples=32", "dataset.val_samples=32", "model=resnet18", "act=gelu", "regularizer=none",
        "trainer.epochs=1", "trainer.batch_size=32", "trainer.progress=false",
        f"seed={','.join(str(s) for s in range(runs))}", f"tracking.experiment={EXPERIMENT}",
        f"trainer.ckpt_root={tmp / 'ckpt'}", f"hydra.sweep.dir={tmp / 'sweep'}",
    ]


def read_startup(uri: str, experiment_id: str) -> list[tuple[str, float]]:
    """``(cold|warm, startup_s)`` of every training run in the experiment."""
    from mlflow import MlflowClient

    return [(run.data.tags.get(STARTUP_TAG, "?"), float(run.data.metrics[STARTUP]))
            for run in MlflowClient(uri).search_runs([experiment_id]) if STARTUP in run.data.metrics]


def import_seconds() -> float:
    """Seconds a fresh interpreter takes to import what a job imports."""
    code = f"import time; t = time.perf_counter(); {IMPORTS}; print(time.perf_counter() - t)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return round(float(out.stdout.strip().splitlines()[-1]), 2)


def measure_overhead(runs: int = 4, timeout_s: float = 900.0) -> dict:
    """Run the sweep in a fresh store and summarise its runs' ``startup_s``: ``startup_s`` is the
    median warm run (the per-run overhead in a worker), ``cold_start_s`` the first run."""
    from dnrt.tracking import ensure_experiment

    if runs < 2:
        raise ValueError("need >= 2 runs: one cold, the rest warm")
    with tempfile.TemporaryDirectory(prefix="dnrt-bench-") as d:
        tmp = Path(d)
        uri = f"sqlite:///{tmp / 'mlflow.db'}"
        t0 = time.perf_counter()
        experiment_id = ensure_experiment(uri, EXPERIMENT)
        store_s = time.perf_counter() - t0
        env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "DNRT_MAX_PARALLEL": "1"}
        t0 = time.perf_counter()
        proc = subprocess.run(job_command(tmp, runs), cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=timeout_s)
        wall = time.perf_counter() - t0
        errors = [f"sweep exit {proc.returncode}: {proc.stderr.strip()[-800:]}"] if proc.returncode else []
        startup = read_startup(uri, experiment_id)
    cold = [round(s, 2) for kind, s in startup if kind == STARTUP_COLD]
    warm = sorted(round(s, 2) for kind, s in startup if kind == STARTUP_WARM)
    if len(startup) != runs or len(cold) != 1:
        errors.append(f"expected {runs} runs, 1 cold: got {startup}")
    everything = cold + warm
    return {
        "startup_s": round(statistics.median(warm), 2) if warm else None,
        "warm_samples": warm,
        "cold_start_s": cold[0] if cold else None,
        "per_run_mean_s": round(statistics.fmean(everything), 2) if everything else None,
        "imports_s": import_seconds(),
        "sweep_wall_s": round(wall, 1),
        "store_create_s": round(store_s, 2),
        "job": f"a {runs}-run sweep on one local worker (hydra/launcher=parallel, DNRT_MAX_PARALLEL=1): "
               "resnet18 gelu none, 1 epoch of 32 synthetic images (B=32), fresh sqlite store",
        **({"errors": errors} if errors else {}),
    }
