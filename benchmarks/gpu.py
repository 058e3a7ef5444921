"""GPU-only figures (run when ``torch.cuda.is_available()``): CIFAR-shaped epoch times.

Per model and configuration: one warm-up epoch, then one timed epoch of ``dnrt.engine.loops.
train_one_epoch`` (bf16 autocast, grad clip 1.0, as the trainer runs on CUDA) over synthetic
CIFAR-shaped device-resident data with the ``standard`` augmentation, with the GPU utilisation
sampled during the timed epoch and the fraction of time spent waiting for batches.
The functions take any device so the code path can be exercised on the CPU.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import threading

import torch

from dnrt.data import SyntheticData
from dnrt.engine.loops import StepConfig, train_one_epoch
from dnrt.tracking_schema import EPOCH_TIME, TRAIN_DATA_TIME_FRAC, TRAIN_THROUGHPUT

from .steps import ARR_WEIGHT, IMG_SIZE, NUM_CLASSES, build_case


class _NoSchedule:
    """A constant learning rate: ``train_one_epoch`` calls ``step_update`` every step."""

    def step_update(self, num_updates: int) -> None:
        pass


def _utilization(device: torch.device) -> float | None:
    try:
        return float(torch.cuda.utilization(device))
    except Exception:  # noqa: BLE001  (pynvml missing: ask nvidia-smi)
        if shutil.which("nvidia-smi") is None:
            return None
        out = subprocess.run(["nvidia-smi", f"--id={device.index or 0}", "--query-gpu=utilization.gpu",
                              "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=10)
        try:
            return float(out.stdout.strip().splitlines()[0])
        except (ValueError, IndexError):
            return None


class UtilSampler:
    """Samples GPU utilisation (%) every ``interval_s`` while active; ``mean`` is None off CUDA."""

    def __init__(self, device: torch.device, interval_s: float = 0.2):
        self.device, self.interval_s = device, interval_s
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            value = _utilization(self.device)
            if value is None:
                return
            self.samples.append(value)
            self._stop.wait(self.interval_s)

    def __enter__(self) -> UtilSampler:
        if self.device.type == "cuda":
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    @property
    def mean(self) -> float | None:
        return round(statistics.mean(self.samples), 1) if self.samples else None


def epoch_times(device: torch.device | str = "cuda", num_images: int = 50_000, batch_size: int = 128,
                models: tuple[str, ...] = ("vit_tiny", "resnet18"),
                configs: tuple[tuple[str, str], ...] = (("gelu", "none"), ("raa", "arr"))) -> dict:
    """``{model: {act+reg: {epoch_time_s, images_per_s, data_time_frac, gpu_util_pct, ...}}}``."""
    device = torch.device(device)
    cuda = device.type == "cuda"
    data = SyntheticData(num_classes=NUM_CLASSES, img_size=IMG_SIZE, num_samples=num_images,
                         val_samples=batch_size, augment="standard", device_resident=True)
    loader, _ = data.loaders(batch_size, seed=0, device=device)
    out: dict[str, dict] = {"num_images": num_images, "batch_size": batch_size, "device": str(device),
                            "device_name": torch.cuda.get_device_name(device) if cuda else None}
    for name in models:
        out[name] = {}
        for act, reg in configs:
            case = build_case(name, act, reg, device=device, channels_last=cuda and name == "resnet18")
            sc = StepConfig(arr_weight=ARR_WEIGHT if case.arr is not None else 0.0, grad_clip=1.0,
                            amp_dtype=torch.bfloat16 if cuda else None, progress=False)
            args = (case.model, loader, case.optimizer, _NoSchedule(), case.arr, sc)
            train_one_epoch(*args, 0, device)  # warm-up: kernels, allocator, cudnn autotuning
            if cuda:
                torch.cuda.reset_peak_memory_stats(device)
            with UtilSampler(device) as util:
                m = train_one_epoch(*args, 1, device)
            out[name][case.name] = {
                "epoch_time_s": round(m[EPOCH_TIME], 3),
                "images_per_s": round(m[TRAIN_THROUGHPUT], 1),
                "data_time_frac": round(m[TRAIN_DATA_TIME_FRAC], 4),
                "gpu_util_pct": util.mean,
                "max_memory_allocated_mib": round(torch.cuda.max_memory_allocated(device) / 2**20, 1) if cuda else None,
            }
            del case, args
    return out
