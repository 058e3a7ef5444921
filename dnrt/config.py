"""Run identity and validation: flattened params, the config hash, the run name, and the checks
that reject a bad config before any training starts."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from .tracking_schema import is_execution_key, is_logged_param


class ConfigError(ValueError):
    """A config value that cannot run. ``str(err)`` is one line: ``<key>=<value>: <why>; valid: ...``."""

    def __init__(self, key: str, value: Any = None, why: str = "", valid: str | list | tuple | None = None):
        if not why:  # a plain message (kept for callers that only have a sentence)
            super().__init__(key)
            self.key, self.value, self.why, self.valid = "", None, key, None
            return
        if isinstance(valid, (list, tuple)):
            valid = ", ".join(str(v) for v in valid)
        self.key, self.value, self.why, self.valid = key, value, why, valid
        super().__init__(f"{key}={_show(value)}: {why}" + (f"; valid: {valid}" if valid else ""))


class DataNotFound(ConfigError):
    """A :class:`ConfigError` for a data set whose files are not on this machine (the config itself
    may be fine). ``data``: the data set object, where it could be built without its files."""

    def __init__(self, key: str, value: Any, why: str, data: Any = None):
        super().__init__(key, value, why)
        self.data = data


def _show(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def _flatten(node: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            _flatten(v, f"{prefix}.{k}" if prefix else str(k), out)
    else:
        out[prefix] = node


def flat_params(cfg: DictConfig) -> dict[str, str]:
    """The resolved config as ``{"model.name": "resnet18", "optim.lr": "0.001", ...}`` (strings,
    as MLflow stores them), without launcher and output keys (``tracking_schema.HIDDEN_KEYS``)."""
    container = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    flat: dict[str, Any] = {}
    _flatten(container, "", flat)
    return {k: _as_param(v) for k, v in sorted(flat.items()) if is_logged_param(k)}


def _as_param(v: Any) -> str:
    return json.dumps(v) if isinstance(v, (list, dict)) else str(v)


def signature_version(cfg: DictConfig) -> int:
    sig = cfg.get("signature")
    return int(sig.get("version", 1)) if sig is not None else 1


def neutral_values(cfg: DictConfig) -> dict[str, str]:
    """``signature.neutral``: keys added after signature v1 -> the value (as a param string) that
    reproduces the behaviour from before the key existed."""
    sig = cfg.get("signature")
    node = sig.get("neutral") if sig is not None else None
    if not node:
        return {}
    return {str(k): _as_param(v) for k, v in OmegaConf.to_container(node, resolve=True).items()}


def signed_params(cfg: DictConfig, params: dict[str, str] | None = None) -> dict[str, str]:
    """The params a run's signature covers: all but execution keys (``tracking_schema.is_execution_key``)
    and neutral-valued later keys (``params``: ``flat_params(cfg)`` when the caller has it already)."""
    neutral = neutral_values(cfg)
    return {k: v for k, v in (params or flat_params(cfg)).items()
            if not is_execution_key(k) and not (k in neutral and neutral[k] == v)}


def signature_revisions(cfg: DictConfig, params: dict[str, str] | None = None) -> dict[str, int]:
    """``signature.revised`` entries (``"<key>=<value>": revision``) that this config matches: a
    scoped version bump for one value whose meaning changed (a model definition), which re-signs
    only the runs that use it."""
    sig = cfg.get("signature")
    node = sig.get("revised") if sig is not None else None
    if not node:
        return {}
    params = params or flat_params(cfg)
    matched = {}
    for cond, revision in OmegaConf.to_container(node, resolve=True).items():
        key, _, value = str(cond).partition("=")
        if params.get(key) == value:
            matched[str(cond)] = int(revision)
    return matched


def config_hash(cfg: DictConfig) -> str:
    """Stable 16-hex signature of everything that changes a run's result (see ``signed_params``).
    Version 1 hashes the params alone, so runs signed before versions existed keep their hash; a
    version bump or a matching ``signature.revised`` entry is hashed with them."""
    params = flat_params(cfg)  # resolving the config is the costly part: once
    payload: dict[str, Any] = signed_params(cfg, params)
    version, revisions = signature_version(cfg), signature_revisions(cfg, params)
    if version != 1 or revisions:
        payload = {"params": payload, "signature_version": version, **({"revised": revisions} if revisions else {})}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def run_name(cfg: DictConfig) -> str:
    return f"{cfg.model.name}-{cfg.act.name}-{cfg.regularizer.name}-{cfg.dataset.name}-s{cfg.seed}"


def _require(ok: bool, key: str, value: Any, rule: str) -> None:
    if not ok:
        raise ConfigError(key, value, rule)


def validate(cfg: DictConfig | ListConfig) -> None:
    """Raise :class:`ConfigError` naming the first invalid key."""
    t, opt, reg = cfg.trainer, cfg.optim, cfg.regularizer
    _require(_num(opt.get("lr")) and opt.lr > 0, "optim.lr", opt.get("lr"), "must be > 0")
    _require(isinstance(t.epochs, int) and t.epochs >= 1, "trainer.epochs", t.epochs, "must be an integer >= 1")
    _require(isinstance(t.batch_size, int) and t.batch_size >= 1, "trainer.batch_size", t.batch_size,
             "must be an integer >= 1")
    _require(t.grad_clip is None or (_num(t.grad_clip) and t.grad_clip >= 0), "trainer.grad_clip", t.grad_clip,
             "must be >= 0 or null")
    _require(_num(t.label_smoothing) and 0 <= t.label_smoothing < 1, "trainer.label_smoothing",
             t.label_smoothing, "must be in [0, 1)")
    _require(isinstance(t.amp, bool) or t.amp in ("auto", "bf16", "fp16"), "trainer.amp", t.amp,
             "must be auto, true, false, bf16 or fp16")
    for key, choices in (("arr_average", ("tap", "width")), ("lr_scale", ("global", "device")),
                         ("arr_memory", ("global", "rank"))):
        _require(t.get(key) in choices, f"trainer.{key}", t.get(key), "must be " + " or ".join(choices))
    for key in ("mixup_alpha", "cutmix_alpha"):
        _require(_num(t.get(key, 0.0)) and t.get(key, 0.0) >= 0, f"trainer.{key}", t.get(key), "must be >= 0")
    _require(reg.name in ("none", "arr"), "regularizer.name", reg.name, "must be none or arr")
    if reg.name == "arr":
        _require(_num(reg.weight) and reg.weight >= 0, "regularizer.weight", reg.weight, "must be >= 0")
        _require(_num(reg.momentum) and 0 < reg.momentum <= 1, "regularizer.momentum", reg.momentum,
                 "must be in (0, 1]")
    _require(isinstance(cfg.seed, int), "seed", cfg.seed, "must be an integer")
    _require(t.stop_after is None or (isinstance(t.stop_after, int) and t.stop_after >= 1),
             "trainer.stop_after", t.stop_after, "must be an integer >= 1 or null")


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)
