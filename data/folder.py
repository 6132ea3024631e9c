"""FolderDataModule: an ImageFolder tree (``root/train/<class>/*``, optional ``val/``, ``test/``).

The main real user is the CIFAR-10 JPEG copy: ``FolderDataModule(root=".../cifar10-jpeg")``.
Every split is decoded once into a uint8 tensor and cached, so later runs start in seconds.
"""
from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from torch import Tensor

from . import imagefolder
from .base import ImageDataModule, Split, channel_stats

LAYOUT = "root/train/<class>/<image files>, optionally root/val/<class>/... and root/test/<class>/..."


def default_cache_dir() -> str:
    return os.environ.get("CONVZOO_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "convzoo")


def _size_pair(image_size: int | Sequence[int] | None) -> tuple[int, int] | None:
    if image_size is None:
        return None
    size = (int(image_size),) * 2 if isinstance(image_size, int) else tuple(int(s) for s in image_size)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"image_size should be an int or [H, W] of positive ints, got {image_size!r}")
    return size


class FolderDataModule(ImageDataModule):
    """Image classification from an ImageFolder tree, decoded once and cached as uint8 tensors.

    ``root/train/<class>/**/<image>`` is required; ``root/val`` (if present) replaces the
    held-out split and ``val_size``; ``root/test`` (if present) is the test split. Labels follow
    the sorted class folder names of train/. ``image_size`` ([H, W] or int) resizes every image;
    without it all images must share one size. mean/std default to the per-channel statistics
    of root/train (all of it, including the held-out part), computed once and cached.

    Decoded splits are cached under ``cache_dir`` (default $CONVZOO_CACHE_DIR or
    ~/.cache/convzoo), keyed by the split's absolute path, ``image_size`` and a hash of every
    file's name, size and mtime, so any change to the files decodes again.

    Errors: a missing root or train/ raises FileNotFoundError naming the path and the layout; a
    class folder without images, images of mixed sizes (without ``image_size``) and undecodable
    files raise ValueError. Corrupt or truncated files are all collected by the decode pass and
    reported together (up to 20 paths), so one run finds every bad file.
    """

    def __init__(self, root: str, image_size: int | Sequence[int] | None = None, cache_dir: str | None = None,
                 **base):
        super().__init__(**base)
        self.root = os.path.abspath(os.path.expanduser(str(root)))
        self.name = os.path.basename(self.root)
        self.requested_size = _size_pair(image_size)
        self.cache_dir = os.path.expanduser(str(cache_dir)) if cache_dir else default_cache_dir()
        self.in_chans, self.image_size = 3, self.requested_size  # every image is converted to RGB
        self.has_test = os.path.isdir(os.path.join(self.root, "test"))
        train_dir = os.path.join(self.root, "train")
        if os.path.isdir(train_dir):  # cheap, and lets a caller size the model before setup()
            self.class_names = imagefolder.find_classes(train_dir)
            self.num_classes = len(self.class_names)
        self._decoded: dict[str, dict] = {}

    def prepare_data(self) -> None:
        # one process per node decodes and writes the cache; setup() on every rank then reads it
        for split in ("train", "val", "test"):
            if split == "train" or os.path.isdir(os.path.join(self.root, split)):
                self._split_entry(split)

    def _load_train_val(self) -> tuple[Split, Split | None]:
        train = self._split_entry("train")
        self.class_names = list(train["classes"])
        val = None
        if os.path.isdir(os.path.join(self.root, "val")):
            entry = self._split_entry("val")
            val = (entry["images"], entry["labels"])
        return (train["images"], train["labels"]), val

    def _load_test(self) -> Split:
        entry = self._split_entry("test")
        return entry["images"], entry["labels"]

    def _default_mean_std(self, train_images: Tensor):
        entry = self._split_entry("train")
        return tuple(entry["mean"]), tuple(entry["std"])

    def _no_test_message(self) -> str:
        return (f"data set {self.name!r} has no test split: {os.path.join(self.root, 'test')} does not exist "
                f"(expected layout {LAYOUT}); evaluate on the validation split instead")

    def _split_entry(self, split: str) -> dict:
        """{"images", "labels", "classes", "mean", "std"} for one split: memory, then disk cache, then decode."""
        if split in self._decoded:
            return self._decoded[split]
        if not os.path.isdir(self.root):
            raise FileNotFoundError(f"data set root {self.root} does not exist; expected layout {LAYOUT}")
        directory = os.path.join(self.root, split)
        if not os.path.isdir(directory):
            raise FileNotFoundError(f"{directory} not found: {self.root} should have the layout {LAYOUT}")
        classes = None if split == "train" else self._split_entry("train")["classes"]
        files = imagefolder.scan_split(directory, classes)
        path = imagefolder.cache_path(self.cache_dir, files, self.requested_size)
        entry = imagefolder.load_cache(path)
        if entry is None:
            images = imagefolder.decode_images(files, self.requested_size)
            entry = {"format": imagefolder.CACHE_FORMAT, "images": images,
                     "labels": torch.tensor(files.labels, dtype=torch.int64), "classes": files.classes, "mean": None, "std": None}
            if split == "train":
                entry["mean"], entry["std"] = (list(v) for v in channel_stats(images))
            imagefolder.save_cache(path, entry)
        self._decoded[split] = entry
        return entry
