"""The PIL path: torch Dataset + DataLoader (+ workers) + PIL transforms, made epoch-deterministic.

torchvision and timm transforms draw from the global torch, ``random`` and numpy RNGs. Each batch
therefore carries a seed derived from (seed, epoch, rank, batch number), and the dataset runs the
whole batch's transforms inside :func:`seeded_rng`, which seeds those three RNGs and restores them
afterwards. The result does not depend on the number of workers, and the caller's global RNG
state is left untouched (with ``workers=0`` the transforms run in the main process).
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision.datasets.folder import default_loader

from .loader import Batch, EpochLoader
from .sampling import derive_seed

Key = tuple[int, int]  # (index into the dataset, seed of the batch it belongs to)


@contextlib.contextmanager
def seeded_rng(seed: int) -> Iterator[None]:
    """Seed torch's CPU generator, ``random`` and numpy's global RNG; restore all three on exit."""
    torch_state = torch.default_generator.get_state()
    py_state = random.getstate()
    np_state = np.random.get_state()
    torch.default_generator.manual_seed(seed)  # CPU only: never reseeds the CUDA generators
    random.seed(seed)
    np.random.seed(seed % 2**32)
    try:
        yield
    finally:
        torch.default_generator.set_state(torch_state)
        random.setstate(py_state)
        np.random.set_state(np_state)


class ArraySource:
    """PIL images from a uint8 array [N, H, W, C] (C = 1 gives mode ``L``, 3 gives ``RGB``)."""

    def __init__(self, images_nhwc: np.ndarray):
        if images_nhwc.dtype != np.uint8 or images_nhwc.ndim != 4 or images_nhwc.shape[-1] not in (1, 3):
            raise ValueError(f"need uint8 [N, H, W, 1|3], got {images_nhwc.dtype} {images_nhwc.shape}")
        self.images = np.ascontiguousarray(images_nhwc)

    @classmethod
    def from_nchw(cls, images: torch.Tensor) -> ArraySource:
        return cls(images.permute(0, 2, 3, 1).cpu().numpy())

    def __len__(self) -> int:
        return self.images.shape[0]

    def __call__(self, i: int) -> Image.Image:
        img = self.images[i]
        return Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img)


class FileSource:
    """PIL RGB images from file paths (torchvision's default loader)."""

    def __init__(self, paths: Sequence[str]):
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __call__(self, i: int) -> Image.Image:
        return default_loader(self.paths[i])


class SeededDataset(Dataset):
    """``source(i)`` -> ``transform`` -> (x float32 [C, S, S], label), keyed by (index, batch seed)."""

    def __init__(self, source: Callable[[int], Image.Image], labels: torch.Tensor | Sequence[int],
                 transform: Callable[[Image.Image], torch.Tensor]):
        self.source = source
        self.labels = torch.as_tensor(labels, dtype=torch.long).cpu()
        self.transform = transform
        if len(source) != self.labels.numel():
            raise ValueError(f"{len(source)} images but {self.labels.numel()} labels")

    def __len__(self) -> int:
        return self.labels.numel()

    def _sample(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.transform(self.source(i)), self.labels[i]

    def __getitem__(self, key: Key) -> tuple[torch.Tensor, torch.Tensor]:
        i, seed = key
        with seeded_rng(seed):
            return self._sample(i)

    def __getitems__(self, keys: list[Key]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        # The DataLoader hands over a whole batch: one seeding per batch, not per image.
        with seeded_rng(keys[0][1]):
            return [self._sample(i) for i, _ in keys]


class _SeededBatches(Sampler):
    """Batch sampler reading its epoch from the owning loader at each ``iter``."""

    def __init__(self, owner: PILLoader):
        self.owner = owner

    def __len__(self) -> int:
        return len(self.owner)

    def __iter__(self) -> Iterator[list[Key]]:
        o = self.owner
        for b, chunk in enumerate(o.batch_indices()):
            batch_seed = derive_seed(o.seed, "aug", o.epoch, o.rank, b)
            yield [(i, batch_seed) for i in chunk.tolist()]


class PILLoader(EpochLoader):
    """DataLoader over a :class:`SeededDataset`; batches are moved to ``device`` (pinned on CUDA)."""

    def __init__(self, dataset: SeededDataset, *, batch_size: int, device: torch.device | str, seed: int,
                 train: bool, rank: int = 0, world_size: int = 1, workers: int = 0, drop_last: bool | str = True):
        super().__init__(len(dataset), batch_size=batch_size, seed=seed, train=train, rank=rank,
                         world_size=world_size, drop_last=drop_last)
        self.dataset = dataset
        self.device = torch.device(device)
        self.workers = int(workers)
        self._pin = self.device.type == "cuda"
        # A private generator: the DataLoader draws a base seed for its workers at every epoch, which
        # would otherwise advance the caller's global RNG (we reseed per batch, so its value is unused).
        self._loader = DataLoader(dataset, batch_sampler=_SeededBatches(self), num_workers=self.workers,
                                  pin_memory=self._pin, persistent_workers=self.workers > 0,
                                  generator=torch.Generator())

    def __iter__(self) -> Iterator[Batch]:
        for x, y in self._loader:
            yield x.to(self.device, non_blocking=self._pin), y.to(self.device, non_blocking=self._pin)
