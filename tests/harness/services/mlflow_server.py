"""A real MLflow tracking server (and UI) on a free loopback port, for tests.

``mlflow server`` runs with a sqlite backend and proxied artifacts under a temp directory; the UI
helper runs ``mlflow ui`` against a store a test filled. Both are started as their own process
group (uvicorn forks workers) and stopped by signalling that group.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.harness.services import ServiceUnavailable, die_with_parent, free_port, stop_process, tail, wait_for

# One uvicorn worker: uvicorn then serves in-process. With several workers its supervisor kills
# and restarts workers that miss a health ping, which happens on a loaded machine while
# they still import mlflow. Requests are still served concurrently (threadpool for the WSGI app).
WORKERS = 1
# No huey job runner/consumers (prompt optimisation, trace rollups...): seven extra processes
# the tests never use.
SERVER_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


@dataclass
class MlflowService:
    """A running ``mlflow server`` / ``mlflow ui``: ``uri`` for clients, ``db_uri`` for its store."""

    uri: str
    db_uri: str
    port: int
    process: subprocess.Popen
    log_path: Path
    artifacts_dir: Path | None = None

    def log_tail(self, lines: int = 40) -> str:
        return tail(self.log_path, lines)


def health_ok(uri: str) -> bool:
    """``GET {uri}/health`` answers 200."""
    try:
        with urllib.request.urlopen(f"{uri}/health", timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _mlflow_cmd(*args: str) -> list[str]:
    """The mlflow CLI of the interpreter running the tests (the project's venv)."""
    return [sys.executable, "-m", "mlflow", *args]


@contextmanager
def _serve(args: Sequence[str], db_uri: str, log_path: Path, timeout: float,
           artifacts_dir: Path | None = None) -> Iterator[MlflowService]:
    """Start an mlflow CLI server process, wait for /health, stop its process group on exit."""
    port = free_port()
    cmd = _mlflow_cmd(*args, "--host", "127.0.0.1", "--port", str(port), "--workers", str(WORKERS))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING")} | SERVER_ENV
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True, cwd=log_path.parent,
                                preexec_fn=die_with_parent)
    service = MlflowService(f"http://127.0.0.1:{port}", db_uri, port, proc, log_path, artifacts_dir)
    try:
        t0 = time.monotonic()
        try:
            wait_for(lambda: health_ok(service.uri), timeout, f"mlflow ({' '.join(args[:1])})",
                     lambda: None if proc.poll() is None else f"exited with {proc.returncode}", interval=0.5)
        except ServiceUnavailable as exc:
            raise ServiceUnavailable(f"{exc} after {time.monotonic() - t0:.1f} s\n{service.log_tail()}") from exc
        yield service
    finally:
        stop_process(proc, timeout=15, group=True)


@contextmanager
def running_mlflow_server(root: Path, timeout: float = 60) -> Iterator[MlflowService]:
    """``mlflow server`` with ``sqlite:///<root>/mlflow.db`` and artifacts under ``<root>/artifacts``."""
    root.mkdir(parents=True, exist_ok=True)
    db_uri = f"sqlite:///{root / 'mlflow.db'}"
    artifacts = root / "artifacts"
    args = ["server", "--backend-store-uri", db_uri, "--artifacts-destination", str(artifacts)]
    with _serve(args, db_uri, root / "mlflow-server.log", timeout, artifacts) as service:
        yield service


@contextmanager
def start_mlflow_ui(backend_uri: str, timeout: float = 60, log_dir: Path | None = None) -> Iterator[MlflowService]:
    """``mlflow ui --backend-store-uri BACKEND_URI`` on a free port; yields the service (``.uri``).

    The log goes to ``log_dir`` (default: next to a sqlite store, else the working directory).
    Raises ServiceUnavailable with the log tail if the UI does not come up within ``timeout``.
    """
    if log_dir is None:
        log_dir = Path(backend_uri.removeprefix("sqlite:///")).parent if backend_uri.startswith("sqlite:///") \
            else Path.cwd()
    log = log_dir / f"mlflow-ui-{os.getpid()}-{time.monotonic_ns()}.log"
    with _serve(["ui", "--backend-store-uri", backend_uri], backend_uri, log, timeout) as service:
        yield service
