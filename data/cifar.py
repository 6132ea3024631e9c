"""CIFAR-10 / CIFAR-100 (Krizhevsky, 2009) from torchvision's pickled batches under ``root``.

No internet here: a failed download becomes a RuntimeError that says where the files were looked
for and how to provide them, or to use the ImageFolder copy through ``data=folder``.
"""
from __future__ import annotations

import os
import socket
from contextlib import contextmanager

import torch
import torchvision

from .base import ImageDataModule, Split

# The commonly used per-channel statistics of the CIFAR training images, [0, 1] pixel scale: mean
# and std over all training pixels. (Some code uses std (0.2023, 0.1994, 0.2010) for CIFAR-10, the
# mean of per-image stds, a different quantity.) The CIFAR-10 JPEG copy gives nearly the same values.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
CIFAR100_CLASSES = (
    "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly camel "
    "can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur "
    "dolphin elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion "
    "lizard lobster man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree "
    "pear pickup_truck pine_tree plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea "
    "seal shark shrew skunk skyscraper snail snake spider squirrel streetcar sunflower sweet_pepper table tank "
    "telephone television tiger tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm"
).split()

DOWNLOAD_TIMEOUT_S = 30  # torchvision's urlopen has none: without a network it could wait forever


def default_data_dir() -> str:
    return os.environ.get("CONVZOO_DATA_DIR") or "datasets"


@contextmanager
def _socket_timeout(seconds: float):
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds if previous is None else previous)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)



class DataUnavailableError(RuntimeError):
    """The data set is not on disk and could not be downloaded."""

class CIFAR10DataModule(ImageDataModule):
    """CIFAR-10: 50,000 training (``val_size`` of them held out) and 10,000 test 32x32 RGB images.

    ``root`` (default: $CONVZOO_DATA_DIR, else ./datasets) holds the extracted
    ``cifar-10-batches-py`` folder; with ``download=True`` torchvision fetches it when missing.
    """

    name, display_name = "cifar10", "CIFAR-10"
    torchvision_class = "CIFAR10"
    folder = "cifar-10-batches-py"
    archive = "cifar-10-python.tar.gz"
    num_train_images = 50_000
    classes, default_mean, default_std = CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD

    def __init__(self, root: str | None = None, download: bool = True, **base):
        super().__init__(**base)
        self.root = os.path.abspath(os.path.expanduser(str(root if root is not None else default_data_dir())))
        self.download = download
        # everything is known up front, so a bad val_size fails here, not after a download
        self.class_names, self.num_classes = list(self.classes), len(self.classes)
        self.in_chans, self.image_size, self.has_test = 3, (32, 32), True
        if self.mean is None:
            self.mean, self.std = self.default_mean, self.default_std
        self._set_known_train_size(self.num_train_images)

    def prepare_data(self) -> None:
        # Lightning calls this on one process per node: the only place that may download
        self._torchvision_split(train=True)
        self._torchvision_split(train=False)

    def _load_train_val(self) -> tuple[Split, None]:
        return self._torchvision_split(train=True), None

    def _load_test(self) -> Split:
        return self._torchvision_split(train=False)

    def _torchvision_split(self, train: bool) -> Split:
        dataset_class = getattr(torchvision.datasets, self.torchvision_class)  # looked up late: tests patch it
        try:
            with _socket_timeout(DOWNLOAD_TIMEOUT_S):
                dataset = dataset_class(self.root, train=train, download=self.download)
        except Exception as err:  # URLError, timeouts, checksum errors, "Dataset not found"...
            raise DataUnavailableError(self._missing_message(err)) from err
        images = torch.as_tensor(dataset.data).permute(0, 3, 1, 2).contiguous()  # (N, 32, 32, 3) -> (N, 3, 32, 32)
        labels = torch.as_tensor(dataset.targets, dtype=torch.int64)
        self.class_names = list(getattr(dataset, "classes", self.class_names))
        return images, labels

    def _missing_message(self, err: Exception) -> str:
        what = "the download failed" if self.download else "it is not there and download=False"
        return (f"Could not load {self.display_name}: {what} ({type(err).__name__}: {err}).\n"
                f"Looked for {os.path.join(self.root, self.folder)}.\n"
                f"To fix it, either\n"
                f"  - put the extracted '{self.folder}' folder (from {self.archive}) under {self.root}, or\n"
                f"  - point root at the folder that holds it: set CONVZOO_DATA_DIR or paths.data_dir=<dir>, or\n"
                f"  - train from an ImageFolder tree instead: data=folder data.root=<tree with train/<class>/*>.")


class CIFAR100DataModule(CIFAR10DataModule):
    """CIFAR-100 (fine labels): 50,000 training and 10,000 test 32x32 RGB images in 100 classes."""

    name, display_name = "cifar100", "CIFAR-100"
    torchvision_class = "CIFAR100"
    folder = "cifar-100-python"
    archive = "cifar-100-python.tar.gz"
    classes, default_mean, default_std = CIFAR100_CLASSES, CIFAR100_MEAN, CIFAR100_STD
