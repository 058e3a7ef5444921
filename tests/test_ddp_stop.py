"""A stop under DDP: two gloo processes train one epoch of a DDP model through ``train_one_epoch``;
only rank 1 signals itself (``trainer.signal_at_step`` with ``rank: 1``), yet both ranks stop after the
same step, the rank that was not signalled says "preempted", and the epoch continued from what the
stop saved ends as the uninterrupted one."""

from __future__ import annotations

import json
import signal
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from dnrt.engine.distributed import broadcast_object
from dnrt.engine.faults import parse_signal_at
from dnrt.engine.loops import Interrupted, StepConfig, train_one_epoch
from dnrt.launching.preempt import PreemptionWatcher
from dnrt.tracking_schema import TRAIN_ACC1, TRAIN_LOSS, TRAIN_LOSS_CE

# Spawns gloo process groups: not in `make test-fast`.
pytestmark = pytest.mark.slow

STEPS, STOP_AFTER = 6, 2  # rank 1 signals itself right after step 2 (1-based) of 6


class _NoSchedule:
    def step_update(self, num_updates: int) -> None:
        pass


def _epoch(rank: int, step_cfg: StepConfig, **kw) -> tuple[nn.Module, dict | Interrupted]:
    """A fresh DDP linear model (the same on every rank) trained one epoch on this rank's fixed
    batches: (the model, the epoch's metrics or the Interrupted it raised)."""
    torch.manual_seed(0)
    model = nn.parallel.DistributedDataParallel(nn.Linear(4, 3))
    g = torch.Generator().manual_seed(rank)
    batches = [(torch.randn(8, 4, generator=g), torch.randint(0, 3, (8,), generator=g)) for _ in range(STEPS)]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    try:
        return model, train_one_epoch(model, batches, optimizer, _NoSchedule(), None, step_cfg, 0,
                                      torch.device("cpu"), **kw)
    except Interrupted as stop:
        # the epoch's remaining steps, from the sums the stop handed over (rank 0's copy: only rank 0
        # writes the checkpoint), as a resumed run continues it
        saved = broadcast_object(stop.sums)
        return model, {"stopped_after": stop.step, "sums_shape": list(stop.sums.shape),
                       **train_one_epoch(model, batches, optimizer, _NoSchedule(), None, step_cfg, 0,
                                         torch.device("cpu"), start_step=stop.step, resume_sums=saved)}


class _RecordingWatcher(PreemptionWatcher):
    """The preemption watcher, remembering whether this process itself caught a signal."""

    caught = False

    def _on_signal(self, signum, frame) -> None:
        self.caught = True
        super()._on_signal(signum, frame)


def _worker(rank: int, world: int, init_file: str, out: str) -> None:
    """An uninterrupted epoch, then the same epoch stopped by rank 1's signal and continued; writes
    where it stopped and why, and both epochs' metrics and weights."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    watcher = _RecordingWatcher().install()
    try:
        whole, whole_m = _epoch(rank, StepConfig(progress=False))
        cut_cfg = StepConfig(progress=False, signal_at=parse_signal_at({"step": STOP_AFTER, "signal": "USR2",
                                                                         "rank": 1}))
        cut, cut_m = _epoch(rank, cut_cfg, should_stop=watcher)
        result = {"signum": watcher.signum, "reason": watcher.reason, "caught": watcher.caught,
                  "same_weights": all(torch.equal(a, b) for a, b in zip(whole.parameters(), cut.parameters())),
                  **{f"whole/{k}": v for k, v in whole_m.items()}, **{f"cut/{k}": v for k, v in cut_m.items()}}
        with open(f"{out}/rank{rank}.json", "w") as f:
            json.dump(result, f)
    finally:
        watcher.restore()
        dist.destroy_process_group()


def test_a_signal_on_one_rank_stops_every_rank_after_the_same_step(tmp_path):
    ctx = mp.start_processes(_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=False,
                             start_method="spawn")
    deadline = time.monotonic() + 120  # a rank left alone in a gradient all-reduce must fail the test, not hang it
    try:
        while not ctx.join(timeout=1):
            assert time.monotonic() < deadline, "the ranks did not finish: one is waiting for the other"
    finally:
        for proc in ctx.processes:
            if proc.is_alive():
                proc.kill()
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    # only rank 1 was signalled; rank 0 takes its signal from the vote (and would hand it to submitit)
    assert [r["signum"] for r in ranks] == [signal.SIGUSR2, signal.SIGUSR2]
    assert [r["caught"] for r in ranks] == [False, True]
    assert [r["cut/stopped_after"] for r in ranks] == [STOP_AFTER, STOP_AFTER]
    assert [r["reason"] for r in ranks] == ["preempted", "preempted"]
    for r in ranks:  # the continued epoch is the uninterrupted one: every rank resumed its own sums
        assert r["cut/sums_shape"] == [2, 5] and r["same_weights"]
        for metric in (TRAIN_LOSS, TRAIN_LOSS_CE, TRAIN_ACC1):
            assert r[f"cut/{metric}"] == r[f"whole/{metric}"] == ranks[0][f"whole/{metric}"], metric
