"""The MLflow store: where it is, reaching it, creating it once, and surviving many writers.

Two failure modes of many processes starting at once against one sqlite file are designed out
here: the schema migration runs in one process (whoever calls :func:`ensure_experiment` before
fan-out), and experiments are addressed by id afterwards, never created by name in a race.
"""

from __future__ import annotations

import os
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from ..tracking_schema import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG

T = TypeVar("T")
_TRANSIENT = ("database is locked", "database table is locked", "busy", "connection", "timed out", "503", "502")


def project_root() -> Path:
    return Path(__file__).resolve().parents[2]


def store_uri(uri: str | None) -> str:
    """``uri``, else ``sqlite:///<project root>/mlflow.db`` (what a run uses; no environment lookup)."""
    return uri or f"sqlite:///{project_root() / 'mlflow.db'}"


def resolve_uri(uri: str | None) -> str:
    """``uri``, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///<project root>/mlflow.db`` (command-line tools)."""
    return store_uri(uri or os.environ.get("MLFLOW_TRACKING_URI"))


def with_retry(fn: Callable[..., T], *args, attempts: int = 8, base_delay: float = 0.2, **kwargs) -> T:
    """Call ``fn``, retrying transient store errors (sqlite locks, a busy server) with jittered
    exponential backoff."""
    for attempt in range(attempts):
        try:
            return fn(*args, **kwargs)
        except (MlflowException, OSError) as exc:
            transient = any(s in str(exc).lower() for s in _TRANSIENT)
            if not transient or attempt == attempts - 1:
                raise
            time.sleep(base_delay * 2**attempt * (0.5 + random.random()))
    raise AssertionError("unreachable")


class TrackingUnreachable(ConnectionError):
    """The tracking server does not answer."""


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Fail fast, naming the URI, when an http(s) tracking server does not answer."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as resp:
            if resp.status == 200:
                return
            reason = f"HTTP {resp.status}"
    except (urllib.error.URLError, OSError) as exc:
        reason = str(getattr(exc, "reason", exc))
    raise TrackingUnreachable(f"MLflow tracking server at {uri} is unreachable ({reason}); start it "
                              "(make server) or point tracking.uri / MLFLOW_TRACKING_URI elsewhere")


EXPERIMENT_TAGS = {EXPERIMENT_KIND_TAG: EXPERIMENT_KIND}


def ensure_experiment(uri: str, name: str) -> str:
    """Create the store (schema migration) and the experiment if needed; return its id. The
    experiment is tagged as a model-training experiment (``mlflow.experimentKind``)."""
    check_reachable(uri)
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    client = MlflowClient(uri)
    exp = with_retry(client.get_experiment_by_name, name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            with_retry(client.restore_experiment, exp.experiment_id)
        for key, value in EXPERIMENT_TAGS.items():
            if exp.tags.get(key) != value:
                with_retry(client.set_experiment_tag, exp.experiment_id, key, value)
        return exp.experiment_id
    try:
        return with_retry(client.create_experiment, name, tags=EXPERIMENT_TAGS)
    except MlflowException:  # another process created it first
        exp = with_retry(client.get_experiment_by_name, name)
        if exp is None:
            raise
        return exp.experiment_id
