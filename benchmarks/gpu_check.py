"""One pass over every CUDA code path, with a pass/fail table: ``make gpu-check``.

    python -m benchmarks.gpu_check [--device cpu] [--only NAME ...] [--samples N] [--batch B]

Each check builds a run the way ``dnrt.train`` does (``dnrt.preflight.check_run``, then
``dnrt.factory.build_components`` and ``dnrt.engine.trainer.Trainer``) from ``conf/`` with the
synthetic CIFAR-shaped data set, trains a few steps, and checks what the path promises (the
parameters on the device, the autocast dtype, a GradScaler with a finite scale, channels-last
weights, batches made on the device, a checkpoint that resumes). A check that raises or whose
promise does not hold fails; the exit status is 1 when any check fails. Without CUDA (and no
``--device``) it prints one line and exits 0. ``--device cpu`` runs the same list on the CPU (the
checks that only mean something on CUDA are reported as ``cuda only``, never as passed).
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from dnrt.tracking_schema import EPOCH_TIME, TRAIN_LOSS, TRAIN_THROUGHPUT, VAL_ACC1

CONF = Path(__file__).resolve().parents[1] / "conf"
PASS, FAIL, CUDA_ONLY = "pass", "FAIL", "cuda only"


@dataclass(frozen=True)
class Settings:
    device: torch.device
    samples: int = 2048  # synthetic training images per check
    batch: int = 128
    workdir: Path = Path(".")


@dataclass(frozen=True)
class Check:
    """``run(settings)`` returns the check's figures, or raises (``CheckFailed``: a promise broken)."""

    name: str
    run: Callable[[Settings], dict]
    cuda_only: bool = False


@dataclass
class Result:
    name: str
    status: str
    seconds: float
    figures: dict = field(default_factory=dict)
    error: str = ""


class CheckFailed(AssertionError):
    """The path ran but did not do what it promises."""


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


# -- building and training a run ------------------------------------------------------------------

def compose(settings: Settings, overrides: Sequence[str]):
    """``conf/config.yaml`` with the synthetic data set sized by ``settings`` and ``overrides``."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    base = ["dataset=synthetic", f"dataset.num_samples={settings.samples}",
            f"dataset.val_samples={max(settings.batch, settings.samples // 8)}",
            f"trainer.batch_size={settings.batch}", f"trainer.device={settings.device.type}",
            "trainer.progress=false", "trainer.epochs=1", "act=raa", "regularizer=arr",
            f"trainer.ckpt_root={settings.workdir / 'checkpoints'}"]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=[*base, *overrides])


def build(cfg):
    """The run's components and a trainer checkpointing under ``trainer.ckpt_root``."""
    from dnrt.config import config_hash
    from dnrt.decision import checkpoint_path
    from dnrt.engine.trainer import Trainer
    from dnrt.factory import build_components
    from dnrt.preflight import check_run
    from dnrt.types import DistInfo

    parts = build_components(check_run(cfg, fit=False), DistInfo())
    chash = config_hash(cfg)
    return parts, Trainer(cfg, parts, DistInfo(), checkpoint_path(cfg, chash), chash)


def fit(trainer) -> dict:
    """Train ``trainer``'s remaining epochs without a store; the last epoch's figures."""
    from dnrt.tracking import RunTracker

    trainer.fit(RunTracker(None, None))
    last = trainer.state.history[-1]
    expect(math.isfinite(last[TRAIN_LOSS]), f"train loss {last[TRAIN_LOSS]} is not finite")
    return {"steps": len(trainer.parts.train_loader), "epoch_s": round(last[EPOCH_TIME], 2),
            "img/s": round(last[TRAIN_THROUGHPUT]), "loss": round(last[TRAIN_LOSS], 3),
            "val_acc1": round(last[VAL_ACC1], 1)}


def on_device(parts, device: torch.device) -> None:
    wrong = [n for n, p in parts.core.named_parameters() if p.device.type != device.type]
    expect(not wrong, f"parameters not on {device.type}: {wrong[:3]}")


def train_check(model: str, amp: str, extra: Sequence[str] = ()) -> Callable[[Settings], dict]:
    """A few steps of ``model`` under ``trainer.amp=amp``; fp16 must come with a GradScaler whose
    scale stays finite."""

    def run(settings: Settings) -> dict:
        cfg = compose(settings, [f"model={model}", f"trainer.amp={amp}", *extra])
        parts, trainer = build(cfg)
        on_device(parts, settings.device)
        want = {"bf16": torch.bfloat16, "fp16": torch.float16}[amp]
        expect(parts.amp_dtype is want, f"autocast dtype {parts.amp_dtype}, expected {want}")
        expect((parts.scaler is not None) == (amp == "fp16"), f"GradScaler {parts.scaler} with amp={amp}")
        figures = fit(trainer)
        if parts.scaler is not None:
            scale = float(parts.scaler.get_scale())
            expect(math.isfinite(scale) and scale > 0, f"GradScaler scale {scale}")
            figures["scale"] = scale
        return figures

    return run


def channels_last_check(settings: Settings) -> dict:
    """resnet18 with ``trainer.channels_last=true``: conv weights channels-last, and training runs."""
    cfg = compose(settings, ["model=resnet18", "trainer.amp=bf16", "trainer.channels_last=true"])
    parts, trainer = build(cfg)
    convs = [m.weight for m in parts.core.modules() if isinstance(m, torch.nn.Conv2d)]
    expect(bool(convs) and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs),
           "conv weights are not channels-last")
    return {"convs": len(convs), **fit(trainer)}


def compile_check(settings: Settings) -> dict:
    """vit_tiny under ``trainer.compile=true`` (inductor), two epochs: the first pays for compiling."""
    torch._dynamo.reset()
    cfg = compose(settings, ["model=vit_tiny", "trainer.amp=bf16", "trainer.compile=true", "trainer.epochs=2"])
    parts, trainer = build(cfg)
    expect(hasattr(parts.model, "_orig_mod"), "the model is not a torch.compile wrapper")
    figures = fit(trainer)
    figures["first_epoch_s"] = round(trainer.state.history[0][EPOCH_TIME], 2)
    torch._dynamo.reset()
    return figures


def loader_check(settings: Settings) -> dict:
    """The device-resident loader: every batch made on the device; batches per second."""
    from dnrt.data.loader import DeviceLoader

    parts, _ = build(compose(settings, ["model=resnet18"]))
    loader = parts.train_loader
    expect(isinstance(loader, DeviceLoader), f"train loader is {type(loader).__name__}, not DeviceLoader")
    loader.set_epoch(0)
    start, count = time.perf_counter(), 0
    for x, y in loader:
        expect(x.device.type == settings.device.type and y.device.type == settings.device.type,
               f"batch on {x.device}/{y.device}")
        count += 1
    if settings.device.type == "cuda":
        torch.cuda.synchronize(settings.device)
    return {"batches": count, "batches/s": round(count / (time.perf_counter() - start), 1)}


def paper_augment_check(settings: Settings) -> dict:
    """The paper recipe's augmentation on the device (``dataset.augment=paper``,
    ``dataset.aug_backend=device``): a DeviceLoader whose batches are made on the device, and training runs."""
    from dnrt.data.loader import DeviceLoader

    cfg = compose(settings, ["model=resnet18", "trainer.amp=bf16", "dataset.augment=paper",
                             "dataset.aug_backend=device"])
    parts, trainer = build(cfg)
    loader = parts.train_loader
    expect(isinstance(loader, DeviceLoader) and loader.augment == "paper",
           f"train loader is {type(loader).__name__} (augment {getattr(loader, 'augment', None)})")
    loader.set_epoch(0)
    x, _ = next(iter(loader))
    expect(x.device.type == settings.device.type, f"augmented batch on {x.device}")
    return fit(trainer)


def resume_check(settings: Settings) -> dict:
    """A two-epoch run stopped after epoch 1 (its checkpoint saved from the device) and resumed in a
    fresh trainer: epoch 1 is the checkpoint's, epoch 2 is trained, tensors come back on the device."""
    from dnrt.engine.checkpoint import load_checkpoint
    from dnrt.engine.trainer import StopRequested
    from dnrt.tracking import RunTracker

    cfg = compose(settings, ["model=resnet18", "trainer.amp=fp16", "trainer.epochs=2", "trainer.stop_after=1"])
    _, first = build(cfg)
    try:
        first.fit(RunTracker(None, None))
        raise CheckFailed("trainer.stop_after=1 did not stop the run")
    except StopRequested:
        pass
    saved = load_checkpoint(first.ckpt_path, map_location="cpu")
    expect(saved["epoch"] == 1, f"checkpoint at epoch {saved['epoch']}, expected 1")
    expect(saved["scaler"] is not None, "the fp16 run's checkpoint has no GradScaler state")
    cfg.trainer.stop_after = None
    parts, second = build(cfg)
    second.resume_from(first.ckpt_path)
    on_device(parts, settings.device)
    figures = fit(second)
    expect(second.state.epoch == 2 and second.state.history[0] == saved["history"][0],
           "the resumed run did not continue from the checkpoint's epoch 1")
    return {"checkpoint_mib": round(first.ckpt_path.stat().st_size / 2**20, 1), **figures}


def nccl_check(settings: Settings) -> dict:
    """A one-process NCCL group: an all-reduce on the device."""
    import socket

    import torch.distributed as dist

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1,
                            device_id=settings.device)
    try:
        x = torch.arange(4.0, device=settings.device)
        dist.all_reduce(x)
        expect(x.tolist() == [0.0, 1.0, 2.0, 3.0], f"all_reduce over one rank gave {x.tolist()}")
    finally:
        dist.destroy_process_group()
    return {"backend": "nccl"}


def bench_check(settings: Settings) -> dict:
    """``make bench``'s GPU section (``benchmarks.gpu.epoch_times``) at this check's size."""
    from .gpu import epoch_times

    out = epoch_times(settings.device, num_images=settings.samples, batch_size=settings.batch)
    return {f"{m} {c}": f"{v['images_per_s']:.0f} img/s" for m in ("vit_tiny", "resnet18")
            for c, v in out[m].items()}


CHECKS: tuple[Check, ...] = (
    Check("vit_tiny bf16", train_check("vit_tiny", "bf16")),
    Check("vit_tiny fp16+GradScaler", train_check("vit_tiny", "fp16")),
    Check("resnet18 bf16", train_check("resnet18", "bf16")),
    Check("resnet18 fp16+GradScaler", train_check("resnet18", "fp16")),
    Check("resnet18 channels-last", channels_last_check),
    Check("vit_tiny torch.compile", compile_check),
    Check("device-resident loader", loader_check),
    Check("device paper augmentation", paper_augment_check),
    Check("checkpoint save+resume", resume_check),
    Check("nccl all_reduce", nccl_check, cuda_only=True),
    Check("bench gpu section", bench_check, cuda_only=True),
)


# -- running and reporting -------------------------------------------------------------------------

def run_checks(checks: Sequence[Check], settings: Settings, log=print) -> list[Result]:
    """Each check once, in order; a failure is recorded and the others still run."""
    results = []
    for check in checks:
        if check.cuda_only and settings.device.type != "cuda":
            results.append(Result(check.name, CUDA_ONLY, 0.0))
            continue
        log(f"[gpu-check] {check.name} ...")
        start = time.perf_counter()
        try:
            figures, status, error = check.run(settings), PASS, ""
        except Exception as exc:  # noqa: BLE001  (reported in the table, exit status 1)
            traceback.print_exc()
            figures, status, error = {}, FAIL, f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
        results.append(Result(check.name, status, round(time.perf_counter() - start, 1), figures, error))
    return results


def table(results: Sequence[Result], device_name: str) -> str:
    """A markdown table: check, status, seconds, figures (or the error)."""
    lines = [f"gpu-check on {device_name}, torch {torch.__version__}", "",
             "| check | status | s | figures |", "|---|---|---|---|"]
    for r in results:
        detail = r.error or ", ".join(f"{k} {v}" for k, v in r.figures.items())
        lines.append(f"| {r.name} | {r.status} | {r.seconds:g} | {detail} |")
    return "\n".join(lines)


def exit_code(results: Sequence[Result]) -> int:
    """1 when any check failed (``cuda only`` is not a failure, nor a pass), else 0."""
    return int(any(r.status == FAIL for r in results))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", help="run on this device (default: cuda when available)")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these checks (names as in the table)")
    parser.add_argument("--samples", type=int, default=Settings.samples)
    parser.add_argument("--batch", type=int, default=Settings.batch)
    args = parser.parse_args(argv)
    if args.device is None and not torch.cuda.is_available():
        print("gpu-check: no CUDA device here (torch.cuda.is_available() is False); nothing checked")
        return 0
    device = torch.device(args.device or "cuda")
    checks = CHECKS
    if args.only:
        unknown = sorted(set(args.only) - {c.name for c in CHECKS})
        if unknown:
            print(f"gpu-check: unknown check(s) {unknown}; known: {[c.name for c in CHECKS]}", file=sys.stderr)
            return 2
        checks = tuple(c for c in CHECKS if c.name in args.only)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    with tempfile.TemporaryDirectory(prefix="dnrt-gpu-check-") as tmp:
        results = run_checks(checks, Settings(device, args.samples, args.batch, Path(tmp)),
                             log=lambda m: print(m, file=sys.stderr, flush=True))
    print(table(results, name))
    return exit_code(results)


if __name__ == "__main__":
    sys.exit(main())
