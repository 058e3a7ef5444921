"""The epoch loop: train, evaluate, checkpoint, log; and exact resume from ``last.pt``."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import torch
from omegaconf import DictConfig, OmegaConf

from ..tracking import RunTracker
from ..tracking_schema import (
    ARR_RANKS_TAG,
    BEST_VAL_ACC1,
    DEVICE_TAG,
    FINAL_VAL_ACC1,
    HEADLINE_TAG,
    STARTUP,
    STARTUP_COLD,
    STARTUP_TAG,
    STARTUP_WARM,
    THREADS_TAG,
    TRAIN_ACC1,
    TRAIN_LOSS,
    TRAIN_THROUGHPUT,
    VAL_ACC1,
    best_metric,
    final_metric,
)
from ..types import Components, Job
from .checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .distributed import DistInfo, gather_objects, own_entry, wait_for_all
from .faults import parse_signal_at
from .loops import Interrupted, StepConfig, evaluate, make_mixup, train_one_epoch

log = logging.getLogger(__name__)


def memories_identical_across_ranks(arr) -> bool:
    """Whether every rank holds bit-identical ARR memories (docs/design.md §3: updated from all ranks)."""
    import torch.distributed as dist

    flat = torch.cat([torch.cat([m.mean.flatten().double(), m.count.double()]) for m in arr.memories])
    parts = [torch.empty_like(flat) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, flat)
    return all(torch.equal(parts[0], p) for p in parts[1:])


class StopRequested(Exception):  # noqa: N818  (control flow)
    """Training left off resumably (``trainer.stop_after`` or a preemption signal)."""

    def __init__(self, reason: str, epoch: int):
        super().__init__(reason)
        self.reason, self.epoch = reason, epoch


@dataclass
class TrainState:
    epoch: int = 0  # completed epochs
    history: list[dict[str, float]] = field(default_factory=list)  # one dict per completed epoch
    best_acc1: float = float("-inf")
    run_id: str | None = None
    partial: dict[str, Any] | None = None  # a preempted epoch: step, sums, times


class Trainer:
    """Trains ``parts`` as ``cfg`` says, checkpointing to ``ckpt_path`` after every epoch."""

    def __init__(self, cfg: DictConfig, parts: Components, dist_info: DistInfo, ckpt_path: Path, config_hash: str):
        self.cfg, self.parts, self.dist = cfg, parts, dist_info
        self.ckpt_path, self.config_hash = ckpt_path, config_hash
        settings = cfg.trainer
        self.step_cfg = StepConfig(
            arr_weight=float(cfg.regularizer.weight) if parts.arr is not None else 0.0,
            label_smoothing=float(settings.label_smoothing), grad_clip=settings.grad_clip, amp_dtype=parts.amp_dtype,
            progress=bool(settings.progress) and dist_info.is_main,
            signal_at=parse_signal_at(settings.get("signal_at_step")),
            mixup=make_mixup(float(settings.get("mixup_alpha", 0.0)), float(settings.get("cutmix_alpha", 0.0)),
                             float(settings.label_smoothing), getattr(parts.data, "num_classes", 0)))
        self.state = TrainState()

    # -- checkpoints -------------------------------------------------------------------------
    def state_dict(self, per_rank: list | None = None) -> dict[str, Any]:
        """The checkpoint; ``per_rank``: what each rank keeps for itself, from :meth:`_rank_state`
        gathered over the ranks (None: a single process)."""
        parts = self.parts
        return {
            "model": parts.core.state_dict(), "optimizer": parts.optimizer.state_dict(),
            "scheduler": parts.scheduler.state_dict(),
            "scaler": parts.scaler.state_dict() if parts.scaler is not None else None,
            "arr": parts.arr.state_dict() if parts.arr is not None else None,
            "epoch": self.state.epoch, "history": self.state.history, "best_acc1": self.state.best_acc1,
            "run_id": self.state.run_id, "partial": self.state.partial, "rng": rng_state(),
            "config_hash": self.config_hash, "config_yaml": OmegaConf.to_yaml(self.cfg, resolve=True),
            "per_rank": per_rank,
        }

    def _rank_state(self) -> dict[str, Any]:
        """This rank's own random state (dropout and drop-path masks differ per rank) and, with
        ``trainer.arr_memory=rank``, its own ARR memory."""
        arr = self.parts.arr
        return {"rng": rng_state(), "arr": arr.state_dict() if arr is not None and arr.memory == "rank" else None}

    def load_state_dict(self, ckpt: dict[str, Any], weights_only: bool = False) -> None:
        parts = self.parts
        parts.core.load_state_dict(ckpt["model"])
        if parts.arr is not None and ckpt.get("arr") is not None:
            parts.arr.load_state_dict(ckpt["arr"])
        if weights_only:
            return
        parts.optimizer.load_state_dict(ckpt["optimizer"])
        parts.scheduler.load_state_dict(ckpt["scheduler"])
        if parts.scaler is not None and ckpt.get("scaler"):
            parts.scaler.load_state_dict(ckpt["scaler"])
        set_rng_state(ckpt["rng"])
        own = own_entry(ckpt.get("per_rank"))  # a DDP checkpoint of as many ranks: each takes its own back
        if own is not None:
            set_rng_state(own["rng"])
            if parts.arr is not None and own["arr"] is not None:
                parts.arr.load_state_dict(own["arr"])
        self.state = TrainState(ckpt["epoch"], list(ckpt["history"]), ckpt["best_acc1"], ckpt["run_id"],
                                ckpt.get("partial"))

    def save(self) -> None:
        per_rank = gather_objects(self._rank_state())  # every rank takes part; rank 0 alone writes the file
        if self.dist.is_main:
            save_checkpoint(self.ckpt_path, self.state_dict(per_rank))

    def resume_from(self, path: Path) -> None:
        self.load_state_dict(load_checkpoint(path, map_location=self.parts.device))

    # -- the loop ----------------------------------------------------------------------------
    def fit(self, tracker: RunTracker, should_stop: Callable[[], bool] | None = None, job: Job | None = None
            ) -> float:
        """Train the remaining epochs; returns the final val top-1. Epochs already in MLflow are not
        logged again; epochs in the checkpoint but missing from MLflow are logged now. ``job``: whose
        clock gives ``startup_s`` (None: this process's, from its start)."""
        cfg, parts = self.cfg, self.parts
        self.state.run_id = tracker.run_id or self.state.run_id
        logged = tracker.logged_steps()
        for record in self.state.history:
            if record["epoch"] not in logged:
                tracker.log_metrics({k: v for k, v in record.items() if k != "epoch"}, step=record["epoch"])
        stop_after = cfg.trainer.stop_after
        first_epoch = self.state.epoch
        # the fixed cost of a sweep job: (interpreter start, imports,) config, data, model, run creation
        started = job.started if job is not None and job.started is not None else psutil.Process().create_time()
        tracker.log_metrics({STARTUP: time.time() - started}, step=first_epoch)
        # where it ran: a CPU run's speed depends on its thread count as much as on its device
        warm = job is not None and job.warm
        tracker.set_tags({STARTUP_TAG: STARTUP_WARM if warm else STARTUP_COLD, HEADLINE_TAG: parts.headline,
                          DEVICE_TAG: str(parts.device), THREADS_TAG: str(torch.get_num_threads())})
        for epoch in range(self.state.epoch, cfg.trainer.epochs):
            if stop_after is not None and epoch - first_epoch >= stop_after:
                raise StopRequested(f"stopped after epoch {epoch} (trainer.stop_after={stop_after})", epoch)
            parts.train_loader.set_epoch(epoch)
            partial = self.state.partial or {}
            try:
                train_m = train_one_epoch(
                    parts.model, parts.train_loader, parts.optimizer, parts.scheduler, parts.arr, self.step_cfg, epoch,
                    parts.device,
                    start_step=partial.get("step", 0), resume_sums=partial.get("sums"),
                    resume_times=tuple(partial.get("times", (0.0, 0.0))), should_stop=should_stop,
                    scaler=parts.scaler)
            except Interrupted as stop:
                self.state.partial = {"step": stop.step, "sums": stop.sums, "times": [stop.data_time, stop.elapsed]}
                try:
                    self.save()
                finally:  # no rank leaves (and ends the job's step) before rank 0 has written, or failed to
                    wait_for_all()
                why = getattr(should_stop, "reason", "preempted")
                raise StopRequested(f"{why} in epoch {epoch + 1} after step {stop.step}", epoch) from None
            self.state.partial = None
            val_m = self.evaluate()
            metrics = {**train_m, **val_m}
            if parts.epoch_metrics is not None:
                metrics.update(parts.epoch_metrics(self.state.history, metrics))
            self.state.epoch = epoch + 1
            self.state.best_acc1 = max(self.state.best_acc1, val_m[VAL_ACC1])
            self.state.history.append({"epoch": epoch + 1, **metrics})
            # logged before the checkpoint is saved, so a failed save (a full disk) loses no metrics; an
            # epoch logged but not saved is trained again on resume and not logged a second time
            if epoch + 1 not in logged:
                tracker.log_metrics(metrics, step=epoch + 1)
            tracker.heartbeat()
            self.save()
            if self.dist.is_main and cfg.trainer.progress:
                log.info(f"[{tracker.run_id or 'run'}] epoch {epoch + 1}/{cfg.trainer.epochs} "
                         f"loss {metrics[TRAIN_LOSS]:.4f} train {metrics[TRAIN_ACC1]:.2f}% "
                         f"val {metrics[VAL_ACC1]:.2f}% ({metrics[TRAIN_THROUGHPUT]:.0f} img/s)")
        if self.dist.world_size > 1 and parts.arr is not None and parts.arr.memory == "global":
            identical = memories_identical_across_ranks(parts.arr)
            tracker.set_tags({ARR_RANKS_TAG: str(identical).lower()})
            if not identical:
                raise RuntimeError("ARR memories diverged across DDP ranks")
        final = self.state.history[-1][VAL_ACC1] if self.state.history else float("nan")
        summary = {BEST_VAL_ACC1: self.state.best_acc1, FINAL_VAL_ACC1: final}
        if parts.headline != VAL_ACC1 and self.state.history:  # e.g. val/auc -> best/val_auc, final/val_auc
            values = [h[parts.headline] for h in self.state.history]
            summary.update({best_metric(parts.headline): max(values), final_metric(parts.headline): values[-1]})
        tracker.log_metrics(summary, step=cfg.trainer.epochs)
        return final

    def evaluate(self) -> dict[str, float]:
        parts = self.parts
        run = parts.evaluate_fn or evaluate
        return run(parts.model, parts.val_loader, parts.arr, parts.device, parts.amp_dtype)
