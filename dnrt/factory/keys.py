"""Key checks: every key of every config group acts, and a key nothing reads is an error naming it.

Errors are :class:`~dnrt.config.ConfigError`, one line: ``<key>=<value>: <why>; valid: ...``.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import fields
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import get_method
from omegaconf import DictConfig, OmegaConf

from ..config import ConfigError
from ..nn import ActSpec
from ..nn.taps import POOLINGS
from ..schemas import ArrConf, NoRegularizerConf, TrackingConf, TrainerConf

_UNEXPECTED = re.compile(r"unexpected keyword argument '([^']+)'")
# Arguments a build gets from the data and the act group, never from the model group's keys.
_FROM_DATA = ("self", "num_classes", "img_size", "in_chans", "act")

# Top-level keys of the config (groups and conf/config.yaml's own keys); anything else was added by hand.
TOP_LEVEL_KEYS = frozenset({"model", "act", "regularizer", "dataset", "optim", "sched", "trainer", "tracking", "seed",
                            "force", "dry_run", "sweep", "data_dir", "signature"})


def container(node: DictConfig) -> dict[str, Any]:
    """``node`` as plain, resolved Python containers."""
    return OmegaConf.to_container(node, resolve=True)  # type: ignore[return-value]


def root_cause(exc: BaseException) -> BaseException:
    """The exception under Hydra's ``InstantiationException`` wrappers."""
    while isinstance(exc, InstantiationException) and exc.__cause__ is not None:
        exc = exc.__cause__
    return exc


def valid_keys(target: Any) -> list[str]:
    """The keyword parameters of ``target`` (empty when it has no inspectable signature)."""
    try:
        params = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):
        return []
    return [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def unknown_key(group: str, exc: BaseException, target: Any = None, node: Any = None) -> ConfigError | None:
    """A ``TypeError`` about an unexpected keyword, as the config error that names the key
    (``node``: the group's config, for the value)."""
    cause = root_cause(exc)
    match = _UNEXPECTED.search(str(cause)) if isinstance(cause, TypeError) else None
    if match is None:
        return None
    key = match.group(1)
    valid = [k for k in valid_keys(target) if k not in _FROM_DATA]
    value = node.get(key, "...") if node is not None else "..."
    return ConfigError(f"{group}.{key}", value, "unknown key", valid or None)


def act_spec(cfg: DictConfig) -> ActSpec:
    """The ``act`` group as an :class:`ActSpec`: name plus, for RAA, base and variant."""
    try:
        return ActSpec(**container(cfg.act))
    except TypeError as exc:
        raise unknown_key("act", exc, ActSpec, cfg.act) or exc from None


def check_schema_keys(cfg: DictConfig) -> None:
    """Keys added with ``+`` to a group with a typed schema, or to the top level, are refused: Hydra
    lets ``+key=value`` past a schema on purpose, and nothing would read them."""
    for key in cfg:
        if key not in TOP_LEVEL_KEYS:
            raise ConfigError(str(key), cfg.get(key), "unknown top-level key", sorted(TOP_LEVEL_KEYS))
    schemas = {"trainer": TrainerConf, "tracking": TrackingConf,
               "regularizer": ArrConf if cfg.regularizer.get("name") == "arr" else NoRegularizerConf}
    for group, schema in schemas.items():
        known = [f.name for f in fields(schema)]
        for key in cfg[group]:
            if key not in known:
                raise ConfigError(f"{group}.{key}", cfg[group].get(key), "unknown key", known)


def check_regularizer(cfg: DictConfig) -> None:
    """``regularizer=arr``'s pooling is a known one and its taps a list of module-path globs."""
    reg = cfg.regularizer
    if reg.name != "arr":
        return
    if reg.get("pooling") is not None and reg.pooling not in POOLINGS:
        raise ConfigError("regularizer.pooling", reg.pooling, "unknown pooling", POOLINGS)
    taps = reg.get("taps")
    if taps is not None and not (OmegaConf.is_list(taps) and all(isinstance(t, str) for t in taps)):
        raise ConfigError("regularizer.taps", taps, "must be a list of module-path globs, e.g. ['blocks.*']")


def check_model_keys(cfg: DictConfig) -> None:
    """Every key of the model group is a parameter of its ``_target_`` (no build needed)."""
    target = cfg.model.get("_target_")
    if not target:
        return
    fn = get_method(target)
    params = inspect.signature(fn).parameters.values()
    if any(p.kind == p.VAR_KEYWORD for p in params):
        return
    valid = valid_keys(fn)
    for key in cfg.model:
        if key != "_target_" and key not in valid:
            shown = [k for k in valid if k not in ("num_classes", "img_size", "in_chans", "act")]
            raise ConfigError(f"model.{key}", cfg.model.get(key), "unknown key", shown)
