"""Host allocator settings: keep freed tensor memory in the process instead of handing it back.

With glibc's defaults a CPU training step maps fresh pages for many of its multi-MiB tensors
(activations, ARR buffers) and returns them when they are freed, so the next step faults every
page in again. That can make the vectorised ARR memory update several times slower in some
processes than in others, depending on which allocations happened first. Raising the
mmap and trim thresholds keeps those pages in the heap for reuse: the CPU counterpart of CUDA's
caching allocator. ``DNRT_MALLOC_KEEP=0`` leaves the defaults alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_TRIM_THRESHOLD = -1  # glibc mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 2**20  # glibc's largest allowed value on 64-bit
TRIM_THRESHOLD = 1 * 2**30

_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Apply the thresholds once per process; True when glibc accepted them (False elsewhere,
    e.g. musl or macOS, or when switched off)."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get("DNRT_MALLOC_KEEP", "1") == "0":
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    _applied = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _applied
