"""The MLflow store: where it is, reaching it, creating it once, and surviving many writers.

Two failure modes of many processes starting at once against one sqlite file are designed out
here: the schema migration runs in one process at a time (whoever opens the store first, under a
lock file beside the database: the launching process, before fan-out), and experiments are
addressed by id afterwards, never created by name in a race. Opening the store (client, schema
check, migration) is retried like every write.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import random
import sqlite3
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from sqlalchemy.exc import DBAPIError

from ..tracking_schema import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG

log = logging.getLogger(__name__)
T = TypeVar("T")
_TRANSIENT = ("database is locked", "database table is locked", "busy", "connection", "timed out", "503", "502",
              "online migration")  # another process migrating the same new store
# The errors a store or its connection raises; a transient phrase in any other error (a bug that
# happens to say "connection") is not a reason to wait.
_STORE_ERRORS = (MlflowException, DBAPIError, sqlite3.Error, OSError)


def project_root() -> Path:
    return Path(__file__).resolve().parents[2]


def store_uri(uri: str | None) -> str:
    """``uri``, else ``sqlite:///<project root>/mlflow.db`` (what a run uses; no environment lookup)."""
    return uri or f"sqlite:///{project_root() / 'mlflow.db'}"


def resolve_uri(uri: str | None) -> str:
    """``uri``, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///<project root>/mlflow.db`` (command-line tools)."""
    return store_uri(uri or os.environ.get("MLFLOW_TRACKING_URI"))


def with_retry(fn: Callable[..., T], *args, attempts: int = 8, base_delay: float = 0.2, **kwargs) -> T:
    """Call ``fn``, retrying transient store errors (sqlite locks, a busy server; MLflow's, SQLAlchemy's
    or the network's) with jittered exponential backoff, and one warning line when it has to wait."""
    for attempt in range(attempts):
        try:
            return fn(*args, **kwargs)
        except _STORE_ERRORS as exc:
            transient = any(s in str(exc).lower() for s in _TRANSIENT)
            if not transient or attempt == attempts - 1:
                raise
            if attempt == 0:
                first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
                log.warning(f"MLflow store busy ({first}); retrying with backoff")
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


@contextlib.contextmanager
def _migration_lock(uri: str):
    """For a sqlite store, an exclusive lock on ``<db>.lock`` while the store is opened: of several
    processes opening a new store at once, one migrates it and the others find it migrated."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    db = Path(uri.removeprefix("sqlite:///"))
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.with_name(db.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _opened(uri: str) -> MlflowClient:
    client = MlflowClient(uri)
    client.search_experiments(max_results=1)  # builds the store: connection, schema check, migration
    return client


def open_client(uri: str) -> MlflowClient:
    """A client of the store at ``uri``, opened (and a new sqlite store migrated) under the same
    retry-with-backoff as writes; a tracking server that does not answer fails fast, naming it."""
    check_reachable(uri)
    with _migration_lock(uri):
        return with_retry(_opened, uri)


def ensure_experiment(uri: str, name: str) -> str:
    """Create the store (schema migration) and the experiment if needed; return its id. The
    experiment is tagged as a model-training experiment (``mlflow.experimentKind``)."""
    client = open_client(uri)
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
