"""ImageDataModule: the Lightning datamodule every data set here shares.

A subclass only says how to get its splits as uint8 tensors (``_load_train_val``, ``_load_test``);
this class holds out the validation split, fills in the metadata (classes, channels, size, mean,
std) and builds the loaders: the fast InMemoryLoader by default, or a torch DataLoader.
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Sequence

import lightning as L
import torch
from torch import Tensor

from convzoo.checks import check_choice, check_positive

from .loader import InMemoryLoader, check_mean_std
from .torch_loader import make_torch_loader

Split = tuple[Tensor, Tensor]  # (uint8 images (N, C, H, W), int64 labels (N,))


def check_val_size(val_size: int, num_samples: int) -> None:
    if val_size >= num_samples:
        raise ValueError(f"val_size={val_size} should be smaller than the {num_samples} images of the "
                         f"training split it is held out from")


def split_indices(num_samples: int, val_size: int, seed: int) -> tuple[Tensor, Tensor]:
    """(train, val) index tensors, sorted: ``val_size`` of ``num_samples`` chosen by a permutation seeded by ``seed``."""
    check_val_size(val_size, num_samples)
    perm = torch.randperm(num_samples, generator=torch.Generator().manual_seed(seed))
    return perm[val_size:].sort().values, perm[:val_size].sort().values


def channel_stats(images: Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std over all pixels of uint8 (N, C, H, W) images, in [0, 1] pixel scale."""
    values = torch.arange(256, dtype=torch.float64)
    means, stds = [], []
    for c in range(images.shape[1]):
        # a 256-bin histogram gives exact sums of x and x^2, ~20x faster than a float64 pass
        counts = torch.bincount(images[:, c].reshape(-1), minlength=256).to(torch.float64)
        mean = (counts * values).sum() / counts.sum()
        var = (counts * (values - mean).square()).sum() / counts.sum()
        means.append(mean.item() / 255.0)
        stds.append(var.sqrt().item() / 255.0)
    return tuple(means), tuple(stds)


def available_memory(device: torch.device) -> int | None:
    """Free bytes on ``device`` (host RAM for the CPU), or None where it cannot be told."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if device.type == "cpu" and hasattr(os, "sysconf"):
        try:
            return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError):
            return None
    return None


def _floats(values: Sequence[float] | None) -> tuple[float, ...] | None:
    # Hydra passes lists as ListConfig: make them plain tuples
    return None if values is None else tuple(float(v) for v in values)


class ImageDataModule(L.LightningDataModule):
    """Train / val / test image classification splits held as uint8 tensors, served as batches.

    ``val_size`` images are held out of the training split by a permutation seeded by ``seed``
    (unless the data set ships its own validation split); the test split is never used for
    validation. Training batches get random crop (zero padding ``crop_padding``), horizontal
    ``flip`` (true: random; alternate: each image mirrored in every other epoch) and ``cutout``; every batch is normalised with ``mean``/``std`` ([0, 1] pixel scale;
    None: the data set's own). ``loader="memory"`` keeps the split on ``device`` ("cpu", "cuda",
    or "auto" for the trainer's device) and augments whole batches; ``loader="torch"`` uses a
    DataLoader with ``num_workers`` processes and torchvision-v2 transforms. ``channels_last``
    makes the in-memory loader yield channels_last batches (for bf16 / AMX convolutions).
    """

    name = "images"

    def __init__(self, *, batch_size: int = 128, eval_batch_size: int = 512, val_size: int = 5000, seed: int = 0,
                 loader: str = "memory", num_workers: int = 2, crop_padding: int = 4, flip: bool | str = True,
                 cutout: int = 0, mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 device: str = "cpu", drop_last: bool = True, channels_last: bool = False):
        super().__init__()
        check_positive("batch_size", batch_size)
        check_positive("eval_batch_size", eval_batch_size)
        check_positive("val_size", val_size, allow_zero=True)
        check_positive("num_workers", num_workers, allow_zero=True)
        check_positive("crop_padding", crop_padding, allow_zero=True)
        check_positive("cutout", cutout, allow_zero=True)
        check_choice("loader", loader, ("memory", "torch"))
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed should be an integer, got {seed!r}")
        if (mean is None) != (std is None):
            raise ValueError(f"give both mean and std or neither, got mean={mean}, std={std}")
        self.batch_size, self.eval_batch_size, self.val_size, self.seed = batch_size, eval_batch_size, val_size, seed
        self.loader, self.num_workers, self.device, self.drop_last = loader, num_workers, device, drop_last
        if flip not in (True, False, "alternate"):
            raise ValueError(f"flip should be true, false or alternate, got {flip!r}")
        if flip == "alternate" and loader != "memory":
            raise ValueError(f"flip=alternate (mirrored in every other epoch) needs loader=memory, got loader={loader!r}")
        self.crop_padding, self.flip, self.cutout = crop_padding, flip, cutout
        self.channels_last = channels_last
        self.mean, self.std = _floats(mean), _floats(std)
        if self.mean is not None:
            check_mean_std(self.mean, self.std, len(self.mean))
        # metadata: subclasses fill in what they know before setup(), setup() fills in the rest
        self.num_classes: int | None = None
        self.class_names: list[str] | None = None
        self.in_chans: int | None = None
        self.image_size: tuple[int, int] | None = None
        self.num_train: int | None = None
        self.num_val: int | None = None
        self.num_test: int | None = None
        self.has_test = False
        self._train: Split | None = None
        self._val: Split | None = None
        self._test: Split | None = None
        self.val_ids: Tensor | None = None  # each validation image's index in the set it was held out of

    # ---- what a subclass provides -------------------------------------------------------------
    def _load_train_val(self) -> tuple[Split, Split | None]:
        """The training split and the data set's own validation split (None: hold one out)."""
        raise NotImplementedError

    def _load_test(self) -> Split:
        raise NotImplementedError

    def _default_mean_std(self, train_images: Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
        return channel_stats(train_images)

    def _set_known_train_size(self, num_images: int) -> None:
        """For data sets whose size is known up front: fail fast on val_size, fill num_train/num_val."""
        check_val_size(self.val_size, num_images)
        self.num_train, self.num_val = num_images - self.val_size, self.val_size

    # ---- Lightning hooks ----------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self._train is None:
            (images, labels), val = self._load_train_val()
            if val is None:
                train_idx, val_idx = split_indices(images.shape[0], self.val_size, self.seed)
                self._train = (images[train_idx], labels[train_idx])
                self._val = (images[val_idx], labels[val_idx])
            else:
                self._train, self._val = (images, labels), val
                val_idx = torch.arange(val[1].shape[0])
            # which images were held out: runs with other seeds share only some (benchmarks/ensembles.py)
            self.val_ids = val_idx
            self.in_chans, self.image_size = images.shape[1], tuple(images.shape[2:])
            if self.class_names is None:
                self.class_names = [str(i) for i in range(int(labels.max()) + 1)]
            self.num_classes = len(self.class_names)
            if self.mean is None:
                self.mean, self.std = self._default_mean_std(images)
            check_mean_std(self.mean, self.std, self.in_chans)
            self.num_train, self.num_val = self._train[0].shape[0], self._val[0].shape[0]
        if stage in (None, "test") and self.has_test and self._test is None:
            self._test = self._load_test()
            self.num_test = self._test[0].shape[0]

    def train_dataloader(self):
        self.setup("fit")
        loader = self._make_loader(self._train, train=True)
        if len(loader) == 0:
            raise ValueError(f"{self.name}: batch_size={self.batch_size} with drop_last=True gives no "
                             f"training batch from {self.num_train} images; lower batch_size")
        if isinstance(loader, InMemoryLoader) and self.trainer is not None:
            loader.set_epoch(self.trainer.current_epoch)  # right order after a resume too
        return loader

    def val_dataloader(self):
        self.setup("validate")
        return self._make_loader(self._val, train=False)

    def test_dataloader(self):
        if not self.has_test:
            raise ValueError(self._no_test_message())
        self.setup("test")
        return self._make_loader(self._test, train=False)

    def _no_test_message(self) -> str:
        return f"data set {self.name!r} has no test split; evaluate on its validation split instead"

    def sample_train_images(self, count: int) -> Tensor:
        """The first ``count`` training images, normalised float32 (count, C, H, W), unaugmented:
        the same on every rank (data-dependent initialisation such as patch whitening)."""
        check_positive("count", count)
        self.setup("fit")
        images = self._train[0][:count].float().div_(255.0)
        mean = torch.tensor(self.mean).view(1, -1, 1, 1)
        std = torch.tensor(self.std).view(1, -1, 1, 1)
        return (images - mean) / std

    # ---- loaders ------------------------------------------------------------------------------
    def resolved_device(self) -> torch.device:
        """``device`` as a torch.device: "auto" follows the attached trainer, "cuda" the current GPU."""
        if self.device == "auto":
            if self.trainer is not None:
                return self.trainer.strategy.root_device
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        device = torch.device(self.device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())  # this rank's GPU under DDP
        return device

    def _make_loader(self, split: Split, *, train: bool):
        images, labels = split
        augment = dict(crop_padding=self.crop_padding, flip=self.flip, cutout=self.cutout) if train else {}
        batch_size = self.batch_size if train else self.eval_batch_size
        drop_last = self.drop_last and train
        loader = self.loader
        if loader == "memory":
            # The in-memory loader is the default wherever the split fits: it keeps a padded copy on
            # the device; beyond half the free memory there, fall back to worker processes.
            device = self.resolved_device()
            n, c, h, w = images.shape
            pad = self.crop_padding if train else 0
            padded = n * c * (h + 2 * pad) * (w + 2 * pad)  # uint8 bytes
            free = available_memory(device)
            if free is not None and padded > free // 2:
                warnings.warn(f"{self.name}: the {'training' if train else 'evaluation'} split needs "
                              f"{padded / 2**30:.1f} GiB on {device} but only {free / 2**30:.1f} GiB are free; "
                              f"using data.loader=torch (worker processes) instead", stacklevel=2)
                loader = "torch"
        if loader == "torch":
            return make_torch_loader(images, labels, batch_size=batch_size, shuffle=train, drop_last=drop_last,
                                     mean=self.mean, std=self.std, num_workers=self.num_workers, seed=self.seed,
                                     pin_memory=torch.cuda.is_available(), **augment)
        return InMemoryLoader(images, labels, batch_size=batch_size, shuffle=train, drop_last=drop_last,
                              mean=self.mean, std=self.std, device=self.resolved_device(), seed=self.seed,
                              channels_last=self.channels_last, **augment)
