"""The store under contention: another process holding the sqlite write lock while a run opens the
store, and two launches creating one brand-new store at the same moment."""

from __future__ import annotations

import subprocess
import sys

import pytest
from mlflow.exceptions import MlflowException

from tests.harness.config import ROOT, SMALL

pytestmark = pytest.mark.slow  # launches whole sweeps in processes of their own

TINY = [*SMALL, "trainer.epochs=1"]

HOLD_LOCK = """
import sqlite3, sys, time
con = sqlite3.connect(sys.argv[1], isolation_level=None)
con.execute("BEGIN EXCLUSIVE")  # no other connection reads or writes until it ends
print("locked", flush=True)
sys.stdin.readline()  # held until the test has seen the run wait for it
con.execute("COMMIT")
"""


def test_a_store_locked_by_another_process_at_start_is_waited_for_quietly(store):
    db = store.uri.removeprefix("sqlite:///")
    # held until the run reports waiting, however long its start takes: the first attempt to open the
    # store then always fails with "locked", whatever the machine's load
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, db], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    assert holder.stdout.readline().strip() == "locked"
    proc = store.start(*TINY, *store.overrides())
    lines = []
    for line in proc.stdout:  # the run's output up to its first wait
        lines.append(line)
        if "MLflow store busy" in line:
            break
    holder.communicate("release\n", timeout=60)
    lines += proc.stdout.readlines()
    assert proc.wait(timeout=600) == 0, "".join(lines)[-3000:]
    out = "".join(lines)
    assert "Traceback" not in out, out[-3000:]
    warnings = [line for line in out.splitlines() if "MLflow store busy" in line]
    assert len(warnings) == 1 and "database is locked" in warnings[0], out[-3000:]
    [run] = store.runs()
    assert run.info.status == "FINISHED"


def test_two_launches_on_a_brand_new_store_migrate_it_once(fresh_store):
    cmd = [sys.executable, str(ROOT / "launch.py"), *TINY, *fresh_store.overrides()]
    procs = [subprocess.Popen([*cmd, f"seed={seed}"], cwd=fresh_store.root, env=fresh_store.env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for seed in (0, 1)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
        assert "Online migration" not in err and "Traceback" not in err, err[-3000:]
    runs = fresh_store.runs()
    assert sorted(r.data.params["seed"] for r in runs) == ["0", "1"]
    assert {r.info.status for r in runs} == {"FINISHED"}


def _flaky(exc: Exception, failures: int = 1):
    calls = []

    def fn():
        calls.append(1)
        if len(calls) <= failures:
            raise exc
        return "ok"

    return fn, calls


def test_with_retry_waits_out_a_locked_store_but_not_a_bug_that_mentions_a_connection():
    from sqlalchemy.exc import OperationalError

    from dnrt.tracking.store import with_retry

    for transient in (MlflowException("database is locked"), OperationalError("INSERT", {}, "database is locked"),
                      ConnectionError("connection reset by peer")):
        fn, calls = _flaky(transient)
        assert with_retry(fn, base_delay=0.001) == "ok" and len(calls) == 2, transient
    for not_store in (ValueError("bad connection string in the config"), KeyError("busy")):
        fn, calls = _flaky(not_store)
        with pytest.raises(type(not_store)):
            with_retry(fn, base_delay=0.001)
        assert len(calls) == 1, not_store
    fn, calls = _flaky(MlflowException("RESOURCE_DOES_NOT_EXIST: run abc"))  # a store error, not transient
    with pytest.raises(MlflowException):
        with_retry(fn, base_delay=0.001)
    assert len(calls) == 1
