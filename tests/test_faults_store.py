"""The store under contention: another process holding the sqlite write lock while a run opens the
store, and two launches creating one brand-new store at the same moment."""

from __future__ import annotations

import subprocess
import sys

import pytest

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
