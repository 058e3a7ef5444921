"""Images/s of the device-resident CIFAR loader vs torchvision Dataset + DataLoader + PIL.

Both sides read the same temporary CIFAR-10 files (the real pickle format), apply the same
``standard`` augmentation (pad 4, random crop 32, flip) and the same normalisation, and deliver
float32 batches on the same device. They are timed in one process, alternating, so machine load
affects both alike; the reported rates are medians over the rounds.

Beside them, the paper recipe's train path (``augment=paper``: RandomResizedCrop with random
interpolation + RandAugment rand-m9-mstd0.5-inc1 + random erasing) in one run: timm's PIL transform
with 0, 1 and 2 DataLoader workers, and the same recipe as batched ops on the device
(``dataset.aug_backend=device``), for when a GPU consumes batches faster than the CPU can augment.

    python benchmarks/loader.py [--full] [--workers N] [--out result.json]
"""

from __future__ import annotations

import argparse
import json
import pickle
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from dnrt.data import CifarData


def write_cifar10(root: Path, num_train: int, num_test: int = 1000, seed: int = 0) -> None:
    """Random CIFAR-10-format files: 5 train batches, test_batch and batches.meta under root."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)

    def dump(name: str, n: int) -> None:
        obj = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
               b"labels": rng.integers(0, 10, n).tolist()}
        with open(folder / name, "wb") as f:
            pickle.dump(obj, f, protocol=4)

    for b, chunk in enumerate(np.array_split(np.arange(num_train), 5), start=1):
        dump(f"data_batch_{b}", len(chunk))
    dump("test_batch", num_test)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [f"c{i}".encode() for i in range(10)]}, f)


def _epoch_rate(loader, epoch: int, device: torch.device) -> float:
    loader.set_epoch(epoch)
    start = time.perf_counter()
    n = 0
    for x, _ in loader:
        n += x.shape[0]
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return n / (time.perf_counter() - start)


def measure_paper_path(root: str, device: torch.device, *, batch_size: int = 256,
                       workers: tuple[int, ...] = (0, 1, 2)) -> dict:
    """Images/s of one epoch of the ``paper`` train loader: the PIL path per DataLoader worker count
    and the device path (no workers); ``device_over_best_pil`` is the device rate over the best PIL one."""
    rates = {}
    data = CifarData(name="cifar10", root=root, augment="paper", train_interpolation="random",
                     drop_last=False, aug_backend="device")
    loader, _ = data.loaders(batch_size=batch_size, seed=0, device=device)
    for _, _batch in zip(range(1), loader):  # first-touch allocations and tables outside the timing
        pass
    device_rate = round(_epoch_rate(loader, 1, device), 1)
    for w in workers:
        data = CifarData(name="cifar10", root=root, augment="paper", train_interpolation="random",
                         drop_last=False)
        loader, _ = data.loaders(batch_size=batch_size, seed=0, device=device, workers=w)
        for _, _batch in zip(range(1), loader):  # worker start-up outside the timing
            pass
        rates[str(w)] = round(_epoch_rate(loader, 1, device), 1)
        del loader
    best = max(rates.values()) if rates else None
    return {"imgs_per_s_by_workers": rates, "device_imgs_per_s": device_rate,
            "device_over_best_pil": round(device_rate / best, 2) if best else None,
            "augment": "paper (rand-m9-mstd0.5-inc1, random interpolation)"}


def measure_loader_speedup(quick: bool = True, *, batch_size: int = 256, rounds: int = 3, workers: int = 0,
                           device: str | None = None, paper_workers: tuple[int, ...] = (0, 1, 2)) -> dict:
    """Median images/s of both paths over ``rounds`` alternating epochs (10k images quick, 50k full),
    and one epoch of the paper train path per worker count in ``paper_workers`` (none if empty)."""
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    num_train = 10_000 if quick else 50_000
    with tempfile.TemporaryDirectory() as tmp:
        write_cifar10(Path(tmp), num_train)
        sides = {}
        for key, resident in (("device", True), ("dataloader", False)):
            data = CifarData(name="cifar10", root=tmp, augment="standard", device_resident=resident)
            sides[key], _ = data.loaders(batch_size=batch_size, seed=0, device=dev, workers=workers)
        for loader in sides.values():  # warm-up: first-touch allocations, worker start-up
            for _, _batch in zip(range(2), loader):
                pass
        rates: dict[str, list[float]] = {k: [] for k in sides}
        for r in range(rounds):
            for key, loader in sides.items():
                rates[key].append(_epoch_rate(loader, r, dev))
        del sides
        paper = measure_paper_path(tmp, dev, batch_size=batch_size, workers=paper_workers) if paper_workers else None
    device_rate = statistics.median(rates["device"])
    loader_rate = statistics.median(rates["dataloader"])
    return {
        "device_imgs_per_s": round(device_rate, 1),
        "dataloader_imgs_per_s": round(loader_rate, 1),
        "device_loader_speedup": round(device_rate / loader_rate, 2),
        "rounds": {k: [round(v, 1) for v in vs] for k, vs in rates.items()},
        "num_images": num_train,
        "batch_size": batch_size,
        "augment": "standard",
        "device": str(dev),
        "torch_threads": torch.get_num_threads(),
        "dataloader_workers": workers,
        "paper": paper,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="50k images instead of 10k")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args()
    result = measure_loader_speedup(quick=not args.full, rounds=args.rounds, workers=args.workers,
                                    device=args.device)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
