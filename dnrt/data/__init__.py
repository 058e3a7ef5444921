"""Data sets and epoch-deterministic loaders (digits, CIFAR, CIFAR-LT, ImageFolder, synthetic).

Every data set is built by Hydra from ``conf/dataset/<name>.yaml`` and exposes ``name``,
``num_classes``, ``in_chans``, ``img_size`` and
``loaders(batch_size, seed, device, rank=0, world_size=1, workers=0) -> (train, val)``.
"""

from .augment import DEVICE_AUGMENTS, device_transform
from .base import ArrayData, DataFileError, DatasetNotFoundError, Split
from .cifar import CifarData
from .digits import DigitsData
from .imagefolder import ImageFolderData
from .loader import DeviceLoader, EpochLoader
from .longtail import CifarLongTailData, long_tail_counts, long_tail_indices
from .pil import PILLoader, SeededDataset, seeded_rng
from .sampling import derive_seed, epoch_order, stratified_split, stratified_subset
from .synthetic import SyntheticData
from .transforms import AUGMENTS, array_transform, folder_transform

__all__ = [
    "AUGMENTS",
    "DEVICE_AUGMENTS",
    "ArrayData",
    "CifarData",
    "CifarLongTailData",
    "DataFileError",
    "DatasetNotFoundError",
    "DeviceLoader",
    "DigitsData",
    "EpochLoader",
    "ImageFolderData",
    "PILLoader",
    "SeededDataset",
    "Split",
    "SyntheticData",
    "array_transform",
    "derive_seed",
    "device_transform",
    "epoch_order",
    "folder_transform",
    "long_tail_counts",
    "long_tail_indices",
    "seeded_rng",
    "stratified_split",
    "stratified_subset",
]
