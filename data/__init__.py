"""Lightning datamodules (CIFAR-10/100, ImageFolder trees, synthetic data) and the in-memory loader.

Every datamodule derives from ``ImageDataModule`` and serves (float32 images, int64 labels)
batches from splits held as uint8 tensors: by default through ``InMemoryLoader`` (whole split on
the device, batched augmentation, no workers), or a torch DataLoader with ``loader="torch"``.
"""
from .base import ImageDataModule, channel_stats, split_indices
from .cifar import (CIFAR10_CLASSES, DataUnavailableError, CIFAR10_MEAN, CIFAR10_STD, CIFAR100_CLASSES, CIFAR100_MEAN, CIFAR100_STD,
                    CIFAR10DataModule, CIFAR100DataModule)
from .folder import FolderDataModule
from .loader import InMemoryLoader
from .synthetic import SyntheticDataModule
from .torch_loader import make_torch_loader

__all__ = [
    "ImageDataModule", "DataUnavailableError", "CIFAR10DataModule", "CIFAR100DataModule", "FolderDataModule", "SyntheticDataModule",
    "InMemoryLoader", "make_torch_loader", "channel_stats", "split_indices",
    "CIFAR10_MEAN", "CIFAR10_STD", "CIFAR100_MEAN", "CIFAR100_STD", "CIFAR10_CLASSES", "CIFAR100_CLASSES",
]
