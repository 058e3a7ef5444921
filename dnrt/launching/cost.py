"""What a planned cell will cost: steps, a step time with its source, wall time, the SLURM time limit.

Step times come, in order, from runs in the store with the same model, input size, batch, act,
regularizer and device type (their logged training throughput: step time = batch / images per
second), from a calibration (``--plan --calibrate``: a few timed training steps per distinct
(model, act, regularizer, input size, batch) on this machine's device, cached in the
``sweep.step_times`` JSON table keyed by those values and the device's name), else they are
unknown: no number is made up.
"""

from __future__ import annotations

import inspect
import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from ..config import ConfigError
from ..data import ArrayData, EpochLoader
from ..data.sampling import derive_seed, stratified_subset
from ..engine.loops import StepConfig, train_one_epoch
from ..factory import build_components
from ..tracking_schema import DEVICE_TAG, EPOCH_TIME, TRAIN_THROUGHPUT
from ..types import DistInfo

CALIBRATION_STEPS = (2, 5)  # warm-up steps, timed steps


@dataclass(frozen=True)
class Resources:
    """Where the cells run: ``slurm`` with the preset's time limit and devices, or this machine."""

    slurm: bool = False
    timeout_min: float | None = None
    gpus: int = 0  # per task (0: none requested)
    tasks: int = 1  # ranks per run

    @classmethod
    def of_launcher(cls, launcher: DictConfig | None) -> Resources:
        if launcher is None or "slurm" not in str(launcher.get("_target_", "")).lower():
            return cls()
        tasks = int(launcher.get("tasks_per_node") or 1) * int(launcher.get("nodes") or 1)
        gpus = int(launcher.get("gpus_per_node") or 0) // max(int(launcher.get("tasks_per_node") or 1), 1)
        return cls(True, launcher.get("timeout_min"), gpus, tasks)


@dataclass
class Cost:
    steps_per_epoch: int | None = None
    total_steps: int | None = None  # the steps still to run (a resumed run's remaining epochs)
    step_time_s: float | None = None
    step_time_source: str = "unknown"
    wall_h: float | None = None
    device_hours: float | None = None
    fits_timeout: bool | None = None  # SLURM only
    requeues: int | None = None  # SLURM only: time-limit requeues the run implies


def device_type(cfg: DictConfig, res: Resources) -> str:
    """``cuda`` or ``cpu`` (or what ``trainer.device`` names): where the cell would train."""
    name = str(cfg.trainer.device)
    if name != "auto":
        return name.split(":")[0]
    if res.slurm:
        return "cuda" if res.gpus > 0 else "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


def device_label(device: torch.device) -> str:
    """The name a calibration is cached under: the GPU's name, or the CPU with its thread count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{device.type} ({torch.get_num_threads()} threads)"


def speed_key(cfg: DictConfig) -> tuple[str, ...]:
    """(model, act, regularizer, input size, batch): what a step time depends on, besides the device.
    Strings as MLflow stores the params, so a stored run's key compares equal."""
    return (str(cfg.model.name), str(cfg.act.name), str(cfg.regularizer.name), str(cfg.dataset.get("img_size")),
            str(cfg.trainer.batch_size))


def steps_per_epoch(cfg: DictConfig, data, world_size: int = 1) -> int | None:
    """Training steps per epoch from the data set's training split after ``fraction``, the batch
    and ``drop_last``, as the loader counts them; None for a data set without array splits."""
    if not hasattr(data, "splits"):
        return None
    train, _ = data.splits(int(cfg.seed))
    n = len(stratified_subset(train.labels, data.fraction, derive_seed(int(cfg.seed), "train")))
    loader = EpochLoader(n, batch_size=int(cfg.trainer.batch_size) // world_size, seed=0, train=True,
                         world_size=world_size, drop_last=data.drop_last)
    return len(loader)


def nominal_steps(cfg: DictConfig, counts: list[int], world_size: int = 1) -> int:
    """:func:`steps_per_epoch` of a data set whose files are not here, from its published train
    split's images per class ``counts`` (``fraction`` keeps the same per-class numbers)."""
    labels = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
    n = len(stratified_subset(labels, float(cfg.dataset.fraction), derive_seed(int(cfg.seed), "train")))
    loader = EpochLoader(n, batch_size=int(cfg.trainer.batch_size) // world_size, seed=0, train=True,
                         world_size=world_size, drop_last=cfg.dataset.get("drop_last", True))
    return len(loader)


# the recipe keys every in-memory data set takes (augmentation, interpolation, normalisation, ...)
_RECIPE_KEYS = tuple(p for p in inspect.signature(ArrayData.__init__).parameters if p not in ("self", "name"))


def stand_in_config(cfg: DictConfig, data, counts: list[int]) -> DictConfig:
    """``cfg`` with its data set replaced by random images of the same shape, class count and recipe
    (:class:`dnrt.data.SyntheticData`): a step on them costs what a step on the real images does."""
    node = {k: cfg.dataset[k] for k in _RECIPE_KEYS if k in cfg.dataset}
    batch = int(cfg.trainer.batch_size)
    node.update({"_target_": "dnrt.data.SyntheticData", "name": str(cfg.dataset.name), "num_classes": len(counts),
                 "img_size": int(cfg.dataset.get("img_size") or data.native_size), "in_chans": int(data.in_chans),
                 "num_samples": min(sum(counts), batch * sum(CALIBRATION_STEPS)), "val_samples": batch,
                 "fraction": 1.0})
    out = cfg.copy()
    with open_dict(out):
        out.dataset = OmegaConf.create(node)
    return out


def store_step_time(cfg: DictConfig, runs: list, device: str) -> tuple[float, str] | None:
    """The median step time of ``runs`` (FINISHED or RUNNING) with the cell's speed key on the same
    device type, from their logged throughput; None when there are none."""
    key = speed_key(cfg)
    times = []
    for run in runs:
        p, m = run.data.params, run.data.metrics
        if run.info.status not in ("FINISHED", "RUNNING") or TRAIN_THROUGHPUT not in m:
            continue
        their = (p.get("model.name"), p.get("act.name"), p.get("regularizer.name"),
                 p.get("dataset.img_size"), p.get("trainer.batch_size"))
        if their != key:
            continue
        if run.data.tags.get(DEVICE_TAG, "").split(":")[0] != device or m[TRAIN_THROUGHPUT] <= 0:
            continue
        times.append(int(cfg.trainer.batch_size) / m[TRAIN_THROUGHPUT])
    if not times:
        return None
    return statistics.median(times), f"store: {len(times)} run(s) on {device}"


class StepTimes:
    """The calibration table: ``{"model|act|reg|size|batch|device name": seconds per step}`` in JSON."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.table: dict[str, float] = json.loads(self.path.read_text()) if self.path.is_file() else {}

    @staticmethod
    def key(speed: tuple[str, ...], device_name: str) -> str:
        return "|".join([*speed, device_name])

    def get(self, speed: tuple[str, ...], device_name: str) -> float | None:
        return self.table.get(self.key(speed, device_name))

    def put(self, speed: tuple[str, ...], device_name: str, seconds: float) -> None:
        self.table[self.key(speed, device_name)] = seconds
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.table, indent=1, sort_keys=True))
        tmp.replace(self.path)


class _FirstBatches:
    """The first ``n`` batches of ``loader``'s epoch 0 (cycled): a short epoch to time."""

    def __init__(self, loader, n: int):
        self.loader, self.n = loader, n

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        done = 0
        while done < self.n:
            for batch in self.loader:
                yield batch
                done += 1
                if done == self.n:
                    return


def calibration_steps(cfg: DictConfig) -> tuple[int, int]:
    """``sweep.calibrate_steps``: [warm-up steps, timed steps] (default ``CALIBRATION_STEPS``)."""
    value = cfg.get("sweep", {}).get("calibrate_steps", list(CALIBRATION_STEPS))
    steps = list(value) if OmegaConf.is_list(value) or isinstance(value, (list, tuple)) else None
    if steps is None or len(steps) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in steps) \
            or steps[0] < 0 or steps[1] < 1:
        raise ConfigError("sweep.calibrate_steps", OmegaConf.to_container(value) if OmegaConf.is_config(value)
                          else value, "expected [warm-up steps >= 0, timed steps >= 1]")
    return steps[0], steps[1]


def calibrate(run, device_name: str | None = None, steps: tuple[int, int] = CALIBRATION_STEPS) -> tuple[float, str]:
    """Seconds per training step of the checked run ``run`` on this machine's device: its model,
    ARR, optimizer and loader as built for training, ``steps`` = (warm-up, timed) steps of
    ``dnrt.engine.loops.train_one_epoch``. Returns (seconds, device label)."""
    parts = build_components(run, DistInfo())
    cfg = run.cfg
    step_cfg = StepConfig(arr_weight=float(cfg.regularizer.weight) if parts.arr is not None else 0.0,
                          grad_clip=cfg.trainer.grad_clip, amp_dtype=parts.amp_dtype, progress=False)
    warmup, timed = steps
    parts.train_loader.set_epoch(0)
    args = (parts.model, None, parts.optimizer, parts.scheduler, parts.arr, step_cfg, 0, parts.device)
    if warmup:
        train_one_epoch(*args[:1], _FirstBatches(parts.train_loader, warmup), *args[2:], scaler=parts.scaler)
    m = train_one_epoch(*args[:1], _FirstBatches(parts.train_loader, timed), *args[2:], scaler=parts.scaler)
    return m[EPOCH_TIME] / timed, device_name or device_label(parts.device)


def estimate(cfg: DictConfig, steps: int | None, remaining_epochs: int, step_time: tuple[float, str] | None,
             res: Resources) -> Cost:
    """The cell's cost from its steps per epoch and a step time (None: unknown)."""
    cost = Cost(steps, None if steps is None else steps * remaining_epochs)
    if step_time is not None:
        cost.step_time_s, cost.step_time_source = step_time
    if cost.total_steps is None or cost.step_time_s is None:
        return cost
    cost.wall_h = cost.total_steps * cost.step_time_s / 3600
    cost.device_hours = cost.wall_h * max(res.tasks * max(res.gpus, 1), 1)
    if res.slurm and res.timeout_min:
        jobs = math.ceil(cost.wall_h * 60 / float(res.timeout_min)) if cost.wall_h > 0 else 1
        cost.fits_timeout, cost.requeues = jobs <= 1, max(jobs - 1, 0)
    return cost
