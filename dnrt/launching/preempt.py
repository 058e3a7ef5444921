"""Preemption: turn SLURM's warning signals into a checkpoint at the next step boundary.

submitit sends SIGUSR2 ``signal_delay_s`` before a time limit or preemption; its own handler
requeues the job and exits at once, which would lose the epoch in progress. This watcher takes
the signal, lets the trainer save a mid-epoch checkpoint, then hands over to submitit's handler
(requeue + exit). SIGTERM (``scancel``, ``scontrol requeue``) gets the same checkpoint, after which
the run is closed as KILLED and the next launch resumes it. SIGINT (Ctrl-C, sent to the whole process
group) is handled like SIGTERM; a second Ctrl-C interrupts at once, without the checkpoint.
"""

from __future__ import annotations

import signal
import threading


class PreemptionWatcher:
    """Callable ``() -> bool``: True once a stop signal arrived."""

    SIGNALS = (signal.SIGUSR2, signal.SIGTERM, signal.SIGINT)
    REASONS = {signal.SIGUSR2: "preempted", signal.SIGTERM: "preempted",
               signal.SIGINT: "interrupted by the user"}

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def install(self) -> PreemptionWatcher:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._on_signal)
        return self

    def _on_signal(self, signum, _frame) -> None:
        # print, not logging: a signal handler may interrupt a logging call that holds its lock
        print(f"[dnrt] caught {signal.Signals(signum).name}: checkpointing at the next step", flush=True)
        self.signum = signum
        if signum == signal.SIGINT:  # the next Ctrl-C stops at once
            signal.signal(signal.SIGINT, signal.default_int_handler)

    def agree(self, signum: int) -> None:
        """The ranks of a multi-process run agreed to stop for signal ``signum`` (the largest number
        any rank caught): a rank that caught none takes it, so rank 0 hands a SIGUSR2 that only
        another rank received over to submitit (which requeues the job)."""
        if self.signum is None and signum in {int(s) for s in self.SIGNALS}:
            self.signum = signal.Signals(signum)

    @property
    def reason(self) -> str:
        """Why training stops, for the run's status detail."""
        return self.REASONS.get(self.signum, "preempted")

    def __call__(self) -> bool:
        return self.signum is not None

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def hand_over(self) -> None:
        """After the checkpoint: let submitit requeue (SIGUSR2), if it installed a handler."""
        previous = self._previous.get(signal.SIGUSR2)
        self.restore()
        if self.signum == signal.SIGUSR2 and callable(previous):
            previous(signal.SIGUSR2, None)
