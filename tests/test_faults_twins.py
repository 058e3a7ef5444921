"""Two identical sweeps launched at the same moment: each signature is run exactly once, each sweep has
its own directory, summary and parent run, and the twin's cells are skipped, never run twice."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import pytest

from dnrt.config import config_hash
from dnrt.tracking_schema import HASH_TAG, KIND_TAG, SWEEP_DIR_TAG, SWEEP_KIND
from dnrt.train import checkpoint_path, train
from tests.harness.config import ROOT, SMALL, compose_cfg

pytestmark = pytest.mark.slow  # launches whole sweeps in processes of their own

TINY = [*SMALL, "trainer.epochs=1"]

HOLD_CLAIM = """
import fcntl, sys, time
f = open(sys.argv[1], "a")
fcntl.flock(f, fcntl.LOCK_EX)
print("claimed", flush=True)
sys.stdin.read()  # until the test closes it
"""


def test_a_signature_claimed_by_another_process_is_busy_and_not_run(store):
    cfg = compose_cfg([*TINY, *store.overrides()])
    lock = checkpoint_path(cfg, config_hash(cfg)).with_name("claim.lock")
    lock.parent.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_CLAIM, str(lock)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "claimed"
        outcome = train(cfg)
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert outcome.status == "skipped"
    assert outcome.detail == f"another process is starting this config (it holds {lock})"
    assert store.runs() == []  # nothing was created for it
    assert train(cfg).status == "finished"  # the claim died with its holder


def test_twin_sweeps_at_the_same_moment_run_each_signature_once(store):
    cmd = [sys.executable, str(ROOT / "launch.py"), "-m", "hydra/launcher=local", "seed=0,1,2,3", *TINY,
           *store.overrides()]
    procs = [subprocess.Popen(cmd, cwd=store.root, env=store.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=900) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, (out[-3000:], err[-3000:])
        assert "sweep summary: 4 runs" in out, out[-3000:]
    runs = store.runs()
    per_signature = Counter(r.data.tags[HASH_TAG] for r in runs)
    assert len(per_signature) == 4 and set(per_signature.values()) == {1}, per_signature
    assert {r.info.status for r in runs} == {"FINISHED"}
    parents = [r for r in store.runs(children_only=False) if r.data.tags.get(KIND_TAG) == SWEEP_KIND]
    assert len(parents) == 2 and {p.info.status for p in parents} == {"FINISHED"}
    assert len({p.data.tags[SWEEP_DIR_TAG] for p in parents}) == 2  # one directory per launch
    # between them the twins ran each cell once and skipped it once
    ran = sum(p.data.metrics["sweep/finished"] for p in parents)
    skipped = sum(p.data.metrics["sweep/skipped"] for p in parents)
    assert (ran, skipped) == (4, 4)
