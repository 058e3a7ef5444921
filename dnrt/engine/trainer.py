"""The epoch loop: train, evaluate, checkpoint, log; and exact resume from ``last.pt``."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from ..tracking import HEADLINE_TAG, RunTracker
from . import clock
from .build import Components
from .checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .distributed import DistInfo
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
    def __init__(self, cfg: DictConfig, comp: Components, dist_info: DistInfo, ckpt_path: Path, config_hash: str):
        self.cfg, self.c, self.dist, self.ckpt_path, self.config_hash = cfg, comp, dist_info, ckpt_path, config_hash
        t = cfg.trainer
        self.step_cfg = StepConfig(
            arr_weight=float(cfg.regularizer.weight) if comp.arr is not None else 0.0,
            label_smoothing=float(t.label_smoothing), grad_clip=t.grad_clip, amp_dtype=comp.amp_dtype,
            progress=bool(t.progress) and dist_info.is_main, signal_at=parse_signal_at(t.get("signal_at_step")),
            mixup=make_mixup(float(t.get("mixup_alpha", 0.0)), float(t.get("cutmix_alpha", 0.0)),
                             float(t.label_smoothing), getattr(comp.data, "num_classes", 0)))
        self.state = TrainState()

    # -- checkpoints -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        c = self.c
        return {
            "model": c.core.state_dict(), "optimizer": c.optimizer.state_dict(),
            "scheduler": c.scheduler.state_dict(), "scaler": c.scaler.state_dict() if c.scaler is not None else None,
            "arr": c.arr.state_dict() if c.arr is not None else None,
            "epoch": self.state.epoch, "history": self.state.history, "best_acc1": self.state.best_acc1,
            "run_id": self.state.run_id, "partial": self.state.partial, "rng": rng_state(),
            "config_hash": self.config_hash, "config_yaml": OmegaConf.to_yaml(self.cfg, resolve=True),
        }

    def load_state_dict(self, ckpt: dict[str, Any], weights_only: bool = False) -> None:
        c = self.c
        c.core.load_state_dict(ckpt["model"])
        if c.arr is not None and ckpt.get("arr") is not None:
            c.arr.load_state_dict(ckpt["arr"])
        if weights_only:
            return
        c.optimizer.load_state_dict(ckpt["optimizer"])
        c.scheduler.load_state_dict(ckpt["scheduler"])
        if c.scaler is not None and ckpt.get("scaler"):
            c.scaler.load_state_dict(ckpt["scaler"])
        set_rng_state(ckpt["rng"])
        self.state = TrainState(ckpt["epoch"], list(ckpt["history"]), ckpt["best_acc1"], ckpt["run_id"],
                                ckpt.get("partial"))

    def save(self) -> None:
        if self.dist.is_main:
            save_checkpoint(self.ckpt_path, self.state_dict())

    def resume_from(self, path: Path) -> None:
        self.load_state_dict(load_checkpoint(path, map_location=self.c.device))

    # -- the loop ----------------------------------------------------------------------------
    def fit(self, tracker: RunTracker, should_stop: Callable[[], bool] | None = None) -> float:
        """Train the remaining epochs; returns the final val top-1. Epochs already in MLflow are not
        logged again; epochs in the checkpoint but missing from MLflow are logged now."""
        cfg, c = self.cfg, self.c
        self.state.run_id = tracker.run_id or self.state.run_id
        logged = tracker.logged_steps()
        for record in self.state.history:
            if record["epoch"] not in logged:
                tracker.log_metrics({k: v for k, v in record.items() if k != "epoch"}, step=record["epoch"])
        stop_after = cfg.trainer.stop_after
        first_epoch = self.state.epoch
        # the fixed cost of a sweep job: (interpreter start, imports,) config, data, model, run creation
        tracker.log_metrics({"startup_s": clock.startup_s()}, step=first_epoch)
        # where it ran: a CPU run's speed depends on its thread count as much as on its device
        tracker.set_tags({"dnrt.startup": "warm" if clock.is_warm() else "cold", HEADLINE_TAG: c.headline,
                          "dnrt.device": str(c.device), "dnrt.threads": str(torch.get_num_threads())})
        for epoch in range(self.state.epoch, cfg.trainer.epochs):
            if stop_after is not None and epoch - first_epoch >= stop_after:
                raise StopRequested(f"stopped after epoch {epoch} (trainer.stop_after={stop_after})", epoch)
            c.train_loader.set_epoch(epoch)
            partial = self.state.partial or {}
            try:
                train_m = train_one_epoch(
                    c.model, c.train_loader, c.optimizer, c.scheduler, c.arr, self.step_cfg, epoch, c.device,
                    start_step=partial.get("step", 0), resume_sums=partial.get("sums"),
                    resume_times=tuple(partial.get("times", (0.0, 0.0))), should_stop=should_stop,
                    scaler=c.scaler)
            except Interrupted as stop:
                self.state.partial = {"step": stop.step, "sums": stop.sums, "times": [stop.data_time, stop.elapsed]}
                self.save()
                raise StopRequested(f"preempted in epoch {epoch + 1} after step {stop.step}", epoch) from None
            self.state.partial = None
            val_m = self.evaluate()
            metrics = {**train_m, **val_m}
            if c.epoch_metrics is not None:
                metrics.update(c.epoch_metrics(self.state.history, metrics))
            self.state.epoch = epoch + 1
            self.state.best_acc1 = max(self.state.best_acc1, val_m["val/acc1"])
            self.state.history.append({"epoch": epoch + 1, **metrics})
            self.save()  # before logging: a crash in between is repaired by the replay above
            tracker.log_metrics(metrics, step=epoch + 1)
            tracker.heartbeat()
            if self.dist.is_main and cfg.trainer.progress:
                log.info(f"[{tracker.run_id or 'run'}] epoch {epoch + 1}/{cfg.trainer.epochs} "
                         f"loss {metrics['train/loss']:.4f} train {metrics['train/acc1']:.2f}% "
                         f"val {metrics['val/acc1']:.2f}% ({metrics['train/throughput_img_s']:.0f} img/s)")
        if self.dist.world_size > 1 and c.arr is not None and c.arr.memory == "global":
            identical = memories_identical_across_ranks(c.arr)
            tracker.set_tags({"dnrt.arr_ranks_identical": str(identical).lower()})
            if not identical:
                raise RuntimeError("ARR memories diverged across DDP ranks")
        final = self.state.history[-1]["val/acc1"] if self.state.history else float("nan")
        summary = {"best/val_acc1": self.state.best_acc1, "final/val_acc1": final}
        if c.headline != "val/acc1" and self.state.history:  # e.g. val/auc -> best/val_auc, final/val_auc
            values = [h[c.headline] for h in self.state.history]
            name = c.headline.replace("/", "_")
            summary.update({f"best/{name}": max(values), f"final/{name}": values[-1]})
        tracker.log_metrics(summary, step=cfg.trainer.epochs)
        return final

    def evaluate(self) -> dict[str, float]:
        run = self.c.evaluate_fn or evaluate
        return run(self.c.model, self.c.val_loader, self.c.arr, self.c.device, self.c.amp_dtype)
