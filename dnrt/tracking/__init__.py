"""MLflow tracking: the store and one run per training run; the names they use are in
:mod:`dnrt.tracking_schema` (docs/design.md §4)."""

from .run import RunTracker, find_runs, git_sha
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
    "RunTracker", "TrackingUnreachable", "check_reachable", "ensure_experiment", "find_runs",
    "git_sha", "open_client", "project_root", "resolve_uri", "store_uri", "with_retry",
]
