"""Checkpoints that load with ``torch.load(weights_only=True)``: tensors, numbers, strings and
containers only, so a checkpoint from an untrusted source cannot run code.

Saving keeps the last good checkpoint: the new one is written to a temporary file next to it and
renamed over ``last.pt`` only once complete, the one it replaces kept as ``prev.pt``; a failed write
removes its temporary file and names the cause (a full disk as such) and the path.
"""

from __future__ import annotations

import errno
import io
import os
import pickle
import random
import zipfile
from pathlib import Path
from typing import Any

import torch

from ..config import ConfigError


class CheckpointUnreadable(ConfigError):
    """A checkpoint file that cannot be loaded: truncated, not a torch checkpoint, or refused by
    ``weights_only`` (it holds objects other than tensors and plain values). One line naming the file."""

    def __init__(self, path: Path, why: str):
        super().__init__(f"unreadable checkpoint {path}: {why}")
        self.path, self.reason = path, why


class CheckpointSaveError(OSError):
    """Writing a checkpoint failed; the previous checkpoint is intact and no temporary file is left."""

    def __str__(self) -> str:  # the message alone, without OSError's "[Errno N]" prefix
        return str(self.strerror)


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(_as_tuple(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(x):
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


def previous_path(path: str | Path) -> Path:
    """Where the checkpoint that ``path`` replaced is kept (``last.pt`` -> ``prev.pt``)."""
    path = Path(path)
    return path.with_name("prev" + path.suffix)


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write atomically: a crash or a failed write mid-way leaves the previous checkpoint intact.

    The state is serialised in memory first, then written with plain file I/O: torch's own writer
    turns a full disk into an ``unexpected pos`` error, while ``os.write`` says ENOSPC/EFBIG."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(buffer.getbuffer())
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        full = exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
        why = "no space left on device" if full else (exc.strerror or str(exc))
        raise CheckpointSaveError(exc.errno, f"cannot save checkpoint {path}: {why} "
                                  f"(the previous checkpoint is kept)") from None
    if path.is_file():
        os.replace(path, previous_path(path))
    os.replace(tmp, path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu", mmap: bool = False) -> dict[str, Any]:
    """``mmap=True`` maps tensors lazily: cheap when only the small entries (run id, epoch) are read.
    Raises :class:`CheckpointUnreadable` (one line naming the file) for a file that cannot be loaded."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if not zipfile.is_zipfile(path):  # torch's format is a zip archive; mmap needs one too
        raise CheckpointUnreadable(path, "truncated or not a torch checkpoint (no zip archive)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        if "weights only" in str(exc).lower():
            raise CheckpointUnreadable(path, "refused: it holds objects other than tensors and plain values, "
                                             "which could run code when loaded") from None
        raise CheckpointUnreadable(path, f"corrupt ({str(exc).splitlines()[0][:120]})") from None
    except (RuntimeError, EOFError, ValueError, OSError, KeyError) as exc:
        raise CheckpointUnreadable(path, f"truncated or corrupt ({str(exc).splitlines()[0][:120]})") from None
    if not isinstance(state, dict) or "epoch" not in state:
        raise CheckpointUnreadable(path, "not a dnrt checkpoint (no epoch entry)")
    return state
