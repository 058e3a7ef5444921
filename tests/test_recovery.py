"""What a run does when it meets another run's traces: a RUNNING twin on another host (dead by its
heartbeat, or alive), and a checkpoint that carries a pickle payload."""

from __future__ import annotations

import time

import pytest
import torch

from dnrt.config import config_hash
from dnrt.engine.checkpoint import CheckpointUnreadable
from dnrt.tracking import ensure_experiment
from dnrt.tracking_schema import DETAIL_TAG, HASH_TAG, HEARTBEAT_TAG, JOB_TAG
from dnrt.train import checkpoint_path, train
from tests.harness.config import FAST, compose_cfg

TINY = [*FAST, "dataset.fraction=0.1", "trainer.epochs=1"]


def _running_twin(store, cfg, heartbeat: float) -> str:
    """A RUNNING run with ``cfg``'s signature, owned by a job on another host, last seen at ``heartbeat``."""
    experiment_id = ensure_experiment(store.uri, str(cfg.tracking.experiment))
    run = store.client.create_run(experiment_id, tags={HASH_TAG: config_hash(cfg), JOB_TAG: "elsewhere-node:4242",
                                                       HEARTBEAT_TAG: f"{heartbeat:.0f}"})
    return run.info.run_id


def test_running_twin_with_an_old_heartbeat_is_retired_and_retried(store):
    cfg = compose_cfg([*TINY, *store.overrides(), "tracking.stale_after_s=300"])
    dead = _running_twin(store, cfg, heartbeat=time.time() - 301 - 60)  # silent for longer than stale_after_s
    outcome = train(cfg)
    assert outcome.status == "finished" and outcome.run_id != dead
    old = store.client.get_run(dead)
    assert old.info.status == "FAILED"
    assert old.data.tags[DETAIL_TAG] == "failed: process died (stale heartbeat)"
    assert store.client.get_run(outcome.run_id).info.status == "FINISHED"


def test_running_twin_with_a_fresh_heartbeat_is_left_alone_as_busy(store):
    cfg = compose_cfg([*TINY, *store.overrides(), "tracking.stale_after_s=300"])
    live = _running_twin(store, cfg, heartbeat=time.time() - 240)  # within stale_after_s: alive elsewhere
    outcome = train(cfg)
    assert outcome.status == "skipped" and outcome.run_id == live
    assert outcome.detail == "a live run with this config is in progress elsewhere"
    assert [r.info.run_id for r in store.runs()] == [live]  # nothing new was started
    assert store.client.get_run(live).info.status == "RUNNING"
    assert not checkpoint_path(cfg, config_hash(cfg)).exists()


class Payload:
    """Unpickling this calls ``open(marker, "w")``: the file appears iff the pickle's code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def test_checkpoint_with_a_pickle_payload_is_refused_and_never_runs(store, tmp_path):
    cfg = compose_cfg([*TINY, *store.overrides()])
    marker = tmp_path / "payload-ran"
    evil = {"model": Payload(marker), "run_id": "x", "epoch": 1, "config_yaml": "", "config_hash": "x"}
    path = checkpoint_path(cfg, config_hash(cfg))  # where resume=auto looks for this config's checkpoint
    path.parent.mkdir(parents=True)
    torch.save(evil, path)
    torch.load(path, weights_only=False)  # the payload is live: a plain torch.load runs it
    assert marker.exists()
    marker.unlink()

    # resume=auto: the file is named as unreadable and the config starts afresh without loading it
    outcome = train(cfg)
    assert outcome.status == "finished" and not marker.exists()
    # a checkpoint named on the command line: refused in one line naming the file (exit 2 from launch.py)
    refused = pytest.raises(CheckpointUnreadable, match=f"^unreadable checkpoint {path.parent / 'prev.pt'}: refused")
    with refused:
        train(compose_cfg([*TINY, *store.overrides(), "seed=1", f"trainer.resume={path.parent / 'prev.pt'}"]))
    with refused:
        train(compose_cfg([f"trainer.eval_only={path.parent / 'prev.pt'}", *store.overrides()]))
    assert not marker.exists()
    assert [r.info.status for r in store.runs()] == ["FINISHED"]  # the refusals created no run
