"""scikit-learn's handwritten digits: 1,797 real 8x8 grey images, 10 classes, shipped with sklearn."""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .base import ArrayData, Split
from .sampling import stratified_split


def digits_file() -> Path:
    """scikit-learn's copy of the digits, ``sklearn/datasets/data/digits.csv.gz`` (one image per row:
    64 pixels 0..16, then the label), found without importing sklearn: importing it and calling
    ``load_digits`` cost a launched job about 0.8 s of its start (after its torch and timm imports),
    reading the file 0.01 s, and the file is all ``load_digits`` reads."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("dataset=digits reads scikit-learn's copy of the digits: pip install scikit-learn")
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "digits.csv.gz"
    if not path.is_file():
        raise FileNotFoundError(f"dataset=digits: {path} is missing from the scikit-learn install")
    return path


@functools.lru_cache(maxsize=1)
def _load() -> tuple[torch.Tensor, torch.Tensor]:
    """images uint8 [1797, 1, 8, 8] (0..16 scaled to 0..255), labels int64 [1797]."""
    table = np.loadtxt(digits_file(), delimiter=",")  # [1797, 65] float64
    images = np.round(table[:, :-1].reshape(-1, 8, 8) * (255.0 / 16.0)).astype(np.uint8)
    return torch.from_numpy(images).unsqueeze(1), torch.from_numpy(table[:, -1].astype(np.int64))


class DigitsData(ArrayData):
    """Digits with a stratified train/val split fixed by the run seed (``val_fraction`` to val).

    ``img_size`` other than 8 resizes on the device (or in PIL on the PIL path).
    """

    num_classes = 10
    in_chans = 1
    native_size = 8
    # Mean/std of all 1,797 images scaled to [0, 1].
    mean = (0.3053,)
    std = (0.3759,)

    def __init__(self, name: str = "digits", img_size: int = 8, val_fraction: float = 0.2,
                 fraction: float = 1.0, augment: str = "none", device_resident: bool = True,
                 **recipe: Any):
        super().__init__(name=name, img_size=img_size, fraction=fraction, augment=augment,
                         device_resident=device_resident, **recipe)
        self.val_fraction = float(val_fraction)

    def splits(self, seed: int) -> tuple[Split, Split]:
        images, labels = _load()
        train_idx, val_idx = stratified_split(labels, self.val_fraction, seed)
        return (Split(images[train_idx], labels[train_idx]), Split(images[val_idx], labels[val_idx]))
