"""How the tests launch a script: ``python SCRIPT ARGS`` in the test process, or in a process of its own.

:func:`launch` is the one entry point (``Store.launch`` calls it with the store's environment).

- **In the test process** (the default): the script runs as ``__main__`` through :func:`run_script`. A
  command whose runs stay in the launching process (CLI refusals, plans, local sweeps, and the launchers
  of parallel and SLURM sweeps, whose jobs run elsewhere anyway) then costs no fresh interpreter's imports
  of torch, timm, Hydra and MLflow, and gives the same exit code and output.
- **In a process of its own** (``own_process=True``, or :func:`start` for one that runs in the
  background): only where the command itself is signalled or killed (SIGTERM/SIGKILL injection,
  ``scontrol requeue``), where its exit must be a real process exit, or where it starts workers of its
  own that must not inherit the test process (``torch.distributed.run``): a signal would otherwise hit
  pytest.

Environment: a launched command gets the environment a user's shell would give it (``base_env``), not the
test process's thread policy (:data:`SESSION_THREADS`), so the thread count its runs get comes from
their config or their launcher's setup lines, as it would for a user.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import runpy
import subprocess
import sys
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from tests.harness.config import ROOT

LAUNCH = ROOT / "launch.py"
# The test process's thread policy (:func:`set_session_threads`): one intra-op thread. The two xdist workers
# and the runs they launch share the machine's cores; with torch's default of a thread per core, each
# process's OpenMP threads spin at barriers while another process holds the core, and small forward
# passes get many times slower. Runs trained in the test process at ``trainer.threads=0`` read it too.
SESSION_THREADS = {"OMP_NUM_THREADS": "1"}
_USER_ENV: dict[str, str | None] = {}  # the values SESSION_THREADS replaced


def set_session_threads() -> None:
    """Give this process :data:`SESSION_THREADS` (called once, from ``pytest_configure``): torch reads
    ``OMP_NUM_THREADS`` when it is imported, and is told directly if it already was."""
    for key, value in SESSION_THREADS.items():
        _USER_ENV.setdefault(key, os.environ.get(key))
        os.environ[key] = value
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(int(SESSION_THREADS["OMP_NUM_THREADS"]))


def base_env(**extra: str) -> dict[str, str]:
    """``os.environ`` as the user's shell had it (the session's thread policy taken back out), plus
    ``extra``: the environment of a launched command."""
    env = dict(os.environ)
    for key, value in _USER_ENV.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return {**env, **extra}


def launch(args: Sequence[str], cwd: Path, env: Mapping[str, str], own_process: bool = False,
           script: Path = LAUNCH, timeout: float = 900, check: bool = False) -> subprocess.CompletedProcess:
    """``python SCRIPT ARGS`` in ``cwd`` with exactly ``env``; in the test process unless ``own_process``
    (see the module docstring for when). With ``check`` a non-zero exit raises with the output."""
    if own_process:
        proc = subprocess.run([sys.executable, str(script), *args], cwd=cwd, env=dict(env), capture_output=True,
                              text=True, timeout=timeout)
    else:
        proc = run_script(script, list(args), cwd=cwd, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, proc.args))} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def start(args: Sequence[str], cwd: Path, env: Mapping[str, str], script: Path = LAUNCH) -> subprocess.Popen:
    """``python SCRIPT ARGS`` in a background process of its own, stdout and stderr merged into one pipe."""
    return subprocess.Popen([sys.executable, str(script), *args], cwd=cwd, env=dict(env), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def run_script(script: Path, args: list[str], cwd: Path, env: Mapping[str, str]) -> subprocess.CompletedProcess:
    """Run a Python script in this process as ``python SCRIPT ARGS`` would: as ``__main__`` (so Hydra finds
    its config next to it), with ``sys.argv``, the working directory and ``os.environ`` set for the call and
    stdout and stderr captured. ``SystemExit`` becomes the exit code (a message is printed to stderr and
    gives 1, as the interpreter does) and an uncaught exception a printed traceback with exit code 1.

    Undone afterwards: ``sys.argv``, the working directory, the environment, Hydra's global state, the
    root logger's handlers and level (Hydra's job logging adds its own), and torch's intra-op thread
    count (a run sets it from its config)."""
    # torch imported under the session's environment, not the script's (OpenMP reads OMP_NUM_THREADS when
    # torch is first imported), so the count restored afterwards is the session's
    import torch
    from hydra.core.global_hydra import GlobalHydra

    out, err = io.StringIO(), io.StringIO()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    threads = torch.get_num_threads()
    code = 0
    argv = [str(script), *args]
    environ = dict(os.environ)
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        patch.setattr(sys, "argv", argv[:])
        patch.chdir(cwd)
        os.environ.clear()
        os.environ.update(env)
        GlobalHydra.instance().clear()
        try:
            runpy.run_path(str(script), run_name="__main__")
        except SystemExit as exc:  # as the interpreter does: sys.exit("message") prints it and exits 1
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            if not isinstance(exc.code, int | None):
                print(exc.code, file=sys.stderr)
        except Exception:
            traceback.print_exc()
            code = 1
        finally:
            GlobalHydra.instance().clear()
            os.environ.clear()  # whole: what the script set as well as what the call changed
            os.environ.update(environ)
            for handler in root.handlers:
                if handler not in handlers:
                    handler.close()
            root.handlers[:] = handlers
            root.setLevel(level)
            torch.set_num_threads(threads)
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())

