"""submitit launchers that run several sweep runs, one after another, in each submitted job.

A fresh job pays the interpreter start and the imports of torch, torchvision, timm and MLflow
(seconds of CPU) before its first step; the later runs of a packed job reuse them
(``startup_s`` of a warm run is the config, data, model and MLflow run creation only). Every run
keeps its own Hydra job (output dir, ``hydra.job.num``, overrides), so a packed sweep logs exactly
what an unpacked one does. Every cell is checked before anything is submitted
(:func:`dnrt.launching.sweep.prepare_sweep`). A failed run is recorded and the job goes on with the next; a requeued
job (preemption, time limit) runs its whole pack again, and the runs that already finished are
skipped by their config hash.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

from hydra._internal.core_plugins.basic_launcher import BasicLauncher
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, filter_overrides
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import BaseSubmititLauncher

from dnrt.launching.refusal import require_slurm

log = logging.getLogger(__name__)
PACK_KEY = "dnrt_pack"  # the one "override" a packed job receives: which pack to run


def prepare_sweep(launcher: Any, job_overrides: Sequence[Sequence[str]]) -> list[list[str]]:
    """:func:`dnrt.launching.sweep.prepare_sweep` for ``launcher``'s sweep."""
    # Imported here, not at the top: Hydra imports this module in every launch.py process, and the sweep
    # code loads torch, timm and MLflow (about 7 s); `--help` and a refused command line need none of them.
    from dnrt.launching.sweep import prepare_sweep as prepare

    return prepare(launcher.config, launcher.hydra_context.config_loader, job_overrides)


def guarded(launcher: Any, launch: Callable[[], Sequence[JobReturn]]) -> Sequence[JobReturn]:
    """``launch()``; on any way out but a normal return (an error, Ctrl-C) the sweep's parent run is
    closed with the summary so far (:func:`dnrt.launching.sweep_end.abort_sweep`)."""
    try:
        return launch()
    except BaseException as exc:
        from pathlib import Path

        from dnrt.launching.sweep_end import abort_sweep

        abort_sweep(Path(str(launcher.config.hydra.sweep.dir)), exc)
        raise


def assign_packs(num_runs: int, runs_per_job: int = 1, max_jobs: int | None = None) -> list[list[int]]:
    """Run indices ``0..num_runs-1`` dealt round-robin into ``ceil(num_runs / runs_per_job)``
    packs, at most ``max_jobs`` of them (round-robin mixes the sweep's axes across packs, so
    packs take about equally long)."""
    if runs_per_job < 1:
        raise ValueError(f"hydra.launcher.runs_per_job must be >= 1, got {runs_per_job}")
    if max_jobs is not None and max_jobs < 1:
        raise ValueError(f"hydra.launcher.max_jobs must be >= 1 or null, got {max_jobs}")
    jobs = math.ceil(num_runs / runs_per_job)
    if max_jobs is not None:
        jobs = min(jobs, max_jobs)
    return [list(range(j, num_runs, jobs)) for j in range(jobs)]


class _PackedLauncher(BaseSubmititLauncher):
    def __init__(self, runs_per_job: int = 1, max_jobs: int | None = None, **params: Any) -> None:
        super().__init__(**params)
        self.runs_per_job = int(runs_per_job)
        self.max_jobs = None if max_jobs is None else int(max_jobs)
        self._packs: list[list[tuple[list[str], int]]] = []

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        job_overrides = prepare_sweep(self, job_overrides)
        if not job_overrides:
            return []
        return guarded(self, lambda: self._launch_packs(job_overrides, initial_job_idx))

    def _launch_packs(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        packs = assign_packs(len(job_overrides), self.runs_per_job, self.max_jobs)
        if len(packs) == len(job_overrides):
            self._packs = []
            return super().launch(job_overrides, initial_job_idx)
        self._packs = [[(list(job_overrides[i]), initial_job_idx + i) for i in pack] for pack in packs]
        for p, pack in enumerate(self._packs):
            log.info(f"\tjob {p} runs {len(pack)}: " + "; ".join(
                f"#{idx} {' '.join(filter_overrides(ov))}" for ov, idx in pack))
        returns = super().launch([[f"{PACK_KEY}={p}"] for p in range(len(packs))], 0)
        ordered: list[JobReturn | None] = [None] * len(job_overrides)
        for pack, pack_returns in zip(packs, returns):
            for i, ret in zip(pack, pack_returns):
                ordered[i] = ret
        return ordered  # type: ignore[return-value]

    def __call__(self, sweep_overrides: list[str], job_dir_key: str, job_num: int, job_id: str,
                 singleton_state: dict[type, Singleton]) -> Any:
        if not self._packs:
            return super().__call__(sweep_overrides, job_dir_key, job_num, job_id, singleton_state)
        (marker,) = sweep_overrides
        pack = self._packs[int(marker.removeprefix(f"{PACK_KEY}="))]
        # zero-argument super, bound here: Hydra's plugin scan re-executes this module, so the
        # global name may already be a newer class than the one ``self`` was built from
        run_one = super().__call__
        return [run_one(overrides, job_dir_key, idx, f"job_id_for_{idx}", singleton_state) for overrides, idx in pack]


class PackedLocalLauncher(_PackedLauncher):
    _EXECUTOR = "local"


class PackedSlurmLauncher(_PackedLauncher):
    _EXECUTOR = "slurm"

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        if not self.config.get("dry_run", False):  # a plan needs no cluster
            require_slurm()  # before any cell is composed or the sweep's parent run is created
        return super().launch(job_overrides, initial_job_idx)


class CheckedBasicLauncher(BasicLauncher):
    """Hydra's basic launcher (the sweep's jobs one after another in this process), with every
    cell checked, and the sweep's parent run created, before the first job starts."""

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        job_overrides = prepare_sweep(self, job_overrides)
        if not job_overrides:
            return []
        launch = super().launch
        return guarded(self, lambda: launch(job_overrides, initial_job_idx))


class CheckedBasicSweeper(BasicSweeper):
    """Hydra's basic sweeper without its own pre-launch composition of every cell: dnrt's launchers
    compose and check every cell anyway (:func:`dnrt.launching.sweep.prepare_sweep`), once per
    distinct set of group choices, where Hydra's check composes each cell in full (a fraction of a
    second per cell: minutes for a 1,000-cell sweep)."""

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        launcher = str(getattr(self.config.hydra.launcher, "_target_", ""))
        if not launcher.startswith("hydra_plugins.dnrt_launcher."):
            super().validate_batch_is_legal(batch)  # another launcher: keep Hydra's check
