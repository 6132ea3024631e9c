"""data/folder.py: ImageFolder trees (PNG and JPEG), their cache, and the errors a bad tree gets."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from convzoo.data import imagefolder
from convzoo.data.base import channel_stats
from convzoo.data.folder import FolderDataModule

SHARED_CIFAR = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "cifar10-jpeg"


# ---- FolderDataModule ------------------------------------------------------------------------------

CLASSES = ("ant", "bee", "cat")


def write_tree(root: Path, per_class: int = 6, size=(8, 8), splits=("train",)) -> dict[str, np.ndarray]:
    """root/<split>/<class>/<i>.png|jpg, deterministic RGB content; returns the PNG pixels by path."""
    rng = np.random.default_rng(0)
    pixels = {}
    for split in splits:
        for k, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                array = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
                ext = "jpg" if (k == 1 or (k == 2 and i % 2)) else "png"  # both decoders get used
                path = folder / f"{i:02d}.{ext}"
                Image.fromarray(array).save(path, quality=100, subsampling=0)
                pixels[str(path)] = array
    return pixels


def folder_dm(root, tmp_path, **kwargs):
    kwargs = {"val_size": 3, "batch_size": 4, "cache_dir": str(tmp_path / "cache"), **kwargs}
    return FolderDataModule(str(root), **kwargs)


def test_folder_loads_labels_pixels_and_stats(tmp_path):
    pixels = write_tree(tmp_path / "ds")
    dm = folder_dm(tmp_path / "ds", tmp_path, crop_padding=0, flip=False)
    assert dm.class_names == list(CLASSES) and dm.num_classes == 3 and not dm.has_test
    dm.setup("fit")
    assert (dm.num_train, dm.num_val, dm.in_chans, dm.image_size) == (15, 3, 3, (8, 8))
    entry = dm._split_entry("train")
    assert entry["labels"].tolist() == [0] * 6 + [1] * 6 + [2] * 6
    png = tmp_path / "ds" / "train" / "ant" / "00.png"
    assert torch.equal(entry["images"][0], torch.from_numpy(pixels[str(png)]).permute(2, 0, 1))
    jpg = torch.from_numpy(pixels[str(tmp_path / "ds" / "train" / "bee" / "00.jpg")]).permute(2, 0, 1)
    assert (entry["images"][6].float() - jpg.float()).abs().mean() < 12   # lossy but the same image
    mean, std = channel_stats(entry["images"])
    assert dm.mean == pytest.approx(mean) and dm.std == pytest.approx(std)
    x, y = map(torch.cat, zip(*dm.val_dataloader()))
    assert x.shape == (3, 3, 8, 8) and y.dtype == torch.int64


def test_channel_stats_match_a_float_computation():
    images = torch.randint(0, 256, (7, 3, 5, 4), dtype=torch.uint8)
    mean, std = channel_stats(images)
    x = images.double() / 255
    assert mean == pytest.approx(x.mean(dim=(0, 2, 3)).tolist())
    assert std == pytest.approx(x.std(dim=(0, 2, 3), unbiased=False).tolist())


def test_folder_second_setup_reads_the_cache(tmp_path, monkeypatch):
    write_tree(tmp_path / "ds")
    calls = []
    decode = imagefolder.decode_images
    monkeypatch.setattr(imagefolder, "decode_images", lambda *a, **k: calls.append(1) or decode(*a, **k))
    first = folder_dm(tmp_path / "ds", tmp_path)
    first.prepare_data()
    first.setup("fit")
    assert len(calls) == 1 and len(list((tmp_path / "cache").glob("*.pt"))) == 1
    second = folder_dm(tmp_path / "ds", tmp_path)
    second.setup("fit")
    assert len(calls) == 1
    assert torch.equal(first._train[0], second._train[0]) and first.mean == second.mean
    # a changed file changes the key: decoded again, into a second cache file
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "ds" / "train" / "ant" / "00.png")
    os.utime(tmp_path / "ds" / "train" / "ant" / "00.png", ns=(1, 1))
    folder_dm(tmp_path / "ds", tmp_path).setup("fit")
    assert len(calls) == 2


def test_folder_val_and_test_folders(tmp_path):
    write_tree(tmp_path / "ds", per_class=4, splits=("train", "val", "test"))
    dm = folder_dm(tmp_path / "ds", tmp_path, val_size=100)  # ignored: val/ exists
    assert dm.has_test
    dm.setup()
    assert (dm.num_train, dm.num_val) == (12, 12)
    x, y = map(torch.cat, zip(*dm.test_dataloader()))
    assert x.shape == (12, 3, 8, 8) and y.tolist() == [0] * 4 + [1] * 4 + [2] * 4


def test_folder_without_test_split_names_the_data_set(tmp_path):
    write_tree(tmp_path / "mydata")
    dm = folder_dm(tmp_path / "mydata", tmp_path)
    dm.setup()
    with pytest.raises(ValueError, match=r"'mydata' has no test split"):
        dm.test_dataloader()


def test_folder_missing_root_or_train(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere.*root/train/<class>"):
        folder_dm(tmp_path / "nowhere", tmp_path).setup()
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"empty.train not found"):
        folder_dm(tmp_path / "empty", tmp_path).setup()


def test_folder_empty_class_folder_is_named(tmp_path):
    write_tree(tmp_path / "ds")
    (tmp_path / "ds" / "train" / "dog").mkdir()
    (tmp_path / "ds" / "train" / "dog" / "notes.txt").write_text("not an image")
    with pytest.raises(ValueError, match=r"train.dog has no images"):
        folder_dm(tmp_path / "ds", tmp_path).setup()


def test_folder_corrupt_files_are_all_listed(tmp_path):
    write_tree(tmp_path / "ds")
    garbage = tmp_path / "ds" / "train" / "ant" / "broken.jpg"
    garbage.write_bytes(b"definitely not a jpeg" * 10)
    good = (tmp_path / "ds" / "train" / "bee" / "00.jpg").read_bytes()
    truncated = tmp_path / "ds" / "train" / "cat" / "cut.jpg"
    truncated.write_bytes(good[: len(good) // 2])
    with pytest.raises(ValueError, match="2 of 20 images") as info:
        folder_dm(tmp_path / "ds", tmp_path).setup()
    assert str(garbage) in str(info.value) and str(truncated) in str(info.value)
    assert not list((tmp_path / "cache").glob("*.pt"))


def test_folder_mixed_sizes_need_image_size(tmp_path):
    write_tree(tmp_path / "ds")
    odd = tmp_path / "ds" / "train" / "cat" / "99.png"
    Image.fromarray(np.zeros((10, 12, 3), np.uint8)).save(odd)
    with pytest.raises(ValueError, match=r"00.png is 8x8 but .*99.png is 10x12.*image_size"):
        folder_dm(tmp_path / "ds", tmp_path).setup()
    dm = folder_dm(tmp_path / "ds", tmp_path, image_size=6)
    dm.setup()
    assert dm.image_size == (6, 6) and dm._train[0].shape[1:] == (3, 6, 6)


@pytest.mark.skipif(not (SHARED_CIFAR / "train").is_dir(), reason="shared CIFAR-10 JPEG folder not present")
def test_folder_on_a_subset_of_the_shared_cifar10_jpegs(tmp_path):
    for name in sorted(os.listdir(SHARED_CIFAR / "train")):
        (tmp_path / "sub" / "train" / name).mkdir(parents=True)
        for file in sorted(os.listdir(SHARED_CIFAR / "train" / name))[:4]:
            os.symlink(SHARED_CIFAR / "train" / name / file, tmp_path / "sub" / "train" / name / file)
    dm = folder_dm(tmp_path / "sub", tmp_path, val_size=8, batch_size=8)
    dm.setup()
    assert dm.class_names[:2] == ["airplane", "automobile"] and dm.num_classes == 10
    assert (dm.num_train, dm.num_val, dm.image_size) == (32, 8, (32, 32))
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (8, 3, 32, 32) and int(y.max()) < 10


