"""How fast the paper train recipe can get on a CPU core: timm's PIL transform against the device path
and against the cheapest kernels any batched version of the recipe must run.

One process, one torch thread, 256 generated 32-px RGB images, alternating rounds, medians:

- ``pil``: timm's transform (``dnrt.data.transforms.array_transform('paper')``) image by image, stacked;
- ``device``: :func:`dnrt.data.device_paper.paper_transform` on the uint8 batch;
- ``crop_grid_sample``: the random resized crop alone as one ``torch.nn.functional.grid_sample`` per
  filter (torch's fused kernel, not Pillow's arithmetic): a lower bound on the crop of any batched
  version, before RandAugment, normalisation and erasing;
- ``one_pass``: one elementwise float32 pass over the batch (``x * a + b``): what each further
  per-pixel step costs at least;
- ``device_stages_ms``: where the device path's time goes, the same steps as ``paper_transform``
  timed one by one in each round (draws, crop, RandAugment, normalisation, random erasing).

    python -m benchmarks.paper_bound [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from dnrt.data.augment import _resized_crop_params, random_erasing
from dnrt.data.device_geometry import resized_crop
from dnrt.data.device_paper import RANDOM_ERASING_P, draw_paper, one_cpu_thread, paper_transform
from dnrt.data.device_randaugment import rand_augment
from dnrt.data.transforms import array_transform

B, SIZE = 256, 32
MEAN, STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)


def _crop_grid_sample(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    b = x.shape[0]
    top, left, h, w = (t.float() for t in _resized_crop_params(b, SIZE, SIZE, gen, x.device, (0.08, 1.0),
                                                                (3 / 4, 4 / 3)))
    bicubic = torch.rand(b, generator=gen) < 0.5
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 1, 1] = w / SIZE, h / SIZE
    theta[:, 0, 2], theta[:, 1, 2] = (left + w / 2) / (SIZE / 2) - 1, (top + h / 2) / (SIZE / 2) - 1
    grid = F.affine_grid(theta, [b, 3, SIZE, SIZE], align_corners=False)
    xf, out = x.float(), torch.empty(b, 3, SIZE, SIZE)
    for mode, sel in (("bicubic", bicubic), ("bilinear", ~bicubic)):
        idx = torch.nonzero(sel).squeeze(1)
        out[idx] = F.grid_sample(xf[idx], grid[idx], mode=mode, padding_mode="border", align_corners=False)
    return out


def _device_stages(x: torch.Tensor, gen: torch.Generator, mean: torch.Tensor, std: torch.Tensor,
                   fill: torch.Tensor) -> dict[str, float]:
    """CPU seconds of each step of :func:`paper_transform`, run one by one."""
    seconds: dict[str, float] = {}

    def timed(name: str, fn):
        start = time.process_time()
        out = fn()
        seconds[name] = time.process_time() - start
        return out

    with one_cpu_thread(x.device):
        draw = timed("draws", lambda: draw_paper(B, SIZE, SIZE, gen, x.device, interpolation="random"))
        out = timed("crop", lambda: resized_crop(x, draw.top, draw.left, draw.height, draw.width, SIZE,
                                                 draw.bicubic, flip=draw.flip))
        out = timed("randaugment", lambda: rand_augment(out, draw.policy, fill))
        out = timed("normalise", lambda: out.div_(255).sub_(mean).div_(std))
        timed("erase", lambda: random_erasing(out, gen, p=RANDOM_ERASING_P, noise_where_erased=True))
    return seconds


def measure(rounds: int = 5) -> dict:
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    arrays = rng.integers(0, 256, (B, SIZE, SIZE, 3), dtype=np.uint8)
    images = [Image.fromarray(a) for a in arrays]
    x = torch.from_numpy(arrays).permute(0, 3, 1, 2).contiguous()
    gen = torch.Generator().manual_seed(0)
    pil = array_transform("paper", train=True, native_size=SIZE, size=SIZE, mean=MEAN, std=STD,
                          train_interpolation="random")
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    fill = torch.tensor([round(255 * m) for m in MEAN], dtype=torch.float32)
    xf = x.float()
    sides = {
        "pil": lambda: torch.stack([pil(img) for img in images]),
        "device": lambda: paper_transform(x, SIZE, gen, mean=mean, std=std, fill=fill, interpolation="random"),
        "crop_grid_sample": lambda: _crop_grid_sample(x, gen),
        "one_pass": lambda: xf * 0.5 + 1.0,
    }
    times: dict[str, list[float]] = {k: [] for k in sides}
    stages: dict[str, list[float]] = {}
    for fn in sides.values():
        fn()  # first-touch allocations and tables
    for _ in range(rounds):
        for key, fn in sides.items():
            start = time.process_time()
            fn()
            times[key].append(time.process_time() - start)
        for key, sec in _device_stages(x, gen, mean, std, fill).items():
            stages.setdefault(key, []).append(sec)
    ms = {k: round(1000 * statistics.median(v), 2) for k, v in times.items()}
    return {"ms_per_batch": ms, "images_per_cpu_s": {k: round(B / (v / 1000)) for k, v in ms.items() if v > 0},
            "pil_over": {k: round(ms["pil"] / v, 1) for k, v in ms.items() if v > 0},
            "device_stages_ms": {k: round(1000 * statistics.median(v), 2) for k, v in stages.items()},
            "batch": B, "size": SIZE, "threads": 1, "rounds": rounds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    print(json.dumps(measure(parser.parse_args().rounds), indent=2))


if __name__ == "__main__":
    main()
