"""``trainer.signal_at_step``: this process signals itself right after one global training step.

Tests use it to preempt a run at an exact step instead of racing a timer: the signal goes through
the same handlers a real ``scancel``/``scontrol requeue``/submitit SIGUSR2 would reach, so the
checkpoint lands after step ``k`` every time. A resumed run never repeats step ``k``, so the signal
fires once per run. ``rank: r`` signals only the process of DDP rank ``r`` (a signal that reaches
one rank first); without it every rank signals itself. ``null`` (the default) does nothing.
"""

from __future__ import annotations

import signal
from typing import Any, NamedTuple

import torch.distributed as dist

from ..config import ConfigError

SIGNALS = ("TERM", "USR2", "INT", "STOP", "KILL")  # STOP: freeze for the test; KILL: a hard crash


class SignalAt(NamedTuple):
    step: int  # global training step (1-based, counted over epochs)
    signal: signal.Signals
    rank: int | None = None  # only this DDP rank; None: every rank


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_signal_at(setting: Any) -> SignalAt | None:
    """``{step: k, signal: TERM|USR2|INT|STOP|KILL, rank: r}`` (``rank`` optional) -> SignalAt;
    ``None`` -> ``None``."""
    if setting is None:
        return None
    keyed = hasattr(setting, "get")
    step = setting.get("step") if keyed else None
    name = str(setting.get("signal", "TERM") if keyed else "").upper().removeprefix("SIG")
    rank = setting.get("rank") if keyed else None
    if not _int(step) or step < 1 or name not in SIGNALS or not (rank is None or (_int(rank) and rank >= 0)):
        raise ConfigError(f"invalid config: trainer.signal_at_step={setting!r} (expected null or "
                          f"{{step: <global step >= 1>, signal: one of {', '.join(SIGNALS)}, "
                          f"rank: <optional DDP rank >= 0>}})")
    return SignalAt(step, signal.Signals[f"SIG{name}"], rank)


def _rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def after_step(at: SignalAt | None, global_step: int) -> None:
    """Signal this process if ``global_step`` (1-based, counted over epochs) is the chosen one (and
    this process is the chosen rank, if one is)."""
    if at is not None and global_step == at.step and (at.rank is None or at.rank == _rank()):
        print(f"[dnrt] trainer.signal_at_step: {at.signal.name} after global step {global_step}", flush=True)
        signal.raise_signal(at.signal)  # handlers (the preemption watcher) run before this returns
