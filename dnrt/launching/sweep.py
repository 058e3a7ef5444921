"""A sweep's life before fan-out, shared by every dnrt launcher (local, parallel, SLURM).

1. Compose and check every cell in the launching process (:mod:`.cells`, :mod:`dnrt.preflight`).
2. ``dry_run``: print the plan (:mod:`.plan`) and launch nothing.
3. An invalid cell stops the sweep before anything is submitted or created, listing every bad
   cell (exit code 2); with ``sweep.on_invalid=skip`` the valid cells run and the refused ones are
   recorded in the sweep summary.
4. Create the experiment and the sweep's parent run once, and write the run context (experiment,
   parent run, sweep id) into the sweep directory, where every job reads it.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig

from ..config import ConfigError, run_name
from ..tracking import ensure_experiment, open_client, resolve_uri, with_retry
from ..tracking_schema import (
    HYDRA_OVERRIDES_TAG,
    JOB_TAG,
    KIND_TAG,
    OVERRIDES_PARAM,
    OVERRIDES_TAG,
    SWEEP_DIR_TAG,
    SWEEP_KIND,
    SWEEP_TAG,
    RunStatus,
)
from ..types import Outcome, RunContext
from .cells import compose_cells
from .context import read_context, write_context
from .cost import Resources, calibration_steps
from .plan import check_cells, plan_cells, print_plan
from .process import current_job_id
from .refusal import SweepRefused
from .summary import record
from .sweep_end import launcher_id, retire_dead_sweeps

log = logging.getLogger(__name__)
ON_INVALID = ("stop", "skip")


def begin_sweep(config: DictConfig) -> RunContext:
    """The sweep's context: created once (experiment, parent run) and written to the sweep dir;
    a later batch of the same sweep (an Optuna sweeper launches several) reuses it."""
    sweep_dir = Path(str(config.hydra.sweep.dir))
    existing = read_context(sweep_dir)
    if existing is not None:
        return existing
    uri = resolve_uri(config.tracking.uri)
    experiment_id = ensure_experiment(uri, str(config.tracking.experiment))
    client = open_client(uri)
    sweep_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
    overrides = " ".join(config.hydra.overrides.task)
    # the launcher and other hydra/ choices: what `launch.py --rerun <this run>` launches with
    hydra_overrides = " ".join(o for o in config.hydra.overrides.hydra if o.startswith("hydra/"))
    retire_dead_sweeps(client, experiment_id)
    run = with_retry(client.create_run, experiment_id, run_name=f"sweep-{sweep_id}",
                     tags={SWEEP_TAG: sweep_id, KIND_TAG: SWEEP_KIND, OVERRIDES_TAG: overrides,
                           SWEEP_DIR_TAG: str(sweep_dir), JOB_TAG: launcher_id(),
                           HYDRA_OVERRIDES_TAG: hydra_overrides})
    with_retry(client.log_param, run.info.run_id, OVERRIDES_PARAM, overrides[:6000])
    context = RunContext(experiment_id, run.info.run_id, sweep_id, uri)
    write_context(sweep_dir, context)
    log.info(f"sweep {sweep_id}: experiment {config.tracking.experiment} (id {experiment_id}), "
             f"parent run {run.info.run_id}")
    return context


def _adaptive(config: DictConfig) -> bool:
    """Whether the sweeper picks cells from the results of earlier ones (Optuna), rather than
    listing them all before it starts (Hydra's basic sweeper)."""
    target = str(config.hydra.get("sweeper", {}).get("_target_", ""))
    return "optuna" in target.lower()


def prepare_sweep(config: DictConfig, config_loader, job_overrides: Sequence[Sequence[str]]) -> list[list[str]]:
    """Check (and in a dry run, plan) every cell; return the overrides of the cells to launch."""
    on_invalid = str(config.get("sweep", {}).get("on_invalid", "stop"))
    if on_invalid not in ON_INVALID:
        raise SweepRefused(f"error: sweep.on_invalid={on_invalid}: unknown policy; valid: {', '.join(ON_INVALID)}")
    try:
        calibration_steps(config)
    except ConfigError as exc:
        raise SweepRefused(f"error: {exc}") from None
    started = time.perf_counter()
    cells = compose_cells(config_loader, config, job_overrides)
    refused = check_cells(cells)
    log.info(f"checked {len(cells)} cells in {time.perf_counter() - started:.1f} s: {len(refused)} refused")
    dry_run = config.get("dry_run", False)
    if dry_run:
        resources = Resources.of_launcher(config.hydra.get("launcher"))
        rows = plan_cells(cells, refused, current_job_id(), resources, bool(config.sweep.get("calibrate", False)))
        print_plan(rows, as_json=str(dry_run) == "json")
        if _adaptive(config):
            # its later trials depend on the results of these, which a plan does not produce (and the
            # sweeper cannot take a batch without results): stop after the first batch
            log.info(f"{config.hydra.sweeper._target_.rsplit('.', 1)[-1]} picks each later trial from the "
                     f"results of earlier ones: the plan shows its first {len(rows)} trial(s)")
            raise SystemExit(0)
        return []
    if refused and on_invalid == "stop":
        lines = [f"  #{c.index} {' '.join(c.overrides)}: {refused[c.index]}" for c in cells if c.index in refused]
        raise SweepRefused(f"error: {len(refused)} of {len(cells)} sweep cells cannot run; nothing was submitted "
                           "(sweep.on_invalid=skip runs the others):\n" + "\n".join(lines))
    begin_sweep(config)
    sweep_dir = Path(str(config.hydra.sweep.dir))
    for cell in cells:
        if cell.index in refused:
            name = run_name(cell.cfg) if cell.cfg is not None else " ".join(cell.overrides)
            log.warning(f"refused #{cell.index} {name}: {refused[cell.index]}")
            record(sweep_dir, Outcome(RunStatus.REFUSED, name, detail=refused[cell.index],
                                      overrides=list(cell.overrides)))
    return [list(c.overrides) for c in cells if c.index not in refused]
