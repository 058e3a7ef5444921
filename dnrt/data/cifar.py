"""CIFAR-10/100 from the standard python-pickle files, read by our own reader.

torchvision's CIFAR classes verify md5 sums, which small files written by tests (or a user's own
subset) cannot match, so they are used only to download. On-disk layout under ``root``::

    cifar-10-batches-py/  data_batch_1 .. data_batch_5, test_batch, batches.meta
    cifar-100-python/     train, test, meta

Each data file is a pickle (read with ``encoding='bytes'``) holding ``data``: uint8 [N, 3072]
(1024 red, then green, then blue values, rows top to bottom) and ``labels`` (CIFAR-10) or
``fine_labels`` (CIFAR-100); the meta file holds ``label_names`` / ``fine_label_names``.
"""

from __future__ import annotations

import functools
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .base import ArrayData, DataFileError, DatasetNotFoundError, Split, check_normalization, file_key


@dataclass(frozen=True)
class CifarLayout:
    title: str
    folder: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    meta_file: str
    label_key: str
    names_key: str
    archive: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    paper_std: tuple[float, float, float]  # the authors' constants (normalization='paper')
    num_classes: int
    train_per_class: int  # every class of the published train split has this many images


LAYOUTS = {
    "cifar10": CifarLayout("CIFAR-10", "cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)),
                           ("test_batch",), "batches.meta", "labels", "label_names",
                           "cifar-10-python.tar.gz", (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
                           (0.2023, 0.1994, 0.2010), 10, 5000),
    "cifar100": CifarLayout("CIFAR-100", "cifar-100-python", ("train",), ("test",), "meta", "fine_labels",
                            "fine_label_names", "cifar-100-python.tar.gz",
                            (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), (0.2673, 0.2564, 0.2762),
                            100, 500),
}


def unpickle(path: Path) -> dict[str, object]:
    """A CIFAR pickle as a dict with str keys (the originals are Python 2 pickles with bytes keys)."""
    with open(path, "rb") as f:
        raw = pickle.load(f, encoding="bytes")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in raw.items()}


def missing_files(root: str | Path, variant: str) -> list[Path]:
    layout = LAYOUTS[variant]
    folder = Path(root) / layout.folder
    names = layout.train_files + layout.test_files + (layout.meta_file,)
    return [folder / n for n in names if not (folder / n).is_file()]


def not_found_error(root: str | Path, variant: str) -> DatasetNotFoundError:
    layout = LAYOUTS[variant]
    folder = Path(root).resolve() / layout.folder
    expected = ", ".join(layout.train_files + layout.test_files + (layout.meta_file,))
    missing = ", ".join(p.name for p in missing_files(root, variant))
    return DatasetNotFoundError(
        f"{layout.title} not found: expected the directory {folder} with the files {expected} "
        f"(missing: {missing}). Place the extracted {layout.archive} there (so that {folder} exists), "
        f"or set dataset.download=true to fetch it (needs internet)."
    )


def read_class_names(root: str | Path, variant: str) -> list[str]:
    layout = LAYOUTS[variant]
    path = Path(root) / layout.folder / layout.meta_file
    try:
        names = unpickle(path)[layout.names_key]
    except Exception as exc:  # noqa: BLE001  (any unreadable pickle: named with its file)
        raise DataFileError(f"{path.resolve()}: {_unreadable(exc, layout.names_key)}") from None
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


def _unreadable(exc: Exception, key: str) -> str:
    if isinstance(exc, KeyError):
        return f"not a CIFAR file (no {key!r} entry)"
    first = str(exc).splitlines()[0] if str(exc) else ""
    return f"truncated or corrupt ({type(exc).__name__}: {first})"


@functools.lru_cache(maxsize=64)
def _batch_problem(key: tuple[str, int, int], label_key: str) -> str | None:
    """What is wrong with the CIFAR batch file ``key[0]`` (None: nothing). Reads it whole."""
    try:
        batch = unpickle(Path(key[0]))
        data, labels = np.asarray(batch["data"]), batch[label_key]
    except Exception as exc:  # noqa: BLE001
        return _unreadable(exc, "data" if isinstance(exc, KeyError) and "data" in str(exc) else label_key)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        return f"data of shape {list(data.shape)}, expected [N, 3072]"
    if len(labels) != data.shape[0]:
        return f"{data.shape[0]} images but {len(labels)} labels"
    return None


def check_batches(root: str | Path, variant: str) -> None:
    """Open every data file of ``variant`` under ``root``; :class:`DataFileError` naming the first bad one."""
    layout = LAYOUTS[variant]
    for name in layout.train_files + layout.test_files:
        path = Path(root) / layout.folder / name
        problem = _batch_problem(file_key(path), layout.label_key)
        if problem is not None:
            raise DataFileError(f"{path.resolve()}: {problem}")


def read_split(root: str | Path, variant: str, train: bool) -> Split:
    """All images of one split: uint8 [N, 3, 32, 32], labels int64 [N], in file order."""
    layout = LAYOUTS[variant]
    images, labels = [], []
    for name in layout.train_files if train else layout.test_files:
        batch = unpickle(Path(root) / layout.folder / name)
        data = np.asarray(batch["data"], dtype=np.uint8)
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(np.asarray(batch[layout.label_key], dtype=np.int64))
    return Split(torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels)))


def fetch(root: str | Path, variant: str) -> None:
    """Fetch and extract the archive with torchvision (which verifies its md5)."""
    from torchvision.datasets import CIFAR10, CIFAR100

    cls = CIFAR10 if variant == "cifar10" else CIFAR100
    cls(root=str(root), train=True, download=True)


class CifarData(ArrayData):
    """CIFAR-10 or CIFAR-100 (``variant``, default: ``name``); train = the 50k training images,
    val = the 10k test images. ``num_classes`` comes from the meta file.

    ``device_resident`` (default) keeps both splits as uint8 on the device and augments there.
    ``normalization='paper'`` uses the authors' std for CIFAR-10 (0.2023, 0.1994, 0.2010), the std
    of per-image pixel spreads rather than of all pixels; CIFAR-100's is the same either way.
    """

    in_chans = 3
    native_size = 32

    def __init__(self, name: str = "cifar10", root: str = "data/cifar10", download: bool = False,
                 img_size: int = 32, fraction: float = 1.0, augment: str = "standard",
                 device_resident: bool = True, variant: str | None = None, crop_pct: float | None = None,
                 train_interpolation: str | None = None, normalization: str = "standard",
                 drop_last: bool | str = True, eval_interpolation: str | None = None, aug_backend: str = "pil"):
        variant = variant or name
        if variant not in LAYOUTS:
            raise ValueError(f"CIFAR variant must be one of {sorted(LAYOUTS)}, got {variant!r} "
                             "(set dataset.variant when the name is something else)")
        self.variant = variant
        layout = LAYOUTS[variant]
        paper = check_normalization(normalization) == "paper"
        self.mean, self.std = layout.mean, layout.paper_std if paper else layout.std
        super().__init__(name=name, img_size=img_size, fraction=fraction, augment=augment,
                         device_resident=device_resident, crop_pct=crop_pct,
                         train_interpolation=train_interpolation, normalization=normalization,
                         drop_last=drop_last, eval_interpolation=eval_interpolation, aug_backend=aug_backend)
        self.root = Path(root)
        self.download = bool(download)
        self._class_names: list[str] | None = None
        self._splits: tuple[Split, Split] | None = None

    def _ensure_files(self) -> None:
        if missing_files(self.root, self.variant) and self.download:
            fetch(self.root, self.variant)
        if missing_files(self.root, self.variant):
            raise not_found_error(self.root, self.variant)

    @property
    def class_names(self) -> list[str]:
        if self._class_names is None:
            self._ensure_files()
            self._class_names = read_class_names(self.root, self.variant)
        return self._class_names

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def nominal_train_counts(self) -> list[int]:
        """Train images per class of the published data set, without reading a file (what a plan
        counts steps from when the files are not on this machine)."""
        layout = LAYOUTS[self.variant]
        return [layout.train_per_class] * layout.num_classes

    def check_files(self) -> None:
        """Open every file a run reads (:class:`DataFileError` naming a bad one)."""
        self._ensure_files()
        check_batches(self.root, self.variant)

    def base_splits(self) -> tuple[Split, Split]:
        """(train, test) as stored on disk, read once and cached."""
        if self._splits is None:
            k = self.num_classes  # also checks that every file is there
            train = read_split(self.root, self.variant, train=True)
            test = read_split(self.root, self.variant, train=False)
            for split in (train, test):
                if len(split) and (split.labels.min() < 0 or split.labels.max() >= k):
                    raise ValueError(f"{self.root}: labels outside [0, {k}) for the {k} classes of the meta file")
            self._splits = (train, test)
        return self._splits

    def splits(self, seed: int) -> tuple[Split, Split]:
        return self.base_splits()
