"""Table 2: training batches per second of our loaders against torchvision's usual pipeline.

Every loader yields normalised float32 batches of ``batch_size`` images with random crop (zero
padding 4) and horizontal flip, as the datamodules configure training:

- ``InMemoryLoader`` (data.loader=memory, the default): the decoded split as one uint8 tensor,
  one batched crop / flip / normalise per batch, no worker processes;
- ``make_torch_loader`` (data.loader=torch): the same uint8 tensor, torchvision-v2 transforms
  per sample in a DataLoader with ``workers`` processes;
- the torchvision reference a user would write: ``ImageFolder`` (one PIL JPEG decode per image)
  with RandomCrop(32, padding=4), RandomHorizontalFlip, ToTensor, Normalize and ``workers``
  processes. On synthetic data (no folder) it reads the images from memory as PIL images instead.

Loaders are timed one after the other (not round-robin: worker processes prefetch while idle,
which would flatter them), from an endless stream of epochs, after warm-up batches that start
the workers and drain their initial prefetch.
"""
from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import datasets
from torchvision import transforms as T

from convzoo.training.timing import Case, interleave, median


class PILImages(Dataset):
    """(PIL image, label) from a uint8 (N, 3, H, W) tensor: the torchvision pipeline without JPEG files."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.transform(Image.fromarray(self.images[i].permute(1, 2, 0).numpy())), int(self.labels[i])


def datamodule(opts):
    """(datamodule after setup, description, ImageFolder train directory or None)."""
    from convzoo.data import FolderDataModule, SyntheticDataModule

    common = dict(batch_size=opts.batch_size, num_workers=opts.workers, device=str(opts.device))
    train_dir = Path(opts.data_root) / "train"
    if opts.data == "folder" or (opts.data == "auto" and train_dir.is_dir()):
        dm = FolderDataModule(root=str(opts.data_root), **common)  # decoded once, then read from the cache
        dm.setup("fit")
        return dm, f"{train_dir} ({dm.num_train:,} training images after the held-out split)", train_dir
    n = opts.synthetic_images
    dm = SyntheticDataModule(num_samples=n, val_size=max(1, n // 10), **common)
    dm.setup("fit")
    return dm, f"synthetic: {dm.num_train:,} random 32x32 images in memory (no {train_dir})", None


def _stream(loader):
    while True:  # epoch after epoch
        yield from loader


def loader_rate(loader, opts, batch_size: int) -> float:
    """Median images/s of drawing batches from ``loader``."""
    batches = _stream(loader)
    prefetch = 2 * opts.workers + 2  # DataLoader's default prefetch_factor 2 per worker, plus slack
    case = Case(lambda: next(batches), work=batch_size, warmup=prefetch, probe=4 if opts.quick else 8)
    try:
        return median(interleave({"loader": case}, opts.repeats, opts.min_seconds, opts.device)["loader"])
    finally:
        batches.close()  # the workers stop once the caller drops the loader


def torchvision_loader(mean, std, train_dir, tensors, opts) -> DataLoader:
    """The reference: ImageFolder over ``train_dir``, or (no folder) the uint8 ``tensors`` as PIL images."""
    transform = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(mean, std)])
    if train_dir is not None:
        dataset = datasets.ImageFolder(str(train_dir), transform)
    else:
        dataset = PILImages(*tensors, transform)
    return DataLoader(dataset, batch_size=opts.batch_size, shuffle=True, drop_last=True,
                      num_workers=opts.workers, persistent_workers=opts.workers > 0)


def data_rows(opts) -> tuple[list[dict], str]:
    """Rows of table 2 and a description of the data. Each loader is dropped once measured, so
    no idle worker processes linger into the next measurement."""
    dm, source, train_dir = datamodule(opts)
    w, b = opts.workers, opts.batch_size
    fast_rate = loader_rate(dm.train_dataloader(), opts, b)
    dm.loader = "torch"  # the same datamodule and split, as data.loader=torch builds it
    v2 = dm.train_dataloader()
    tensors = (v2.dataset.images, v2.dataset.labels)
    v2_rate = loader_rate(v2, opts, b)
    del v2
    read = "PIL JPEG decode per image" if train_dir is not None else "PIL images from memory"
    rows = [
        {"loader": "convzoo InMemoryLoader (data.loader=memory)",
         "per batch": "uint8 tensor in memory: batched crop + flip, normalise; no workers", "img/s": fast_rate},
        {"loader": "convzoo make_torch_loader (data.loader=torch)",
         "per batch": f"same tensor; torchvision v2 crop, flip, normalise per sample; {w} workers", "img/s": v2_rate},
        {"loader": "torchvision ImageFolder + DataLoader" if train_dir is not None else "torchvision DataLoader",
         "per batch": f"{read}; RandomCrop(32, padding=4), RandomHorizontalFlip, ToTensor, Normalize; {w} workers",
         "img/s": loader_rate(torchvision_loader(dm.mean, dm.std, train_dir, tensors, opts), opts, b)},
    ]
    for row in rows:
        row["vs torchvision"] = row["img/s"] / rows[-1]["img/s"]
    return rows, source
