"""Config schemas of dnrt's launchers and sweeper, stored as ``hydra/launcher: dnrt_basic, dnrt_local,
dnrt_slurm`` and ``hydra/sweeper: dnrt_basic``. The classes they name live in the launcher plugin
(``hydra_plugins.dnrt_launcher.packed``), which Hydra discovers by its plugin scan; the schemas are
here so that conf/, which selects them, composes wherever dnrt is imported. All three launchers check
every cell of a sweep before launching any (``dnrt.launching.sweep``).

They extend hydra-submitit-launcher's schemas with two keys that decide how runs are packed:

- ``runs_per_job``: at most this many sweep runs share one submitit job (one process, imports
  paid once); 1 is the stock one-run-per-job behaviour;
- ``max_jobs``: at most this many jobs per sweep batch (more runs per job if needed); null: no cap.
"""

from dataclasses import dataclass
from typing import Optional

from hydra._internal.core_plugins.basic_launcher import BasicLauncherConf
from hydra._internal.core_plugins.basic_sweeper import BasicSweeperConf
from hydra.core.config_store import ConfigStore
from hydra_plugins.hydra_submitit_launcher.config import LocalQueueConf, SlurmQueueConf

PACKAGE = "hydra_plugins.dnrt_launcher.packed"


@dataclass
class PackedLocalConf(LocalQueueConf):
    _target_: str = f"{PACKAGE}.PackedLocalLauncher"
    runs_per_job: int = 1
    max_jobs: Optional[int] = None  # noqa: UP045  (OmegaConf's structured configs need Optional)
    # shell lines before each job (submitit's LocalExecutor supports them; the stock schema lacks the key)
    setup: Optional[list[str]] = None  # noqa: UP045


@dataclass
class PackedSlurmConf(SlurmQueueConf):
    _target_: str = f"{PACKAGE}.PackedSlurmLauncher"
    runs_per_job: int = 1
    max_jobs: Optional[int] = None  # noqa: UP045


@dataclass
class CheckedBasicConf(BasicLauncherConf):
    _target_: str = f"{PACKAGE}.CheckedBasicLauncher"


@dataclass
class CheckedBasicSweeperConf(BasicSweeperConf):
    _target_: str = f"{PACKAGE}.CheckedBasicSweeper"


def register_launcher_schemas() -> None:
    """Store the launchers as ``hydra/launcher/dnrt_{basic,local,slurm}`` and the sweeper as
    ``hydra/sweeper/dnrt_basic`` (idempotent)."""
    store = ConfigStore.instance()
    store.store(group="hydra/sweeper", name="dnrt_basic", node=CheckedBasicSweeperConf, provider="dnrt")
    store.store(group="hydra/launcher", name="dnrt_basic", node=CheckedBasicConf, provider="dnrt")
    store.store(group="hydra/launcher", name="dnrt_local", node=PackedLocalConf, provider="dnrt")
    store.store(group="hydra/launcher", name="dnrt_slurm", node=PackedSlurmConf, provider="dnrt")
