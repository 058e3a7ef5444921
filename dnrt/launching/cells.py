"""The configs of a sweep's cells, composed in the launching process before anything is submitted.

Hydra composes a job's config from its overrides in about 0.1-0.5 s, almost all of it spent on the
defaults list (which group options to load). Cells of a sweep mostly differ in values (``seed``,
``optim.lr``) over a few group choices, so each distinct set of group choices is composed once and
the cell's value overrides are applied to a copy, as Hydra applies them after composition. Any
override this shortcut does not cover (``+key``, ``~key``, ``hydra.*``, a key that does not exist)
composes the cell the regular way, so the result is always what the job itself will see.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf, open_dict

from .hydra_errors import explain


@dataclass
class Cell:
    index: int
    overrides: list[str]
    cfg: DictConfig | None  # the job's config without the hydra node; None if it did not compose
    error: str = ""
    checked: Any = None  # the CheckedRun its preflight made (data set built), once checked
    # its data set's files are not here: the data set object, and for a plan the published split's
    # images per class and a CheckedRun on stand-in images of the same shape (what it prices the cell from)
    missing_data: Any = None
    nominal_counts: list[int] | None = None
    stand_in: Any = None


def _groups(config_loader) -> set[str]:
    found: set[str] = set()

    def walk(parent: str) -> None:
        for group in config_loader.list_groups(parent):
            path = f"{parent}/{group}" if parent else group
            found.add(path)
            walk(path)

    walk("")
    return found


def _strip_hydra(cfg: DictConfig) -> DictConfig:
    with open_dict(cfg):
        cfg.pop("hydra", None)
    return cfg


def compose_cells(config_loader, config: DictConfig, job_overrides: Sequence[Sequence[str]]) -> list[Cell]:
    """One :class:`Cell` per job, in order; composition errors are kept per cell, not raised."""
    parser = OverridesParser.create()
    groups = _groups(config_loader)
    composed: dict[tuple[str, ...], DictConfig] = {}
    cells: list[Cell] = []
    for index, overrides in enumerate(job_overrides):
        overrides = list(overrides)
        try:
            cells.append(Cell(index, overrides, _compose(config_loader, config, overrides, parser, groups, composed)))
        except Exception as exc:  # noqa: BLE001 (Hydra raises several types; each is the cell's error)
            line = explain(exc) or (str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            cells.append(Cell(index, overrides, None, line))
    return cells


def _compose(config_loader, config, overrides, parser, groups, composed) -> DictConfig:
    parsed = parser.parse_overrides(overrides)
    choices, values = [], []
    for ov, text in zip(parsed, overrides):
        plain = not (ov.is_delete() or ov.is_add() or ov.is_force_add() or ov.is_hydra_override())
        if not plain:
            return _strip_hydra(config_loader.load_sweep_config(config, overrides))
        (choices if ov.key_or_group.split("@")[0] in groups else values).append((ov, text))
    key = tuple(text for _, text in choices)
    if key not in composed:
        composed[key] = _strip_hydra(config_loader.load_sweep_config(config, list(key)))
    cfg = copy.deepcopy(composed[key])
    for ov, _ in values:
        if OmegaConf.select(cfg, ov.key_or_group, default="__missing__") == "__missing__":
            return _strip_hydra(config_loader.load_sweep_config(config, overrides))  # Hydra's own error
        OmegaConf.update(cfg, ov.key_or_group, ov.value(), merge=True)
    return cfg
