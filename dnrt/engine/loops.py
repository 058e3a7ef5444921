"""One training epoch and one evaluation pass. Sums stay on the device; the host reads them once
per epoch (and every ``refresh`` steps for the progress bar), so a step has no forced sync."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ..nn import ARR
from ..tracking_schema import (
    EPOCH_TIME,
    LR,
    TRAIN_ACC1,
    TRAIN_DATA_TIME_FRAC,
    TRAIN_LOSS,
    TRAIN_LOSS_ARR,
    TRAIN_LOSS_CE,
    TRAIN_THROUGHPUT,
    VAL_ACC1,
    VAL_ACC5,
    VAL_LOSS,
    VAL_LOSS_ARR,
)
from .amp import autocast
from .distributed import by_rank, rank_share, stop_agreed
from .faults import SignalAt, after_step


class NonFiniteLoss(FloatingPointError):
    """The training loss became NaN or infinite."""


class Interrupted(Exception):  # noqa: N818  (a control-flow signal, not an error)
    """Training stopped mid-epoch on request (preemption); ``step`` batches of the epoch are done
    and ``sums`` holds their running totals ([5]; under a process group each rank's, [world, 5], so
    every rank resumes its own and the epoch's all-reduce adds the same numbers in the same order),
    so the epoch can be resumed exactly."""

    def __init__(self, step: int, sums: torch.Tensor, data_time: float, elapsed: float):
        super().__init__(f"interrupted after step {step}")
        self.step, self.sums, self.data_time, self.elapsed = step, sums, data_time, elapsed


@dataclass
class StepConfig:
    """What a step needs from the trainer config."""

    arr_weight: float = 0.0
    label_smoothing: float = 0.0
    grad_clip: float | None = None
    amp_dtype: torch.dtype | None = None
    progress: bool = True
    refresh: int = 10
    finite_every: int = 20  # steps between host reads of the non-finite-loss flag (one sync each)
    signal_at: SignalAt | None = None  # trainer.signal_at_step (tests: preempt at an exact step)
    # timm's Mixup (trainer.mixup_alpha / cutmix_alpha > 0): (x, y) -> (mixed x, soft targets [B, K]);
    # the loss is then the soft-target cross entropy and ARR keeps the images' own labels.
    mixup: Callable | None = None


def make_mixup(mixup_alpha: float, cutmix_alpha: float, label_smoothing: float, num_classes: int):
    """timm's batch Mixup/CutMix (switch probability 0.5, applied to every batch) with label
    smoothing folded into its soft targets; None when both alphas are 0."""
    if not (mixup_alpha > 0 or cutmix_alpha > 0):
        return None
    from timm.data import Mixup

    return Mixup(mixup_alpha=mixup_alpha, cutmix_alpha=cutmix_alpha, prob=1.0, switch_prob=0.5, mode="batch",
                 label_smoothing=label_smoothing, num_classes=num_classes)


def _stop_code(should_stop: Callable[[], bool]) -> int:
    """0 to go on; else the stop's signal number where ``should_stop`` has one (``signum``), else 1."""
    if not should_stop():
        return 0
    return int(getattr(should_stop, "signum", None) or 1)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_one_epoch(model: nn.Module, loader, optimizer: torch.optim.Optimizer, scheduler, arr: ARR | None,
                    step_cfg: StepConfig, epoch: int, device: torch.device, desc: str = "", start_step: int = 0,
                    resume_sums: torch.Tensor | None = None, resume_times: tuple[float, float] = (0.0, 0.0),
                    should_stop: Callable[[], bool] | None = None,
                    scaler: torch.amp.GradScaler | None = None) -> dict[str, float]:
    """Train epoch ``epoch`` (0-based); returns ``train/*`` metrics, ``lr`` and timing.

    ``start_step``/``resume_sums`` continue a partly done epoch: the loader replays the same batches
    (its order and augmentation depend only on seed and epoch) and the first ``start_step`` are
    skipped. ``should_stop`` is polled between steps; when it returns True (under a process group:
    on any rank, :func:`~dnrt.engine.distributed.stop_agreed`), :class:`Interrupted` on every rank,
    and a ``should_stop`` with an ``agree(code)`` method learns the agreed stop code (a signal number).
    ``scaler`` (float16 autocast): see :func:`backward_and_step`. The scheduler is stepped after
    every optimizer step, ``step_update(global step + 1)``: step ``k`` (0-based) runs at the rate
    the schedule gives for ``k``.
    """
    model.train()
    if arr is not None:
        arr.train()
    steps = len(loader)
    sums = torch.zeros(5, device=device, dtype=torch.float64)  # loss, ce, arr, correct, seen
    # the first non-finite loss of the epoch (its step, 1-based, and value), kept on the device: the
    # host reads it every `finite_every` steps and at the end, never once per step
    bad_step = torch.zeros((), device=device, dtype=torch.long)
    bad_loss = torch.zeros((), device=device, dtype=torch.float32)
    if resume_sums is not None:
        sums += rank_share(resume_sums).to(device)
    bar = tqdm(total=steps, initial=start_step, desc=desc or f"epoch {epoch + 1}", disable=not step_cfg.progress,
               leave=False, mininterval=1.0)
    data_time, prior = resume_times
    start = time.perf_counter()
    t_fetch = time.perf_counter()
    for i, (x, y) in enumerate(loader):
        if i < start_step:
            t_fetch = time.perf_counter()
            continue
        # under DDP every rank votes, so all stop after the same step: one that stopped alone would leave
        # the others in the next gradient all-reduce
        if should_stop is not None and (code := stop_agreed(_stop_code(should_stop))):
            if hasattr(should_stop, "agree"):  # a rank the signal did not reach takes the others' reason
                should_stop.agree(code)
            bar.close()
            raise Interrupted(i, by_rank(sums).cpu(), data_time, prior + time.perf_counter() - start)
        data_time += time.perf_counter() - t_fetch
        soft = None
        if step_cfg.mixup is not None:
            x, soft = step_cfg.mixup(x, y)
        with autocast(device, step_cfg.amp_dtype):
            logits = model(x)
            if soft is None:
                ce = F.cross_entropy(logits.float(), y, label_smoothing=step_cfg.label_smoothing)
            else:
                ce = torch.sum(-soft * F.log_softmax(logits.float(), dim=-1), dim=-1).mean()
            reg = arr(y) if arr is not None else ce.new_zeros(())
            loss = ce + step_cfg.arr_weight * reg
        optimizer.zero_grad(set_to_none=True)
        backward_and_step(loss, model, optimizer, step_cfg.grad_clip, scaler)
        scheduler.step_update(num_updates=epoch * steps + i + 1)
        after_step(step_cfg.signal_at, epoch * steps + i + 1)
        with torch.no_grad():
            first_bad = (bad_step == 0) & ~torch.isfinite(loss.detach())
            bad_step = torch.where(first_bad, i + 1, bad_step)
            bad_loss = torch.where(first_bad, loss.detach().float(), bad_loss)
            if (i + 1) % step_cfg.finite_every == 0:
                _raise_if_non_finite(bad_step, bad_loss, epoch)
            n = y.shape[0]
            sums += torch.stack([loss.detach() * n, ce.detach() * n, reg.detach() * n,
                                 (logits.argmax(1) == y).sum(), torch.tensor(n, device=device)]).double()
        if step_cfg.progress and (i + 1) % step_cfg.refresh == 0:
            s = sums.tolist()
            bar.set_postfix(loss=f"{s[0] / s[4]:.3f}", acc=f"{100 * s[3] / s[4]:.1f}",
                            img_s=f"{s[4] / (prior + time.perf_counter() - start):.0f}")  # incl. a resumed part
        bar.update(1)
        t_fetch = time.perf_counter()
    _sync(device)
    elapsed = prior + time.perf_counter() - start
    bar.close()
    if dist.is_available() and dist.is_initialized():  # log the global batch, not rank 0's share
        dist.all_reduce(sums)
    _raise_if_non_finite(bad_step, bad_loss, epoch)
    loss_sum, ce_sum, arr_sum, correct, seen = sums.tolist()
    if not math.isfinite(loss_sum):  # a non-finite loss on another rank, or in a resumed part of the epoch
        raise NonFiniteLoss(f"training loss became {loss_sum} in epoch {epoch + 1}")
    seen = max(seen, 1.0)
    return {
        TRAIN_LOSS: loss_sum / seen, TRAIN_LOSS_CE: ce_sum / seen, TRAIN_LOSS_ARR: arr_sum / seen,
        TRAIN_ACC1: 100.0 * correct / seen, LR: optimizer.param_groups[0]["lr"],
        EPOCH_TIME: elapsed, TRAIN_THROUGHPUT: seen / max(elapsed, 1e-9),
        TRAIN_DATA_TIME_FRAC: data_time / max(elapsed, 1e-9),
    }


def _raise_if_non_finite(bad_step: torch.Tensor, bad_loss: torch.Tensor, epoch: int) -> None:
    step = int(bad_step)  # the one host sync
    if step:
        raise NonFiniteLoss(f"training loss became {float(bad_loss)} at step {step} of epoch {epoch + 1}")


def backward_and_step(loss: torch.Tensor, model: nn.Module, optimizer: torch.optim.Optimizer,
                      grad_clip: float | None, scaler: torch.amp.GradScaler | None = None) -> None:
    """Backward, clip the gradient norm to ``grad_clip`` (if set) and step. With a GradScaler the
    loss is scaled, the gradients are unscaled before clipping (the clip sees true norms), and a
    step whose gradients overflowed is skipped while the scaler lowers its scale."""
    if scaler is None:
        loss.backward()
        if grad_clip:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        return
    scaler.scale(loss).backward()
    if grad_clip:
        scaler.unscale_(optimizer)
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    scaler.step(optimizer)
    scaler.update()


@torch.no_grad()
def evaluate(model: nn.Module, loader, arr: ARR | None, device: torch.device,
             amp_dtype: torch.dtype | None = None) -> dict[str, float]:
    """``val/loss`` (CE), ``val/acc1``, ``val/acc5`` and, with ARR, ``val/loss_arr`` against the
    stored class means (the memory is not updated)."""
    model.eval()
    if arr is not None:
        arr.eval()
    sums = torch.zeros(5, device=device, dtype=torch.float64)  # ce, correct1, correct5, arr, seen
    for x, y in loader:
        with autocast(device, amp_dtype):
            logits = model(x).float()
            reg = arr(y) if arr is not None else logits.new_zeros(())
        n = y.shape[0]
        k = min(5, logits.shape[1])
        top = logits.topk(k, dim=1).indices
        sums += torch.stack([F.cross_entropy(logits, y, reduction="sum"), (top[:, 0] == y).sum(),
                             (top == y[:, None]).any(1).sum(), reg * n, torch.tensor(n, device=device)]).double()
    ce, c1, c5, reg_sum, seen = sums.tolist()
    seen = max(seen, 1.0)
    out = {VAL_LOSS: ce / seen, VAL_ACC1: 100.0 * c1 / seen, VAL_ACC5: 100.0 * c5 / seen}
    if arr is not None:
        out[VAL_LOSS_ARR] = reg_sum / seen
    return out
