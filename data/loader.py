"""InMemoryLoader: a whole split as one uint8 tensor on the training device, batched augmentation.

In the spirit of airbench (Jordan, 2024): no Dataset, no worker processes, no per-sample Python.
Each epoch draws one seeded permutation, and each batch is one index_select plus the vectorised
crop / flip / normalise / cutout of ``data.augment``.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
import torch.distributed as dist
from torch import Tensor

from convzoo.checks import check_positive

from .augment import alternating_flips, cutout_, gather_crop_flip, normalize, normalize_constants, pad_images


def distributed_rank_and_world_size() -> tuple[int, int]:
    """(rank, world_size) of the initialised default process group, else (0, 1)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def check_mean_std(mean: Sequence[float], std: Sequence[float], channels: int) -> None:
    """Raise ValueError unless mean/std give one value per channel, in [0, 1] pixel scale, std > 0."""
    for name, values in (("mean", mean), ("std", std)):
        if len(values) != channels:
            raise ValueError(f"{name} should have one value per channel ({channels}), got {tuple(values)}")
    if any(not 0.0 <= m <= 1.0 for m in mean):
        raise ValueError(f"mean should be in [0, 1] pixel scale (e.g. 0.49, not 125.3), got {tuple(mean)}")
    if any(not 0.0 < s <= 1.0 for s in std):
        raise ValueError(f"std should be in (0, 1] pixel scale (e.g. 0.25, not 63.0), got {tuple(std)}")


class InMemoryLoader:
    """Yields (float32 images (B, C, H, W), int64 labels (B,)) from uint8 images held on ``device``.

    Per epoch: a permutation seeded by ``seed + epoch`` (or the identity without ``shuffle``),
    split into batches; per batch: random crop with zero padding ``crop_padding``, horizontal
    flip (``flip=True``: a coin per sample; ``"alternate"``: each image mirrored in every other
    epoch, ``augment.alternating_flips``), ``(x / 255 - mean) / std``, then cutout of side ``cutout``.
    ``crop_size`` (h, w), when set, makes the random crops smaller than the images (every window of
    that size in the padded image equally likely): progressive training, whose early steps see
    small crops (``training/progressive.py``), sets it between batches; ``None`` crops the images' size.

    The epoch advances by one per pass (when its first batch is drawn); ``set_epoch(e)`` sets the
    next one explicitly.
    Under torch.distributed (or with ``rank``/``world_size`` given), each epoch's permutation is
    truncated to a multiple of ``world_size`` and rank r takes positions r, r + world_size, ...:
    disjoint, equal-size shards (so up to world_size - 1 samples per epoch are skipped).
    """

    def __init__(self, images_uint8: Tensor, labels: Tensor, *, batch_size: int, shuffle: bool,
                 drop_last: bool, mean: Sequence[float], std: Sequence[float], crop_padding: int = 0,
                 flip: bool | str = False, cutout: int = 0, device: str | torch.device = "cpu", seed: int = 0,
                 channels_last: bool = False, rank: int | None = None, world_size: int | None = None):
        if images_uint8.dtype != torch.uint8 or images_uint8.dim() != 4:
            raise ValueError(f"images_uint8 should be a uint8 tensor (N, C, H, W), got "
                             f"{images_uint8.dtype} of shape {tuple(images_uint8.shape)}")
        if labels.dim() != 1 or labels.shape[0] != images_uint8.shape[0]:
            raise ValueError(f"labels should have shape ({images_uint8.shape[0]},), got {tuple(labels.shape)}")
        check_positive("batch_size", batch_size)
        check_positive("crop_padding", crop_padding, allow_zero=True)
        check_positive("cutout", cutout, allow_zero=True)
        check_mean_std(mean, std, images_uint8.shape[1])
        if (rank is None) != (world_size is None):
            raise ValueError(f"give both rank and world_size or neither, got rank={rank}, world_size={world_size}")
        if rank is None:
            rank, world_size = distributed_rank_and_world_size()
        if not 0 <= rank < world_size:
            raise ValueError(f"rank should be in [0, {world_size}), got {rank}")

        self.device = torch.device(device)
        self.image_size = tuple(images_uint8.shape[2:])
        self.num_total = images_uint8.shape[0]
        # the padded copy replaces the original: crops read from it, never from the unpadded one
        self.images = pad_images(images_uint8.to(self.device), crop_padding)
        self.labels = labels.to(self.device, torch.int64)
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        self._scale, self._shift = normalize_constants(self.mean, self.std, self.device)
        if flip not in (True, False, "alternate"):
            raise ValueError(f"flip should be true, false or alternate, got {flip!r}")
        self.crop_padding, self.flip, self.cutout = crop_padding, flip, cutout
        # the same coins on every rank: each image's flip depends on the image, not the shard
        self._coins = alternating_flips(self.num_total, seed) if flip == "alternate" else None
        self.seed, self.channels_last = seed, channels_last
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.crop_size: tuple[int, int] | None = None

    @property
    def num_samples(self) -> int:
        """Samples this rank sees per epoch (before drop_last)."""
        return self.num_total // self.world_size

    def __len__(self) -> int:
        n, b = self.num_samples, self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def epoch_indices(self, epoch: int) -> Tensor:
        """This rank's sample indices for ``epoch``, in visiting order (CPU, int64)."""
        if self.shuffle:
            order = torch.randperm(self.num_total, generator=torch.Generator().manual_seed(self.seed + epoch))
        else:
            order = torch.arange(self.num_total)
        usable = self.num_samples * self.world_size  # the same on every rank, so shards are equal
        return order[:usable][self.rank::self.world_size]

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        # A generator: the epoch advances when the first batch is drawn, not at iter(), because
        # Lightning calls iter() once on a non-DataLoader just to check that it is iterable.
        epoch, self.epoch = self.epoch, self.epoch + 1
        order = self.epoch_indices(epoch).to(self.device)
        # augmentation randomness differs per rank (the permutation must not: shards rely on it)
        generator = torch.Generator(self.device).manual_seed((self.seed + epoch) * 65_537 + self.rank + 1)
        for i in range(len(self)):
            index = order[i * self.batch_size:(i + 1) * self.batch_size]
            size = tuple(self.crop_size) if self.crop_size else self.image_size  # read per batch
            if self.crop_padding or self.flip or size != self.image_size:
                flip = self.flip
                if flip == "alternate":  # (coin + epoch) odd: mirrored in every other epoch
                    flip = self._coins.to(index.device).index_select(0, index) ^ bool(epoch % 2)
                images = gather_crop_flip(self.images, index, size, self.crop_padding, flip, generator)
            else:
                images = self.images.index_select(0, index)
            images = normalize(images, self._scale, self._shift)         # (B, C, H, W) float32
            if self.cutout:
                cutout_(images, self.cutout, generator)
            if self.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            yield images, self.labels.index_select(0, index)
