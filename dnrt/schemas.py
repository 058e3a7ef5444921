"""Typed schemas of the config groups whose keys are fixed, registered in Hydra's ConfigStore.

Each YAML of such a group lists its schema first in its defaults (``- /schema/trainer@_here_``), so
a key the schema does not have (``+trainer.foo=1``) or a value of the wrong type
(``trainer.epochs=three``) fails at composition with Hydra's own message. The fields are exactly
the YAML's keys, so a schema adds no param to any run (and changes no signature).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional  # noqa: UP035 (OmegaConf's structured configs need Optional)

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class TrainerConf:
    epochs: int = MISSING
    batch_size: int = MISSING
    amp: Any = "auto"  # auto | true | false | bf16 | fp16
    grad_clip: Optional[float] = None  # noqa: UP045
    label_smoothing: float = 0.0
    device: str = "auto"
    workers: int = 0
    threads: int = 0
    compile: bool = False
    channels_last: Any = "auto"  # auto | true | false
    progress: bool = True
    ckpt_root: str = MISSING
    log_checkpoint: bool = False
    resume: Optional[str] = "auto"  # noqa: UP045
    eval_only: Optional[str] = None  # noqa: UP045
    stop_after: Optional[int] = None  # noqa: UP045
    signal_at_step: Any = None  # {step: k, signal: TERM | USR2 | INT | STOP | KILL, rank: r (optional)}
    arr_average: str = "tap"  # tap | width
    lr_scale: str = "global"  # global | device
    arr_memory: str = "global"  # global | rank
    sync_bn: bool = False
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0


@dataclass
class TrackingConf:
    uri: Optional[str] = None  # noqa: UP045
    experiment: str = "dnrt"
    system_metrics: bool = False
    stale_after_s: float = 300.0


@dataclass
class NoRegularizerConf:
    name: str = "none"
    weight: float = 0.0


@dataclass
class ArrConf:
    name: str = "arr"
    weight: float = MISSING
    weight_by_dataset: dict[str, float] = field(default_factory=dict)
    momentum: float = 0.1
    taps: Optional[list[str]] = None  # noqa: UP045
    pooling: Optional[str] = None  # noqa: UP045


SCHEMAS = {"trainer": TrainerConf, "tracking": TrackingConf, "regularizer_none": NoRegularizerConf,
           "regularizer_arr": ArrConf}


def register_schemas() -> None:
    """Store every schema as ``schema/<name>`` (idempotent)."""
    store = ConfigStore.instance()
    for name, node in SCHEMAS.items():
        store.store(group="schema", name=name, node=node, provider="dnrt")
