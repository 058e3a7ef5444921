"""The sweep's run context as data: written once into the sweep directory by the launching
process, read by every job of the sweep (local, packed or on SLURM nodes sharing the directory)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

from ..types import RunContext

CONTEXT_FILE = "dnrt_sweep.json"


def write_context(sweep_dir: Path, context: RunContext) -> None:
    """Atomically write ``context`` (rename over a temp file: a job never reads half a file)."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    tmp = sweep_dir / f".{CONTEXT_FILE}.{os.getpid()}"
    tmp.write_text(json.dumps(asdict(context), indent=2))
    tmp.replace(sweep_dir / CONTEXT_FILE)


def read_context(sweep_dir: Path | None) -> RunContext | None:
    """The context of the sweep in ``sweep_dir``; None outside a sweep or before it was written."""
    if sweep_dir is None or not (sweep_dir / CONTEXT_FILE).is_file():
        return None
    return RunContext(**json.loads((sweep_dir / CONTEXT_FILE).read_text()))
