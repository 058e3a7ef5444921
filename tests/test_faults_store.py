"""The store under contention: another process holding the sqlite write lock while a run opens the
store, and two launches creating one brand-new store at the same moment."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from tests.harness.config import ROOT, SMALL

pytestmark = pytest.mark.slow  # launches whole sweeps in processes of their own

TINY = [*SMALL, "trainer.epochs=1"]

HOLD_LOCK = """
import sqlite3, sys, time
con = sqlite3.connect(sys.argv[1], isolation_level=None)
con.execute("BEGIN EXCLUSIVE")  # no other connection reads or writes until it ends
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
con.execute("COMMIT")
"""


def test_a_store_locked_by_another_process_at_start_is_waited_for_quietly(store):
    db = store.uri.removeprefix("sqlite:///")
    # longer than the store engine waits by itself: the first attempt to open the store fails with "locked"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, db, "12"], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    started = time.time()
    proc = store.launch(*TINY, *store.overrides())
    holder.wait(timeout=60)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert time.time() - started > 12  # it did wait for the lock
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
