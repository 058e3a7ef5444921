"""Refusing a sweep before anything is submitted or created: the error and the launcher's own checks.

Light on imports on purpose: Hydra imports dnrt's launchers, and through them this module, in every
``launch.py`` process, and a refusal should not wait for torch, timm and MLflow to load.
"""

from __future__ import annotations

import shutil
import sys

# submitit submits with sbatch and starts each job's tasks with srun
SLURM_TOOLS = ("sbatch", "srun")


class SweepRefused(SystemExit):
    """Cells of a sweep cannot run; nothing was submitted. Prints ``message`` to stderr; exit code 2."""

    def __init__(self, message: str):
        print(message, file=sys.stderr, flush=True)
        super().__init__(2)


def require_slurm() -> None:
    """Refuse a SLURM sweep on a machine without SLURM's client tools on its PATH."""
    missing = [tool for tool in SLURM_TOOLS if shutil.which(tool) is None]
    if missing:
        raise SweepRefused(
            f"error: hydra/launcher=slurm needs SLURM's {' and '.join(SLURM_TOOLS)} on this machine's PATH "
            f"(missing: {', '.join(missing)}); nothing was submitted or created. Run the same sweep locally with "
            "hydra/launcher=parallel (jobs as local processes) or hydra/launcher=local (one after another), "
            "or launch from a SLURM login node.")
