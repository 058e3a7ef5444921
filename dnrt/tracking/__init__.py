"""MLflow tracking: the store, one run per training run, the schema of docs/design.md §4."""

from .run import HASH_TAG, HEADLINE_TAG, HEARTBEAT_TAG, JOB_TAG, RunTracker, find_runs, git_sha
from .store import (
    TrackingUnreachable,
    check_reachable,
    ensure_experiment,
    open_client,
    project_root,
    resolve_uri,
    store_uri,
    with_retry,
)

__all__ = [
    "HASH_TAG", "HEADLINE_TAG", "HEARTBEAT_TAG", "JOB_TAG", "RunTracker", "TrackingUnreachable", "check_reachable",
    "ensure_experiment", "find_runs", "git_sha", "open_client", "project_root", "resolve_uri", "store_uri",
    "with_retry",
]
