"""data/: the synthetic and CIFAR datamodules and the held-out split (the loader: test_loader.py;
ImageFolder trees: test_folder_data.py)."""
from __future__ import annotations

import urllib.error

import numpy as np
import pytest
import torch
import torchvision
from hypothesis import given, settings
from hypothesis import strategies as st

from convzoo.data.base import split_indices
from convzoo.data.cifar import CIFAR10_MEAN, CIFAR10DataModule, CIFAR100DataModule
from convzoo.data.synthetic import SyntheticDataModule


# ---- synthetic datamodule and the held-out split -----------------------------------------------

def test_synthetic_shapes_labels_and_metadata_before_setup():
    dm = SyntheticDataModule(num_samples=60, num_classes=4, image_size=(8, 12), in_chans=2, val_size=12,
                             test_size=20, batch_size=16, crop_padding=0, flip=False)
    assert (dm.num_classes, dm.in_chans, dm.image_size, dm.num_train, dm.num_val) == (4, 2, (8, 12), 48, 12)
    assert dm.has_test and dm.class_names == ["class_0", "class_1", "class_2", "class_3"]
    dm.setup("fit")
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (16, 2, 8, 12) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert len(dm.train_dataloader()) == 3 and len(dm.val_dataloader()) == 1
    test_x, test_y = map(torch.cat, zip(*dm.test_dataloader()))
    assert test_x.shape == (20, 2, 8, 12) and set(test_y.tolist()) <= set(range(4))
    assert len(dm.mean) == len(dm.std) == 2 and all(0 < s < 1 for s in dm.std)


def test_synthetic_is_deterministic_per_seed_and_balanced():
    def splits(seed):
        dm = SyntheticDataModule(num_samples=40, num_classes=4, image_size=8, val_size=8, seed=seed)
        dm.setup()
        return dm._train, dm._val, dm._test

    a, b, c = splits(0), splits(0), splits(1)
    for (xa, ya), (xb, yb) in zip(a, b):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not torch.equal(a[0][0], c[0][0])
    labels = torch.cat([a[0][1], a[1][1]])
    assert torch.bincount(labels).tolist() == [10, 10, 10, 10]


def test_synthetic_classes_are_separable_by_their_mean_image():
    dm = SyntheticDataModule(num_samples=200, num_classes=4, image_size=8, val_size=40)
    dm.setup()
    (x, y), (vx, vy) = dm._train, dm._val
    centroids = torch.stack([x[y == k].float().mean(0) for k in range(4)]).flatten(1)
    nearest = torch.cdist(vx.float().flatten(1), centroids).argmin(1)
    assert (nearest == vy).float().mean() > 0.9


@settings(max_examples=30, deadline=None)
@given(st.integers(2, 200), st.data(), st.integers(0, 2**31 - 1))
def test_split_indices_disjoint_complete_and_seeded(n, data, seed):
    val_size = data.draw(st.integers(0, n - 1))
    train, val = split_indices(n, val_size, seed)
    assert len(val) == val_size and len(train) == n - val_size
    assert sorted(torch.cat([train, val]).tolist()) == list(range(n))
    again = split_indices(n, val_size, seed)
    assert torch.equal(train, again[0]) and torch.equal(val, again[1])


def test_split_differs_across_seeds_and_module_uses_it():
    assert not torch.equal(split_indices(1000, 100, 0)[1], split_indices(1000, 100, 1)[1])
    dm = SyntheticDataModule(num_samples=50, val_size=10, seed=3)
    train_idx, val_idx = split_indices(50, 10, 3)
    full, _ = dm._generate()
    dm.setup()
    assert torch.equal(dm._val[0], full[0][val_idx]) and torch.equal(dm._train[1], full[1][train_idx])


def test_val_size_and_batch_size_errors():
    with pytest.raises(ValueError, match=r"val_size=64 .*64 images"):
        SyntheticDataModule(num_samples=64, val_size=64)
    with pytest.raises(ValueError, match=r"val_size=60000 .*50000"):
        CIFAR10DataModule("/nonexistent", val_size=60_000)
    with pytest.raises(ValueError, match="batch_size"):
        SyntheticDataModule(batch_size=0)
    with pytest.raises(ValueError, match="loader"):
        SyntheticDataModule(loader="dali")
    with pytest.raises(ValueError, match="pixel scale"):
        SyntheticDataModule(mean=[125.3, 123.0, 113.9], std=[63.0, 62.1, 66.7])


def test_drop_last_with_too_few_images_says_so():
    dm = SyntheticDataModule(num_samples=40, val_size=8, batch_size=64)
    with pytest.raises(ValueError, match="batch_size=64"):
        dm.train_dataloader()


# ---- CIFAR -------------------------------------------------------------------------------------------

def test_cifar_metadata_is_known_before_setup():
    dm = CIFAR10DataModule("/nonexistent", val_size=5000)
    assert (dm.num_classes, dm.in_chans, dm.image_size, dm.num_train, dm.num_val) == (10, 3, (32, 32), 45000, 5000)
    assert dm.mean == CIFAR10_MEAN and dm.has_test and dm.class_names[0] == "airplane"
    dm100 = CIFAR100DataModule("/nonexistent")
    assert dm100.num_classes == len(set(dm100.class_names)) == 100 and dm100.class_names == sorted(dm100.class_names)


def test_cifar_failed_download_explains_the_fix(tmp_path, monkeypatch):
    def no_network(root, train=True, download=False, **_):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", no_network)
    dm = CIFAR10DataModule(str(tmp_path), download=True)
    with pytest.raises(RuntimeError) as info:
        dm.prepare_data()
    message = str(info.value)
    for part in ("download failed", str(tmp_path / "cifar-10-batches-py"), "CONVZOO_DATA_DIR",
                 "paths.data_dir", "data=folder data.root="):
        assert part in message


def test_cifar_converts_torchvision_arrays(tmp_path, monkeypatch):
    class FakeCIFAR10:
        classes = ["c%d" % i for i in range(10)]

        def __init__(self, root, train=True, download=False):
            n = 30 if train else 10
            self.data = np.arange(n * 32 * 32 * 3, dtype=np.int64).reshape(n, 32, 32, 3).astype(np.uint8)
            self.targets = [i % 10 for i in range(n)]

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCIFAR10)
    dm = CIFAR10DataModule(str(tmp_path), val_size=6, batch_size=8, crop_padding=0, flip=False)
    dm.setup()
    assert (dm.num_train, dm.num_val, dm.class_names[0]) == (24, 6, "c0")
    images, _ = dm._test
    assert images.shape == (10, 3, 32, 32)
    assert torch.equal(images[0, :, 0, 1], torch.tensor([3, 4, 5], dtype=torch.uint8))  # HWC -> CHW
    assert len(dm.test_dataloader()) == 1
