"""Random images for speed tests: uint8 noise around a per-class template, fixed by the run seed."""

from __future__ import annotations

from typing import Any

import torch

from .base import ArrayData, Split
from .sampling import cpu_generator


class SyntheticData(ArrayData):
    """``num_samples`` train and ``val_samples`` val images of ``in_chans`` x ``img_size`` px.

    Each class has a random template and every image is that template plus uniform noise, so a
    model can learn something (useful for smoke tests) while the data costs nothing to produce.
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __init__(self, name: str = "synthetic", num_classes: int = 10, img_size: int = 32, in_chans: int = 3,
                 num_samples: int = 5000, val_samples: int = 1000, fraction: float = 1.0,
                 augment: str = "none", device_resident: bool = True,
                 **recipe: Any):
        if num_classes < 1 or in_chans < 1 or num_samples < 1 or val_samples < 1:
            raise ValueError("num_classes, in_chans, num_samples and val_samples must be >= 1")
        self.num_classes = int(num_classes)
        self.in_chans = int(in_chans)
        self.native_size = int(img_size)
        # Template (uniform 0..191) + noise (uniform 0..64): mean 127.5/255, std ~ 59/255 per pixel.
        self.mean = (0.5,) * self.in_chans
        self.std = (0.23,) * self.in_chans
        super().__init__(name=name, img_size=img_size, fraction=fraction, augment=augment,
                         device_resident=device_resident, **recipe)
        self.num_samples = int(num_samples)
        self.val_samples = int(val_samples)

    def _make(self, n: int, templates: torch.Tensor, gen: torch.Generator) -> Split:
        labels = torch.randint(0, self.num_classes, (n,), generator=gen)
        noise = torch.randint(0, 65, (n, *templates.shape[1:]), generator=gen, dtype=torch.uint8)
        return Split(templates[labels] + noise, labels)

    def splits(self, seed: int) -> tuple[Split, Split]:
        gen = cpu_generator(seed, "synthetic")
        shape = (self.num_classes, self.in_chans, self.native_size, self.native_size)
        templates = torch.randint(0, 192, shape, generator=gen, dtype=torch.uint8)
        return self._make(self.num_samples, templates, gen), self._make(self.val_samples, templates, gen)
