"""ImageFolder trees (ImageNet, ImageNet-100, any ``root/{train,val}/<class>/<image>`` layout).

Always the PIL + DataLoader path: full-size JPEGs do not fit the device as uint8 arrays, and
decoding dominates anyway (use ``workers``). Classes are the sorted sub-directories of
``root/train``; ``root/val`` is labelled with the same class indices.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch
from timm.data.constants import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

from .base import DataFileError, DatasetNotFoundError, check_normalization, file_key
from .loader import EpochLoader
from .pil import FileSource, PILLoader, SeededDataset
from .sampling import check_drop_last, derive_seed, stratified_subset
from .transforms import check_augment, check_interpolation, folder_transform


def _folder_problem(folder: Path) -> str | None:
    """What is wrong with one class folder (None: nothing): it holds an image file PIL can open."""
    images = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS)
    if not images:
        return f"no image files ({', '.join(IMG_EXTENSIONS)})"
    problem = _image_problem(file_key(images[0]))
    return None if problem is None else f"{images[0].name} cannot be read ({problem})"


@functools.lru_cache(maxsize=4096)
def _image_problem(key: tuple[str, int, int]) -> str | None:
    from PIL import Image

    try:
        with Image.open(key[0]) as im:
            im.verify()
    except Exception as exc:  # noqa: BLE001
        return f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    return None


class ImageFolderData:
    """Train/val ImageFolder trees under ``root`` with timm transforms.

    Train: RandomResizedCrop(img_size) + flip (``standard``), plus RandAugment and random erasing
    (``paper``) or random erasing only (``paper_lite``); ``none`` and val: resize to
    img_size / crop_pct, center crop img_size. Normalisation: ImageNet mean/std (also the authors',
    so ``normalization='paper'`` is the same). ``train_interpolation`` (None: ``interpolation``)
    and ``drop_last`` as for the in-memory data sets (:class:`dnrt.data.base.ArrayData`).
    ``eval_interpolation``: the evaluation resize (None: ``interpolation``; the authors' is bilinear).
    """

    in_chans = 3
    mean = IMAGENET_DEFAULT_MEAN
    std = IMAGENET_DEFAULT_STD

    def __init__(self, name: str = "imagefolder", root: str = "data/imagefolder", img_size: int = 224,
                 fraction: float = 1.0, augment: str = "standard", crop_pct: float = 0.875,
                 interpolation: str = "bicubic", train_dir: str = "train", val_dir: str = "val",
                 train_interpolation: str | None = None, normalization: str = "standard",
                 drop_last: bool | str = True, eval_interpolation: str | None = None):
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")
        self.name = str(name)
        self.root = Path(root)
        self.img_size = int(img_size)
        self.fraction = float(fraction)
        self.augment = check_augment(augment)
        self.crop_pct = float(crop_pct)
        self.interpolation = str(interpolation)
        self.train_interpolation = None if train_interpolation is None else check_interpolation(train_interpolation)
        self.normalization = check_normalization(normalization)
        self.drop_last = check_drop_last(drop_last)
        if eval_interpolation not in (None, "bilinear", "bicubic"):
            raise ValueError(f"dataset.eval_interpolation must be bilinear, bicubic or null, "
                             f"got {eval_interpolation!r}")
        self.eval_interpolation = eval_interpolation
        self.train_dir, self.val_dir = train_dir, val_dir
        self._samples: tuple[list[tuple[str, int]], list[tuple[str, int]]] | None = None
        self._classes: list[str] | None = None

    def _check_root(self) -> None:
        folders = [self.root / self.train_dir, self.root / self.val_dir]
        missing = [str(f.resolve()) for f in folders if not f.is_dir()]
        if missing:
            raise DatasetNotFoundError(
                f"{self.name}: image folder not found: missing {', '.join(missing)}. Expected "
                f"{self.root.resolve()}/{self.train_dir}/<class>/<image> and "
                f"{self.root.resolve()}/{self.val_dir}/<class>/<image> (the ImageFolder layout); "
                f"point dataset.root (or DNRT_DATA_DIR) at it."
            )

    @property
    def classes(self) -> list[str]:
        if self._classes is None:
            self._check_root()
            self._classes, _ = find_classes(str(self.root / self.train_dir))
        return self._classes

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def check_files(self) -> None:
        """Every class folder of the train tree holds an image file that opens (one checked per
        folder: reading every image is the training's job), and the val tree holds images."""
        for name in self.classes:
            folder = self.root / self.train_dir / name
            problem = _folder_problem(folder)
            if problem is not None:
                raise DataFileError(f"{folder.resolve()}: {problem}")
        self.samples()  # the val tree: at least one image

    def samples(self) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
        """(train, val) lists of (path, class index), scanned once."""
        if self._samples is None:
            class_to_idx = {c: i for i, c in enumerate(self.classes)}
            train = make_dataset(str(self.root / self.train_dir), class_to_idx, extensions=IMG_EXTENSIONS)
            # A val tree may lack some classes (small subsets); its indices still follow train's.
            val = make_dataset(str(self.root / self.val_dir), class_to_idx, extensions=IMG_EXTENSIONS,
                               allow_empty=True)
            if not val:
                raise DatasetNotFoundError(f"{self.name}: no images under {(self.root / self.val_dir).resolve()}")
            self._samples = (train, val)
        return self._samples

    def _dataset(self, samples: list[tuple[str, int]], *, train: bool, seed: int) -> SeededDataset:
        labels = torch.tensor([y for _, y in samples], dtype=torch.long)
        keep = stratified_subset(labels, self.fraction, derive_seed(seed, "train" if train else "val"))
        paths = [samples[i][0] for i in keep.tolist()]
        transform = folder_transform(self.augment if train else "none", train=train, size=self.img_size,
                                     mean=self.mean, std=self.std, crop_pct=self.crop_pct,
                                     interpolation=self.interpolation,
                                     train_interpolation=self.train_interpolation,
                                     eval_interpolation=self.eval_interpolation)
        return SeededDataset(FileSource(paths), labels[keep], transform)

    def loaders(self, batch_size: int, seed: int, device: torch.device | str, rank: int = 0,
                world_size: int = 1, workers: int = 0) -> tuple[EpochLoader, EpochLoader]:
        train, val = self.samples()
        common = dict(batch_size=batch_size, device=device, seed=seed, rank=rank, world_size=world_size,
                      workers=workers, drop_last=self.drop_last)
        return (PILLoader(self._dataset(train, train=True, seed=seed), train=True, **common),
                PILLoader(self._dataset(val, train=False, seed=seed), train=False, **common))
