"""Real services for the test suite: a one-node SLURM cluster, an MLflow server, headless Chromium.

Each service module starts real processes and stops them again; ``tests.harness.fixtures`` turns
them into pytest fixtures. This module holds the small helpers they share.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import pytest


class ServiceUnavailable(RuntimeError):
    """A service could not be started (missing binary, daemon died, readiness timeout)."""


def in_ci() -> bool:
    """True when the environment says we run under CI (``CI=true``): missing services then fail."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def unavailable(reason: str) -> NoReturn:
    """Fail the test under CI, skip it elsewhere."""
    if in_ci():
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def claim_once_per_run(tmp_path_factory: pytest.TempPathFactory, what: str) -> None:
    """Fail if another pytest-xdist worker of this run already started ``what``.

    The xdist groups (``tests/harness/hooks.py``) keep every user of an expensive session fixture on
    one worker; if a pytest or xdist change broke the grouping, the fixture would quietly be built once
    per worker. A no-op without xdist, where a session fixture runs once anyway.
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not worker:
        return
    marker = tmp_path_factory.getbasetemp().parent / f"started-{what}"  # the run's directory, shared by workers
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        pytest.fail(f"{what} was already started by {marker.read_text() or 'another worker'}; {worker} would start "
                    "it again: the xdist groups are not honoured (pytest and pytest-xdist versions?)", pytrace=False)
    with os.fdopen(fd, "w") as f:
        f.write(worker)


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports on 127.0.0.1 that were free a moment ago."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    return free_ports(1)[0]


_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """``preexec_fn`` for service daemons: SIGTERM them if the test process dies (Linux only).

    Keeps a killed or crashed pytest from leaving daemons behind; a no-op where prctl is missing.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a log file, or a note that it does not exist."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"<no {path}>"
    return "\n".join(text.splitlines()[-lines:])


def wait_for(
    ready: Callable[[], bool],
    timeout: float,
    what: str,
    alive: Callable[[], str | None] = lambda: None,
    interval: float = 0.25,
) -> None:
    """Poll ``ready()`` until true; raise ServiceUnavailable on timeout or when ``alive()`` names a death."""
    deadline = time.monotonic() + timeout
    while True:
        dead = alive()
        if dead:
            raise ServiceUnavailable(f"{what}: {dead}")
        if ready():
            return
        if time.monotonic() > deadline:
            raise ServiceUnavailable(f"{what}: not ready after {timeout:.0f} s")
        time.sleep(interval)


def stop_process(proc: subprocess.Popen, timeout: float = 10.0, group: bool = False) -> None:
    """SIGTERM a process we started, SIGKILL if it lingers.

    With ``group`` the signal goes to the process group it leads (it was started with
    ``start_new_session=True``), so its worker children stop too, even if the leader already exited.
    """
    if proc.poll() is not None and not group:
        return

    def send(sig: int) -> None:
        try:
            if group:
                os.killpg(proc.pid, sig)
            else:
                proc.send_signal(sig)
        except ProcessLookupError:
            pass

    send(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        send(signal.SIGKILL)
        proc.wait(timeout=timeout)
    if group:
        send(signal.SIGKILL)  # stragglers of the group (a no-op when it is already empty)
