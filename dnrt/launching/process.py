"""What the entry point owns for the whole process: intra-op threads, the job's identity as the
scheduler gives it, and the clock of the jobs one process runs one after another (Hydra's basic
launcher, a packed submitit job)."""

from __future__ import annotations

import os
import socket
import time

import psutil
import torch


def set_threads(n: int) -> None:
    """``n`` intra-op threads; 0 = ``$OMP_NUM_THREADS`` when a launcher set it (parallel jobs get 1
    each), else the cores this process may run on (its affinity, which SLURM narrows to the job)."""
    if n <= 0 and os.environ.get("OMP_NUM_THREADS", "").isdigit():
        n = int(os.environ["OMP_NUM_THREADS"])
    if n <= 0:
        n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    torch.set_num_threads(max(1, n))


def current_job_id() -> str:
    """The scheduler's id for this job (kept across SLURM requeues), else host:pid."""
    if os.environ.get("SLURM_ARRAY_JOB_ID"):
        return f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ.get('SLURM_ARRAY_TASK_ID', '')}"
    if os.environ.get("SLURM_JOB_ID"):
        return os.environ["SLURM_JOB_ID"]
    return f"{socket.gethostname()}:{os.getpid()}"


class JobClock:
    """When the current job started, for its ``startup_s`` (the fixed cost before its first step).

    The first job of a process starts with the process (interpreter start and imports are its cost),
    a later one when the previous job of the process ended."""

    def __init__(self) -> None:
        self.previous_end: float | None = None

    def begin(self) -> tuple[float, bool]:
        """Start the current job's clock: (its start in seconds since the epoch, whether an earlier
        job of this process already paid for the interpreter and imports)."""
        warm = self.previous_end is not None
        return (self.previous_end if warm else psutil.Process().create_time()), warm

    def end(self) -> None:
        self.previous_end = time.time()
