"""The real services the suite relies on: SLURM (+ submitit, + the Hydra launcher configs),
an MLflow tracking server and UI, and headless Chromium."""

from __future__ import annotations

import functools
import http.server
import multiprocessing
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from hydra_plugins.dnrt_launcher.packed import assign_packs
from tests.harness.config import CONF
from tests.harness.launcher import base_env

# --------------------------------------------------------------------------------------------- SLURM


def _multiply(a: int, b: int) -> int:
    """Runs inside a SLURM job (imported there as tests.test_services._multiply)."""
    return a * b


def _fail() -> None:
    raise ValueError("raised inside the SLURM job")


def _sleep(seconds: float) -> None:
    time.sleep(seconds)


def _wait_done(job, timeout: float) -> None:
    """Poll a submitit job until done (its own wait()/result() have no timeout)."""
    deadline = time.monotonic() + timeout
    while not job.done():
        if time.monotonic() > deadline:
            pytest.fail(f"submitit job {job.job_id} not done after {timeout} s (state {job.state})")
        time.sleep(1)


def _sacct_final_state(job, timeout: float = 60) -> str:
    """The job's state as submitit reads it from sacct, once it is no longer PENDING/RUNNING."""
    deadline = time.monotonic() + timeout
    while True:
        state = job.get_info(mode="force").get("State", "UNKNOWN")
        if state not in ("UNKNOWN", "PENDING", "RUNNING", "COMPLETING", "REQUEUED"):
            return state
        if time.monotonic() > deadline:
            pytest.fail(f"sacct still reports {state} for job {job.job_id} after {timeout} s")
        time.sleep(1)


def _executor(folder: Path):
    import submitit

    executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
    executor.update_parameters(slurm_partition="debug", timeout_min=5, cpus_per_task=1, mem_gb=1)
    return executor


def test_sbatch_script_runs_to_completion(slurm_cluster, tmp_path):
    out = tmp_path / "out.txt"
    job_id = slurm_cluster.sbatch(f"echo hello-from-$SLURM_JOB_ID > {out}\n", "-o", str(tmp_path / "log"))
    assert slurm_cluster.wait(job_id, timeout=120) == "COMPLETED"
    assert out.read_text().strip() == f"hello-from-{job_id}"


def test_submitit_job_returns_its_result(slurm_cluster, tmp_path):
    job = _executor(tmp_path / "submitit").submit(_multiply, 6, 7)
    _wait_done(job, 180)
    assert job.result() == 42
    # Job state comes from sacct (slurmdbd accounting), not only from the result pickle.
    assert _sacct_final_state(job) == "COMPLETED"


def test_submitit_reports_failures(slurm_cluster, tmp_path):
    import submitit

    job = _executor(tmp_path / "submitit").submit(_fail)
    _wait_done(job, 180)
    with pytest.raises(submitit.core.utils.FailedJobError, match="raised inside the SLURM job"):
        job.result()
    assert _sacct_final_state(job) == "FAILED"


def test_submitit_sees_a_cancelled_job_through_sacct(slurm_cluster, tmp_path):
    """A job killed before writing a result is only 'done' because sacct reports CANCELLED."""
    job = _executor(tmp_path / "submitit").submit(_sleep, 600)
    deadline = time.monotonic() + 120
    while slurm_cluster.state(job.job_id) != "RUNNING":
        assert time.monotonic() < deadline, f"job {job.job_id} never started"
        time.sleep(0.5)
    job.cancel()
    _wait_done(job, 120)
    assert _sacct_final_state(job).startswith("CANCELLED")


def test_requeued_job_runs_again(slurm_cluster, tmp_path):
    runs = tmp_path / "runs.txt"
    script = f"""\
        echo "run ${{SLURM_RESTART_COUNT:-0}}" >> {runs}
        if [ "$(wc -l < {runs})" -lt 2 ]; then sleep 600; fi
        """
    job_id = slurm_cluster.sbatch(textwrap.dedent(script), "-o", str(tmp_path / "log"))
    deadline = time.monotonic() + 120
    while not (runs.exists() and runs.read_text()):
        assert time.monotonic() < deadline, f"job {job_id} never started: {slurm_cluster.state(job_id)}"
        time.sleep(0.5)
    slurm_cluster.requeue(job_id)
    assert slurm_cluster.wait(job_id, timeout=180) == "COMPLETED"
    assert runs.read_text().splitlines() == ["run 0", "run 1"]


# ----------------------------------------------------------------------- Hydra launcher configs


def _resources_override(name: str) -> str:
    """``resources=X`` if config.yaml lists the group in its defaults, else ``+resources=X``."""
    defaults = OmegaConf.to_container(OmegaConf.load(CONF / "config.yaml")).get("defaults", [])
    listed = any(isinstance(d, dict) and any(k.split(" ")[-1] == "resources" for k in d) for d in defaults)
    return f"{'' if listed else '+'}resources={name}"


def _hydra(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides), return_hydra_config=True).hydra


def _launcher(*overrides: str):
    return _hydra(*overrides).launcher


@pytest.mark.parametrize(
    "preset,expected",
    [
        ("cpu", {"cpus_per_task": 2, "gpus_per_node": None, "timeout_min": 60, "tasks_per_node": 1}),
        ("1gpu_4h", {"cpus_per_task": 8, "gpus_per_node": 1, "timeout_min": 240, "tasks_per_node": 1}),
        ("1gpu_24h", {"gpus_per_node": 1, "timeout_min": 1440, "tasks_per_node": 1}),
        ("4gpu_24h", {"gpus_per_node": 4, "tasks_per_node": 4, "timeout_min": 1440}),
        ("debug_cpu", {"partition": "debug", "cpus_per_task": 1, "mem_gb": 1, "timeout_min": 10}),
    ],
)
def test_resources_presets_set_slurm_launcher_keys(preset, expected):
    launcher = _launcher("hydra/launcher=slurm", _resources_override(preset))
    assert launcher._target_.endswith("SlurmLauncher")
    assert {k: launcher[k] for k in expected} == expected
    assert launcher.max_num_timeout == 5 and launcher.signal_delay_s in (30, 120)


def test_launcher_options_compose():
    slurm = _launcher("hydra/launcher=slurm")
    assert (slurm.timeout_min, slurm.cpus_per_task, slurm.gpus_per_node, slurm.mem_gb) == (240, 8, 1, 32)
    assert (slurm.array_parallelism, slurm.signal_delay_s, slurm.max_num_timeout) == (64, 120, 5)
    assert slurm.partition is None and slurm.submitit_folder.endswith("/.submitit/%j")
    assert _launcher("hydra/launcher=local")._target_.endswith("BasicLauncher")
    parallel = _launcher("hydra/launcher=parallel")
    assert parallel._target_.endswith("PackedLocalLauncher") and parallel.cpus_per_task == 1
    assert "export OMP_NUM_THREADS=1" in parallel.setup
    assert (parallel.max_jobs, parallel.runs_per_job) == (int(os.environ.get("DNRT_MAX_PARALLEL", 2)), 1)
    assert slurm._target_.endswith("PackedSlurmLauncher") and (slurm.runs_per_job, slurm.max_jobs) == (1, None)
    assert _launcher("hydra/launcher=slurm", "hydra.launcher.runs_per_job=8").runs_per_job == 8


@pytest.mark.parametrize("runs,per_job,max_jobs,expected", [
    (3, 1, None, [[0], [1], [2]]),  # the stock one run per job
    (5, 2, None, [[0, 3], [1, 4], [2]]),
    (5, 1, 2, [[0, 2, 4], [1, 3]]),  # max_jobs wins: more runs per job
    (2, 8, None, [[0, 1]]),
    (4, 1, 9, [[0], [1], [2], [3]]),
])
def test_assign_packs_deals_runs_round_robin(runs, per_job, max_jobs, expected):
    assert assign_packs(runs, per_job, max_jobs) == expected


@pytest.mark.parametrize("per_job,max_jobs,key", [(0, None, "runs_per_job"), (1, 0, "max_jobs")])
def test_assign_packs_names_a_bad_setting(per_job, max_jobs, key):
    with pytest.raises(ValueError, match=f"hydra.launcher.{key}"):
        assign_packs(4, per_job, max_jobs)


APP = """\
import os
from pathlib import Path

import hydra


@hydra.main(config_path={conf!r}, config_name="config", version_base="1.3")
def main(cfg):
    out = Path({out!r}) / f"seed{{cfg.seed}}.txt"
    env = os.environ
    out.write_text(f"{{env.get('SLURM_JOB_ID', '-')}} {{env.get('OMP_NUM_THREADS', '-')}} {{os.getpid()}}")
    return cfg.seed


if __name__ == "__main__":
    main()
"""


def _run_sweep(tmp_path: Path, *overrides: str, seeds: tuple[int, ...]) -> dict[int, list[str]]:
    """A Hydra multirun (one run per seed) of a tiny app on the project's config; returns
    seed -> [SLURM job id, threads, pid].

    The project's Hydra callbacks (MLflow sweep bookkeeping) are switched off: this checks the
    launcher configs, not the training glue, and keeps each job light.
    """
    out = tmp_path / "out"
    out.mkdir()
    app = tmp_path / "app.py"
    app.write_text(APP.format(conf=str(CONF), out=str(out)))
    callbacks = _hydra().get("callbacks", None) or {}
    no_callbacks = [f"~hydra.callbacks.{name}" for name in callbacks]
    env = base_env(MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}")  # SLURM_CONF: the fixture's
    cmd = [sys.executable, str(app), "-m", f"seed={','.join(map(str, seeds))}", f"hydra.sweep.dir={tmp_path / 'sweep'}",
           *no_callbacks, *overrides]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    return {seed: (out / f"seed{seed}.txt").read_text().split() for seed in seeds}


def test_hydra_slurm_launcher_packs_runs_into_jobs_on_the_cluster(slurm_cluster, tmp_path):
    """Three runs, two per job: runs 1 and 3 share a SLURM job and its process, run 2 gets its own
    (the default of one job per run is test_slurm.py's failing-cell sweep)."""
    results = _run_sweep(tmp_path, "hydra/launcher=slurm", _resources_override("debug_cpu"),
                         "hydra.launcher.runs_per_job=2", seeds=(1, 2, 3))
    assert all(job_id.isdigit() and threads == "1" for job_id, threads, _ in results.values())
    assert results[1] == results[3] != results[2]  # [job id, threads, pid]
    assert results[1][0] != results[2][0]  # two jobs


# -------------------------------------------------------------------------------------------- MLflow


def test_mlflow_server_roundtrip(mlflow_server):
    client = mlflow.MlflowClient(mlflow_server.uri)
    exp_id = client.create_experiment("roundtrip")
    run = client.create_run(exp_id, run_name="r")
    client.log_metric(run.info.run_id, "val/acc1", 87.5, step=3)
    client.set_terminated(run.info.run_id)
    (metric,) = client.get_metric_history(run.info.run_id, "val/acc1")
    assert (metric.value, metric.step) == (87.5, 3)
    assert client.get_run(run.info.run_id).info.status == "FINISHED"
    assert client.get_experiment_by_name("roundtrip").experiment_id == exp_id


def _log_points(uri: str, exp_id: str, worker: int, points: int) -> str:
    client = mlflow.MlflowClient(uri)
    run = client.create_run(exp_id, run_name=f"worker{worker}")
    for step in range(points):
        client.log_metric(run.info.run_id, "m", worker * 1000 + step, step=step)
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def test_mlflow_server_takes_concurrent_writers(mlflow_server):
    workers, points = 8, 50
    client = mlflow.MlflowClient(mlflow_server.uri)
    exp_id = client.create_experiment("concurrent")
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        run_ids = pool.starmap(_log_points, [(mlflow_server.uri, exp_id, w, points) for w in range(workers)])
    assert len(set(run_ids)) == workers
    total = 0
    for worker, run_id in enumerate(run_ids):
        history = sorted(client.get_metric_history(run_id, "m"), key=lambda m: m.step)
        assert [m.value for m in history] == [worker * 1000 + s for s in range(points)]
        total += len(history)
    assert total == workers * points


# ------------------------------------------------------------------------------------------- Browser


@pytest.fixture
def static_site(tmp_path) -> Iterator[str]:
    (tmp_path / "index.html").write_text(
        "<html><head><title>dnrt check</title></head>"
        "<body><h1 id='headline'>Dynamic Neural Response Tuning</h1></body></html>"
    )
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/index.html"
    finally:
        server.shutdown()
        server.server_close()


def test_browser_reads_a_local_page(browser, static_site):
    from selenium.webdriver.common.by import By

    browser.get(static_site)
    assert browser.title == "dnrt check"
    assert browser.find_element(By.ID, "headline").text == "Dynamic Neural Response Tuning"
