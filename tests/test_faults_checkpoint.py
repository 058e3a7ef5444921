"""Checkpoint faults a cluster user meets: a run killed with its checkpoint then cut in half, a full
disk under the checkpoint root, a checkpoint that is not a torch checkpoint. Each against the real
store and checkpoint files; asserted: what the user sees and what MLflow holds afterwards."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dnrt.config import config_hash
from dnrt.engine.checkpoint import CheckpointUnreadable, load_checkpoint, save_checkpoint
from dnrt.tracking_schema import DETAIL_TAG, JOB_TAG
from dnrt.train import checkpoint_path, train
from tests.harness.config import SMALL, compose_cfg

TWO = [*SMALL, "trainer.epochs=2"]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _killed_after_epoch_1(store, args: list[str]) -> tuple[str, Path]:
    """A run stopped after epoch 1 with its checkpoint, then left as ``kill -9`` leaves it: RUNNING,
    owned by a process on this host that no longer exists."""
    cfg = compose_cfg([*args, "trainer.stop_after=1"])
    outcome = train(cfg)
    assert outcome.status == "stopped"
    store.client.update_run(outcome.run_id, "RUNNING")
    store.client.set_tag(outcome.run_id, JOB_TAG, f"{socket.gethostname()}:{_dead_pid()}")
    return outcome.run_id, checkpoint_path(cfg, config_hash(cfg))


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_truncated_checkpoint_of_a_killed_run_is_named_retired_and_started_afresh(store):
    args = [*TWO, *store.overrides()]
    dead, ckpt = _killed_after_epoch_1(store, args)
    _truncate(ckpt)

    plan = store.launch(*args, "--plan-json", check=True)
    assert '"action": "new"' in plan.stdout and f"unreadable checkpoint {ckpt}" in plan.stdout
    assert store.client.get_run(dead).info.status == "RUNNING"  # the plan changes nothing

    proc = store.launch(*args)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    warning = [line for line in out.splitlines() if "unreadable checkpoint" in line]
    assert len(warning) == 1 and str(ckpt) in warning[0] and "truncated" in warning[0]
    assert "Traceback" not in out and "weights_only" not in out
    runs = store.runs()
    assert sorted(r.info.status for r in runs) == ["FAILED", "FINISHED"]
    assert store.client.get_run(dead).info.status == "FAILED"
    new = next(r for r in runs if r.info.status == "FINISHED")
    assert [m.step for m in store.client.get_metric_history(new.info.run_id, "val/acc1")] == [1, 2]
    assert load_checkpoint(ckpt)["epoch"] == 2
    assert not list(ckpt.parent.glob("*.tmp*"))


def test_unreadable_last_checkpoint_resumes_from_the_previous_one(store):
    args = [*SMALL, "trainer.epochs=3", *store.overrides()]
    cfg = compose_cfg([*args, "trainer.stop_after=2"])
    run_id = train(cfg).run_id
    ckpt = checkpoint_path(cfg, config_hash(cfg))
    prev = ckpt.with_name("prev.pt")
    assert load_checkpoint(prev)["epoch"] == 1 and load_checkpoint(ckpt)["epoch"] == 2
    _truncate(ckpt)
    outcome = train(compose_cfg(args))
    assert outcome.status == "resumed" and outcome.run_id == run_id
    # epoch 2 is trained again from prev.pt, and logged once
    assert [m.step for m in store.client.get_metric_history(run_id, "val/acc1")] == [1, 2, 3]
    assert store.client.get_run(run_id).info.status == "FINISHED"


@pytest.mark.parametrize("content", ["truncated", "raw-pickle", "text"])
def test_unreadable_checkpoint_is_one_line_naming_the_file(tmp_path, content):
    path = tmp_path / "last.pt"
    if content == "truncated":
        save_checkpoint(path, {"epoch": 1, "w": torch.ones(1000)})
        _truncate(path)
    elif content == "raw-pickle":
        import pickle
        path.write_bytes(pickle.dumps({"epoch": 1}))
    else:
        path.write_text("not a checkpoint\n")
    with pytest.raises(CheckpointUnreadable) as err:
        load_checkpoint(path, mmap=True)
    message = str(err.value)
    assert message.startswith(f"unreadable checkpoint {path}: ") and "\n" not in message
    assert "weights_only" not in message and "mmap" not in message


FULL_DISK = """
import resource, signal, sys, torch
from dnrt.engine.checkpoint import save_checkpoint
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), int(sys.argv[2])))
save_checkpoint(sys.argv[1], {"epoch": 2, "w": torch.ones(100_000)})
"""


def test_a_full_disk_keeps_the_last_checkpoint_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "ckpt" / "last.pt"
    save_checkpoint(path, {"epoch": 1, "w": torch.zeros(10)})
    # a file-size limit in a child process: its writes fail with EFBIG as on a full disk
    proc = subprocess.run([sys.executable, "-c", FULL_DISK, str(path), "65536"], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last == (f"dnrt.engine.checkpoint.CheckpointSaveError: cannot save checkpoint {path}: "
                    "no space left on device (the previous checkpoint is kept)")
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.pt"]
    assert load_checkpoint(path)["epoch"] == 1



@pytest.fixture
def small_disk(tmp_path):
    """A 64 KiB tmpfs: a disk that fills up (mounting needs root; skipped elsewhere, where the
    file-size-limit test above covers the save itself)."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_fails_the_run_in_one_line_with_its_metrics_logged(store, small_disk):
    args = [*TWO, *store.overrides(), f"trainer.ckpt_root={small_disk}"]
    proc = store.launch(*args)
    ckpt = checkpoint_path(compose_cfg(args), config_hash(compose_cfg(args)))
    assert proc.returncode == 1
    error = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert f"cannot save checkpoint {ckpt}: no space left on device" in error[0]
    [run] = store.runs()
    assert run.info.status == "FAILED" and run.info.run_id in error[0]
    assert "no space left on device" in run.data.tags[DETAIL_TAG]
    # epoch 1 was trained and evaluated: its metrics are in MLflow although its checkpoint is not on disk
    assert [m.step for m in store.client.get_metric_history(run.info.run_id, "val/acc1")] == [1]
    # no temporary file fills the disk for the next attempt; only the signature's (empty) claim lock is there
    assert [p.name for p in ckpt.parent.iterdir()] == ["claim.lock"]
