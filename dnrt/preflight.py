"""Checks that refuse a config before anything is created (no MLflow run, checkpoint or output).

``preflight(cfg)`` runs every check a run needs: values, the names of the model, activation and
data set, every key of every group (an unknown key is an error naming it; optimizer and schedule
are built on a tiny module), the data files, and whether the model fits the data's input size.
Errors are :class:`ConfigError`, one line: ``<key>=<value>: <why>; valid: ...``. The sweep check
runs the same function on every cell before any job is submitted; model-fit results are cached per
distinct model and input shape, so a 1,000-cell sweep builds each distinct model once.
"""

from __future__ import annotations

import functools
import inspect
import json
import re
from dataclasses import dataclass, fields
from typing import Any

import torch
from hydra.errors import InstantiationException
from hydra.utils import get_method, instantiate
from omegaconf import DictConfig, OmegaConf

from .config import ConfigError, validate
from .graph.models import GNN_NAMES, has_pyg
from .nn import ActSpec
from .nn.taps import POOLINGS
from .schemas import ArrConf, NoRegularizerConf, TrackingConf, TrainerConf

_UNEXPECTED = re.compile(r"unexpected keyword argument '([^']+)'")


@dataclass(frozen=True)
class DataShape:
    num_classes: int
    img_size: int
    in_chans: int


def _container(node: DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(node, resolve=True)  # type: ignore[return-value]


def _cause(exc: BaseException) -> BaseException:
    while isinstance(exc, InstantiationException) and exc.__cause__ is not None:
        exc = exc.__cause__
    return exc


def _valid_keys(target: Any) -> list[str]:
    try:
        params = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):
        return []
    return [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def unknown_key(group: str, exc: BaseException, target: Any = None, node: Any = None) -> ConfigError | None:
    """A ``TypeError`` about an unexpected keyword, as the config error that names the key
    (``node``: the group's config, for the value)."""
    cause = _cause(exc)
    match = _UNEXPECTED.search(str(cause)) if isinstance(cause, TypeError) else None
    if match is None:
        return None
    key = match.group(1)
    valid = [k for k in _valid_keys(target) if k not in ("self", "num_classes", "img_size", "in_chans", "act")]
    value = node.get(key, "...") if node is not None else "..."
    return ConfigError(f"{group}.{key}", value, "unknown key", valid or None)


def act_spec(cfg: DictConfig) -> ActSpec:
    """The ``act`` group as an :class:`ActSpec`: name plus, for RAA, base and variant."""
    try:
        return ActSpec(**_container(cfg.act))
    except TypeError as exc:
        raise unknown_key("act", exc, ActSpec, cfg.act) or exc from None


# Top-level keys of the config (groups and conf/config.yaml's own keys); anything else was added by hand.
TOP_LEVEL_KEYS = frozenset({"model", "act", "regularizer", "dataset", "optim", "sched", "trainer", "tracking", "seed",
                            "force", "dry_run", "sweep", "data_dir", "signature"})


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
    reg = cfg.regularizer
    if reg.name != "arr":
        return
    if reg.get("pooling") is not None and reg.pooling not in POOLINGS:
        raise ConfigError("regularizer.pooling", reg.pooling, "unknown pooling", POOLINGS)
    taps = reg.get("taps")
    if taps is not None and not (OmegaConf.is_list(taps) and all(isinstance(t, str) for t in taps)):
        raise ConfigError("regularizer.taps", taps, "must be a list of module-path globs, e.g. ['blocks.*']")


def instantiate_dataset(cfg: DictConfig):
    """The data set object; its files are checked (``num_classes`` reads the class list)."""
    from .data import DatasetNotFoundError

    target = cfg.dataset.get("_target_")
    try:
        data = instantiate(cfg.dataset)
        num_classes = data.num_classes
    except DatasetNotFoundError as exc:
        raise ConfigError("dataset.root", cfg.dataset.get("root", cfg.get("data_dir")), str(exc)) from None
    except (InstantiationException, TypeError, ValueError) as exc:
        err = unknown_key("dataset", exc, get_method(target) if target else None, cfg.dataset)
        if err is not None:
            raise err from None
        raise ConfigError(f"dataset={cfg.dataset.name}", "...", f"{type(_cause(exc)).__name__}: "
                          f"{str(_cause(exc)).splitlines()[0]}") from None
    if num_classes < 2:
        raise ConfigError(f"dataset={cfg.dataset.name}", num_classes, "needs at least 2 classes")
    return data


def check_model_keys(cfg: DictConfig) -> None:
    """Every key of the model group is a parameter of its ``_target_`` (no build needed)."""
    target = cfg.model.get("_target_")
    if not target:
        return
    fn = get_method(target)
    params = inspect.signature(fn).parameters.values()
    if any(p.kind == p.VAR_KEYWORD for p in params):
        return
    valid = _valid_keys(fn)
    for key in cfg.model:
        if key != "_target_" and key not in valid:
            shown = [k for k in valid if k not in ("num_classes", "img_size", "in_chans", "act")]
            raise ConfigError(f"model.{key}", cfg.model.get(key), "unknown key", shown)


def check_model_name(cfg: DictConfig) -> None:
    from .models import list_models

    check_model_keys(cfg)
    name = str(cfg.model.name)
    if name in list_models() or name in GNN_NAMES or name in _timm_names():
        return
    raise ConfigError("model.name", name, "unknown model", list_models() + ["or any timm.list_models() name"])


@functools.lru_cache(maxsize=1)
def _timm_names() -> frozenset[str]:
    import timm

    return frozenset(timm.list_models())


@functools.lru_cache(maxsize=256)
def _fit_error(model_json: str, shape: DataShape) -> tuple[str, str, str] | None:
    """Build the model on the CPU and run one eval forward at the data's input size; None if it
    fits, else (key, value, why). Cached: a sweep builds each distinct model once."""
    node = OmegaConf.create(json.loads(model_json))
    target = node.get("_target_")
    try:
        built = instantiate(node, num_classes=shape.num_classes, img_size=shape.img_size, in_chans=shape.in_chans,
                            act="")
        with torch.no_grad():
            built.model.eval()(torch.zeros(2, shape.in_chans, shape.img_size, shape.img_size))
    except Exception as exc:  # noqa: BLE001 (any build or forward failure means: does not fit)
        err = unknown_key("model", exc, get_method(target) if target else None, node)
        if err is not None:
            return err.key, str(err.value), err.why + (f"; valid: {err.valid}" if err.valid else "")
        cause = _cause(exc)
        return ("model.name", str(node.get("name")), f"does not fit {shape.img_size}-px, {shape.in_chans}-channel "
                f"inputs ({type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''})")
    return None


def check_model_fits(cfg: DictConfig, shape: DataShape) -> None:
    error = _fit_error(json.dumps(_container(cfg.model), sort_keys=True), shape)
    if error is not None:
        key, value, why = error
        raise ConfigError(key, value, why)


def check_task(cfg: DictConfig, data) -> str:
    """The data's task (``image`` or ``node``); the model must be one for it, and graph models need
    PyTorch Geometric (the ``graph`` extra)."""
    task = getattr(data, "task", "image")
    graph_model = str(cfg.model.name) in GNN_NAMES
    if task == "node" and not graph_model:
        raise ConfigError("model.name", cfg.model.name, f"dataset={cfg.dataset.name} is a graph: choose a graph "
                          "model", GNN_NAMES)
    if task != "node" and graph_model:
        raise ConfigError("model.name", cfg.model.name, f"is a graph model; dataset={cfg.dataset.name} is not a graph")
    if graph_model and not has_pyg():
        raise ConfigError("model.name", cfg.model.name, "needs PyTorch Geometric: pip install -e '.[graph]'")
    return task


def check_optim_sched(cfg: DictConfig) -> None:
    """Build the optimizer and the schedule on a two-parameter module: every key is accepted and
    every value is one they take (cheap; the real ones are built with the model)."""
    from .engine.build import build_optimizer, build_scheduler

    build_scheduler(cfg, build_optimizer(cfg, torch.nn.Linear(2, 1)), steps_per_epoch=1)


def preflight(cfg: DictConfig, fit: bool = True):
    """Every check a run needs before anything is created; ``fit`` also builds the model once
    (cached) to check that it takes the data's inputs. Returns the checked data set object (what
    ``build_components`` then uses: its files are not looked up twice)."""
    check_schema_keys(cfg)
    validate(cfg)
    act_spec(cfg)
    check_regularizer(cfg)
    check_optim_sched(cfg)
    check_model_name(cfg)
    data = instantiate_dataset(cfg)
    if fit and check_task(cfg, data) == "image":  # a GNN takes any graph: building it is its fit check
        check_model_fits(cfg, DataShape(int(data.num_classes), int(data.img_size), int(data.in_chans)))
    return data
