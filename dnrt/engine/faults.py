"""``trainer.signal_at_step``: this process signals itself right after one global training step.

Tests use it to preempt a run at an exact step instead of racing a timer: the signal goes through
the same handlers a real ``scancel``/``scontrol requeue``/submitit SIGUSR2 would reach, so the
checkpoint lands after step ``k`` every time. A resumed run never repeats step ``k``, so the signal
fires once per run. ``null`` (the default) does nothing.
"""

from __future__ import annotations

import signal
from typing import Any

from ..config import ConfigError

SignalAt = tuple[int, signal.Signals]
SIGNALS = ("TERM", "USR2", "INT", "STOP", "KILL")  # STOP: freeze for the test; KILL: a hard crash


def parse_signal_at(setting: Any) -> SignalAt | None:
    """``{step: k, signal: TERM|USR2|INT|STOP|KILL}`` -> (k, signal); ``None`` -> ``None``."""
    if setting is None:
        return None
    step = setting.get("step") if hasattr(setting, "get") else None
    name = str(setting.get("signal", "TERM") if hasattr(setting, "get") else "").upper().removeprefix("SIG")
    if not isinstance(step, int) or isinstance(step, bool) or step < 1 or name not in SIGNALS:
        raise ConfigError(f"invalid config: trainer.signal_at_step={setting!r} (expected null or "
                          f"{{step: <global step >= 1>, signal: one of {', '.join(SIGNALS)}}})")
    return step, signal.Signals[f"SIG{name}"]


def after_step(at: SignalAt | None, global_step: int) -> None:
    """Signal this process if ``global_step`` (1-based, counted over epochs) is the chosen one."""
    if at is not None and global_step == at[0]:
        print(f"[dnrt] trainer.signal_at_step: {at[1].name} after global step {global_step}", flush=True)
        signal.raise_signal(at[1])  # handlers (the preemption watcher) run before this returns
