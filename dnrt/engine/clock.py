"""When the current job started, for its ``startup_s`` (the fixed cost before its first step).

A process may run several jobs one after another (Hydra's basic launcher, a packed submitit job):
the first job's clock starts with the process (interpreter start and imports are its cost), a
later one's when the previous job of the process ended.
"""

from __future__ import annotations

import time

import psutil

_previous_end: float | None = None
_started: float | None = None


def begin_job() -> None:
    """Start the current job's clock (process start for the first job of the process)."""
    global _started
    _started = _previous_end if _previous_end is not None else psutil.Process().create_time()


def end_job() -> None:
    global _previous_end
    _previous_end = time.time()


def is_warm() -> bool:
    """Whether an earlier job of this process already paid for the interpreter and imports."""
    return _previous_end is not None


def startup_s() -> float:
    """Seconds from the current job's start until now."""
    started = _started if _started is not None else psutil.Process().create_time()
    return time.time() - started
