"""One epoch of the paper recipe's CIFAR-100 train loader, device backend beside the PIL path.

Writes a generated full-size CIFAR-100 (50,000 train and 10,000 test images in the real
python-pickle format) and times, with no DataLoader worker: a full epoch of
``augment=paper`` with ``aug_backend=device`` (or ``--device-steps`` batches of it), and
``--pil-steps`` batches of the PIL path, extrapolated to the epoch's 196 batches (the authors'
batch 256, last partial batch kept).

    python -m benchmarks.paper_epoch --root /tmp/cifar [--pil-steps 20] [--device cpu]

Training a model on it is ``launch.py experiment=paper_ablation dataset.aug_backend=device
data_dir=<root> ...`` (docs/augment.md gives the command and the figures).
"""

from __future__ import annotations

import argparse
import json
import pickle
import time
from pathlib import Path

import numpy as np
import torch

from dnrt.data import CifarData


def write_cifar100(root: Path, num_train: int = 50_000, num_test: int = 10_000, seed: int = 0) -> None:
    """Generated CIFAR-100 files (train, test, meta) under root/cifar-100-python: smooth colour
    fields with noise, so every RandAugment op has a real histogram and edges to act on."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:32, 0:32]
    for name, n in (("train", num_train), ("test", num_test)):
        labels = rng.integers(0, 100, n)
        base = rng.integers(0, 192, (n, 3, 1, 1)) + (yy + xx)[None, None] * rng.uniform(-2, 2, (n, 3, 1, 1))
        data = np.clip(base + rng.integers(0, 64, (n, 3, 32, 32)), 0, 255).astype(np.uint8).reshape(n, 3072)
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": data, b"fine_labels": labels.tolist(), b"coarse_labels": (labels // 5).tolist()},
                        f, protocol=4)
    with open(folder / "meta", "wb") as f:
        pickle.dump({b"fine_label_names": [f"f{i}".encode() for i in range(100)]}, f)


def time_epoch(root: Path, backend: str, device: torch.device, steps: int | None) -> dict:
    data = CifarData(name="cifar100", root=str(root), augment="paper", crop_pct=0.875,
                     train_interpolation="random", normalization="paper", drop_last=False, aug_backend=backend)
    loader, _ = data.loaders(batch_size=256, seed=42, device=device, workers=0)
    total = len(loader)
    start, n, done = time.perf_counter(), 0, 0
    for x, _ in loader:
        n += x.shape[0]
        done += 1
        if steps is not None and done >= steps:
            break
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    return {"backend": backend, "batches_timed": done, "batches_per_epoch": total, "images_timed": n,
            "seconds_timed": round(seconds, 2), "epoch_s": round(seconds * total / done, 1),
            "extrapolated": done < total, "imgs_per_s": round(n / seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--pil-steps", type=int, default=20)
    parser.add_argument("--device-steps", type=int, default=None, help="default: the full epoch")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if not (args.root / "cifar-100-python" / "train").is_file():
        write_cifar100(args.root)
    dev = torch.device(args.device)
    rows = [time_epoch(args.root, "device", dev, args.device_steps),
            time_epoch(args.root, "pil", dev, args.pil_steps)]
    print(json.dumps({"device": str(dev), "torch_threads": torch.get_num_threads(), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
