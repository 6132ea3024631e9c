"""The conventional path (``loader="torch"``): a Dataset over the same uint8 tensors, torchvision-v2
transforms per sample and a torch DataLoader with worker processes.

Same effect as the InMemoryLoader (crop with zero padding, flip, normalise, cutout), kept as a
reference to compare speed against and for setups where per-sample transforms are wanted.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision.transforms import v2

from .augment import cutout_


class Cutout(torch.nn.Module):
    """Zero a size x size square at a random centre of one normalised (C, H, W) image (DeVries & Taylor, 2017)."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def forward(self, image: Tensor) -> Tensor:
        return cutout_(image[None], self.size)[0]


class TensorImageDataset(Dataset):
    """(image, label) pairs from a uint8 (N, C, H, W) tensor and int64 labels, with a transform."""

    def __init__(self, images: Tensor, labels: Tensor, transform=None):
        if images.shape[0] != labels.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels")
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        image = self.images[i]
        return (self.transform(image) if self.transform is not None else image), self.labels[i]


class EpochShuffleSampler(Sampler[int]):
    """A permutation of ``range(num_samples)`` seeded by ``seed + epoch``; Lightning calls
    ``set_epoch`` before every epoch (after a resume too), so a resumed run visits the samples in
    the same order as an uninterrupted one (a RandomSampler's generator would restart instead)."""

    def __init__(self, num_samples: int, seed: int = 0):
        self.num_samples, self.seed, self.epoch = num_samples, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.num_samples, generator=generator).tolist())


def build_transform(image_size: tuple[int, int], mean: Sequence[float], std: Sequence[float], *,
                    crop_padding: int = 0, flip: bool = False, cutout: int = 0) -> v2.Compose:
    steps = []
    if crop_padding:
        steps.append(v2.RandomCrop(list(image_size), padding=crop_padding, fill=0))
    if flip:
        steps.append(v2.RandomHorizontalFlip())
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    if cutout:
        steps.append(Cutout(cutout))
    return v2.Compose(steps)


def make_torch_loader(images: Tensor, labels: Tensor, *, batch_size: int, shuffle: bool, drop_last: bool,
                      mean: Sequence[float], std: Sequence[float], crop_padding: int = 0, flip: bool = False,
                      cutout: int = 0, num_workers: int = 2, seed: int = 0, pin_memory: bool = False) -> DataLoader:
    """A standard DataLoader over ``images``/``labels`` with v2 transforms in ``num_workers`` processes."""
    transform = build_transform(tuple(images.shape[2:]), mean, std, crop_padding=crop_padding, flip=flip,
                                cutout=cutout)
    sampler = EpochShuffleSampler(images.shape[0], seed) if shuffle else None
    return DataLoader(TensorImageDataset(images, labels, transform), batch_size=batch_size, sampler=sampler,
                      drop_last=drop_last, num_workers=num_workers, persistent_workers=num_workers > 0,
                      pin_memory=pin_memory, generator=torch.Generator().manual_seed(seed))
