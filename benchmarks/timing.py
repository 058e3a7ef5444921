"""Timing helpers: interleaved (round-robin) sampling, paired ratios and a peak-RSS sampler."""

from __future__ import annotations

import contextlib
import ctypes
import statistics
import threading
import time
from collections.abc import Callable

import psutil


def alternate(sides: dict[str, Callable[[], object]], rounds: int, calls: int = 1) -> dict[str, list[float]]:
    """Seconds per call of every side, one sample per side per round.

    Sides are interleaved (A B A B ... for two sides), and the starting side rotates each round, so
    drifting machine load affects all sides alike. A sample is the mean over ``calls`` calls.
    """
    names = list(sides)
    out: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            fn = sides[name]
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            out[name].append((time.perf_counter() - start) / calls)
    return out


def paired_ratio(numerator: list[float], denominator: list[float]) -> dict:
    """Median of the per-round ratios ``numerator[i] / denominator[i]``, with the samples, and
    ``min_ratio`` = min(numerator) / min(denominator) (robust to load bursts: noise only adds)."""
    if not numerator or len(numerator) != len(denominator):
        raise ValueError("need equally many (>= 1) samples of both sides")
    samples = [a / b for a, b in zip(numerator, denominator)]
    return {"ratio": round(statistics.median(samples), 4), "samples": [round(s, 4) for s in samples],
            "min_ratio": round(min(numerator) / min(denominator), 4)}


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def _malloc_trim() -> None:
    """Give freed heap memory back to the OS (glibc), so an RSS delta counts new allocations."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class PeakRSS:
    """Context manager: peak resident set size above the RSS at entry, sampled by a thread.

    On the CPU this is approximate (allocator caching, sampling interval); it counts activations,
    gradients and optimizer state allocated inside the block.
    """

    def __init__(self, interval_s: float = 0.005):
        self.interval_s = interval_s
        self.base = 0
        self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._proc = psutil.Process()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            self._stop.wait(self.interval_s)

    def __enter__(self) -> PeakRSS:
        _malloc_trim()
        self.base = self.peak = self._proc.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)

    @property
    def delta_mib(self) -> float:
        return round((self.peak - self.base) / 2**20, 1)
