"""OmegaConf resolvers used by the YAML files in ``conf/``. Registered when ``dnrt`` is imported:
under ``launch.py`` the launcher plugin's schema module imports it during Hydra's plugin scan, before
the config is composed; anywhere else, importing any ``dnrt`` module does.

- ``${dnrt.scale_lr:BASE,BATCH,REF}``: the linear scaling rule, ``BASE * BATCH / REF``
  (``optim=paper``: 5e-4 at batch 512).
- ``${dnrt.lookup:KEY,{k: v, ...},DEFAULT}``: ``v`` for ``KEY`` in the table, else ``DEFAULT``
  (the paper presets' per-model drop path).
- ``${dnrt.launch_id:}``: six hex digits, one value per launch (the sweep directory's name).
"""

from __future__ import annotations

import os
import uuid
from typing import Any

from omegaconf import OmegaConf


def scale_lr(base_lr: float, batch_size: int, ref_batch_size: int) -> float:
    """``base_lr`` at ``ref_batch_size``, scaled linearly to ``batch_size``."""
    for key, value in (("base_lr", base_lr), ("batch_size", batch_size), ("ref_batch_size", ref_batch_size)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ValueError(f"dnrt.scale_lr: {key}={value!r} must be a number > 0")
    return float(base_lr) * batch_size / ref_batch_size


def lookup(key: Any, table: Any, default: Any) -> Any:
    """``table[key]`` if present, else ``default``."""
    if not hasattr(table, "get"):
        raise ValueError(f"dnrt.lookup: the table must be a mapping, got {table!r}")
    return table.get(key, default)


LAUNCH_ID_ENV = "DNRT_LAUNCH_ID"


def launch_id() -> str:
    """This launch's id: ``launch.py`` sets a fresh one in its environment, which the jobs it starts
    (local workers, SLURM jobs) inherit, so they resolve the same sweep directory; made here where
    nothing set it (Hydra's compose API)."""
    return os.environ.setdefault(LAUNCH_ID_ENV, uuid.uuid4().hex[:6])


RESOLVERS = {"dnrt.scale_lr": scale_lr, "dnrt.lookup": lookup, "dnrt.launch_id": launch_id}


def register_resolvers() -> None:
    """Register every resolver once (idempotent: importing twice is harmless)."""
    for name, fn in RESOLVERS.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)
