"""data/loader.py and data/torch_loader.py: the in-memory loader (crops, flips, cutout, shards) and the
worker-based loader it falls back to."""
from __future__ import annotations


import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from convzoo.data.loader import InMemoryLoader
from convzoo.data.synthetic import SyntheticDataModule
from convzoo.data.torch_loader import make_torch_loader

ZERO, ONE = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)  # mean/std that keep x / 255


def loader(images, labels=None, **kwargs):
    kwargs = {"batch_size": 8, "shuffle": False, "drop_last": False, "mean": ZERO[:images.shape[1]],
              "std": ONE[:images.shape[1]], **kwargs}
    return InMemoryLoader(images, torch.arange(images.shape[0]) if labels is None else labels, **kwargs)


def collect(it):
    xs, ys = zip(*it)
    return torch.cat(xs), torch.cat(ys)


def position_images(n: int, height: int, width: int) -> torch.Tensor:
    """uint8 (n, 1, H, W) whose pixel (i, j) holds 1 + i * W + j: content tells where it came from."""
    grid = 1 + torch.arange(height * width, dtype=torch.uint8).view(1, 1, height, width)
    return grid.expand(n, 1, height, width).contiguous()



# ---- InMemoryLoader --------------------------------------------------------------------------------

def test_batches_shapes_dtype_and_len():
    images = torch.randint(0, 256, (50, 3, 6, 5), dtype=torch.uint8)
    for drop_last, expected in ((True, 3), (False, 4)):
        it = loader(images, batch_size=16, drop_last=drop_last, crop_padding=2, flip=True, cutout=2)
        batches = list(it)
        assert len(it) == len(batches) == expected
        assert all(x.shape[1:] == (3, 6, 5) and x.dtype == torch.float32 and y.dtype == torch.int64
                   for x, y in batches)
        assert batches[-1][0].shape[0] == (16 if drop_last else 2)


def test_each_epoch_visits_every_sample_once_in_a_new_order():
    it = loader(torch.zeros(37, 1, 2, 2, dtype=torch.uint8), batch_size=5, shuffle=True, seed=4)
    orders = [collect(it)[1] for _ in range(3)]
    for order in orders:
        assert sorted(order.tolist()) == list(range(37))
    assert not torch.equal(orders[0], orders[1]) and not torch.equal(orders[1], orders[2])
    it.set_epoch(1)
    assert torch.equal(collect(it)[1], orders[1])  # epoch e is reproducible


def test_normalisation_is_x_over_255_minus_mean_over_std():
    images = torch.randint(0, 256, (9, 3, 4, 4), dtype=torch.uint8)
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    x, _ = collect(loader(images, mean=mean, std=std))
    expected = (images / 255.0 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    torch.testing.assert_close(x, expected, rtol=1e-5, atol=1e-5)
    cl, _ = collect(loader(images, mean=mean, std=std, channels_last=True))
    assert torch.equal(cl, x) and next(iter(loader(images, channels_last=True)))[0].is_contiguous(
        memory_format=torch.channels_last)


@settings(max_examples=15, deadline=None)
@given(st.integers(5, 9), st.integers(5, 9), st.integers(1, 4), st.integers(0, 1000))  # padding < size
def test_crop_shifts_content_by_at_most_padding(height, width, padding, seed):
    images = position_images(24, height, width)
    x, idx = collect(loader(images, crop_padding=padding, seed=seed, shuffle=True))
    values = (x * 255).round().long()[:, 0]                                 # (N, H, W)
    shifts = set()
    for out in values:
        nonzero = out > 0
        assert nonzero.any()
        src = out[nonzero] - 1
        rows, cols = torch.nonzero(nonzero, as_tuple=True)
        dy, dx = src // width - rows, src % width - cols
        assert (dy == dy[0]).all() and (dx == dx[0]).all()                  # one rigid shift per image
        assert abs(dy[0]) <= padding and abs(dx[0]) <= padding
        shifted_rows = torch.arange(height)[:, None] + dy[0]
        shifted_cols = torch.arange(width)[None, :] + dx[0]
        inside = (shifted_rows >= 0) & (shifted_rows < height) & (shifted_cols >= 0) & (shifted_cols < width)
        assert torch.equal(nonzero, inside)                                 # the rest is zero padding
        shifts.add((int(dy[0]), int(dx[0])))
    assert len(shifts) > 1


@pytest.mark.parametrize("padding", [0, 2])
def test_a_smaller_crop_size_cuts_windows_of_the_padded_images_and_none_restores_the_size(padding):
    images = position_images(24, 8, 8)
    it = loader(images, crop_padding=padding, seed=5, shuffle=True)
    it.crop_size = (5, 5)
    x, _ = collect(it)
    assert x.shape == (24, 1, 5, 5)
    padded = torch.nn.functional.pad(images[:, 0].long(), (padding,) * 4)  # (N, 12, 12) for padding 2
    values, corners = (x * 255).round().long()[:, 0], set()
    for out in values:  # each crop is one 5x5 window of some padded image
        nonzero = torch.nonzero(out > 0)
        src = out[out > 0][0] - 1  # where the first non-zero pixel came from, in the padded frame
        top = int(src // 8) + padding - int(nonzero[0, 0])
        left = int(src % 8) + padding - int(nonzero[0, 1])
        assert 0 <= top <= 8 + 2 * padding - 5 and 0 <= left <= 8 + 2 * padding - 5
        image = int(torch.nonzero((padded[:, top:top + 5, left:left + 5] == out).flatten(1).all(1))[0])
        assert torch.equal(padded[image, top:top + 5, left:left + 5], out)
        corners.add((top, left))
    assert len(corners) > 3
    it.crop_size = None
    assert collect(it)[0].shape == (24, 1, 8, 8)


def test_a_crop_larger_than_the_padded_images_names_the_sizes():
    it = loader(position_images(4, 8, 8), crop_padding=1)
    it.crop_size = (11, 11)
    with pytest.raises(ValueError, match="a crop of 11x11 does not fit in images of 8x8 padded by 1"):
        collect(it)


def test_flip_is_an_exact_mirror_for_flipped_samples():
    images = position_images(40, 5, 7).expand(40, 3, 5, 7).contiguous()
    x, _ = collect(loader(images, flip=True, seed=1))
    x, original = (x * 255).round(), images[:1].float()
    same = (x == original).flatten(1).all(1)
    mirrored = (x == original.flip(-1)).flatten(1).all(1)
    assert (same | mirrored).all() and same.any() and mirrored.any()


def test_alternating_flip_mirrors_each_image_in_every_other_epoch():
    images = position_images(40, 5, 7).expand(40, 3, 5, 7).contiguous()
    it = loader(images, flip="alternate", seed=3, shuffle=True)
    original = images[:1].float()
    mirrored = []
    for _ in range(3):  # epochs 0, 1, 2; labels are the image indices, in shuffled order
        x, y = collect(it)
        flipped = ((x * 255).round() == original.flip(-1)).flatten(1).all(1)
        mirrored.append(torch.zeros(40, dtype=torch.bool).index_put((y,), flipped))
    assert 5 < int(mirrored[0].sum()) < 35                     # epoch 0: a coin per image
    assert torch.equal(mirrored[1], ~mirrored[0]) and torch.equal(mirrored[2], mirrored[0])


def test_alternating_flip_needs_the_memory_loader():
    with pytest.raises(ValueError, match="flip should be true, false or alternate, got 'yes'"):
        loader(torch.zeros(4, 1, 4, 4, dtype=torch.uint8), mean=(0.0,), std=(1.0,), flip="yes")
    with pytest.raises(ValueError, match="flip=alternate .* needs loader=memory, got loader='torch'"):
        SyntheticDataModule(num_samples=64, val_size=16, loader="torch", flip="alternate")


def test_cutout_zeros_one_square_clipped_at_the_border():
    images = torch.full((64, 1, 16, 16), 255, dtype=torch.uint8)
    x, _ = collect(loader(images, mean=(0.0,), std=(1.0,), cutout=4, seed=2))
    assert ((x == 0) | (x == 1)).all()
    interior = 0
    for out in x[:, 0]:
        hole = out == 0
        rows, cols = hole.any(1), hole.any(0)
        assert torch.equal(hole, rows[:, None] & cols[None, :])              # a rectangle
        r, c = torch.nonzero(rows).flatten(), torch.nonzero(cols).flatten()
        assert len(r) == r[-1] - r[0] + 1 and len(c) == c[-1] - c[0] + 1   # contiguous
        assert 1 <= len(r) <= 4 and 1 <= len(c) <= 4
        if 0 < r[0] and r[-1] < 15 and 0 < c[0] and c[-1] < 15:
            interior += 1
            assert len(r) == len(c) == 4                                    # a full square inside
    assert interior > 10


def test_distributed_shards_are_disjoint_equal_and_cover_the_permutation():
    images = torch.zeros(100, 1, 2, 2, dtype=torch.uint8)
    shards = [loader(images, batch_size=7, shuffle=True, seed=5, rank=r, world_size=3) for r in range(3)]
    for epoch in range(2):
        got = [collect(s)[1] for s in shards]
        assert [len(g) for g in got] == [33, 33, 33] and all(len(s) == 5 for s in shards)
        together = torch.cat(got)
        assert len(set(together.tolist())) == 99
        perm = torch.randperm(100, generator=torch.Generator().manual_seed(5 + epoch))
        for r in range(3):
            assert torch.equal(got[r], perm[:99][r::3])


def test_distributed_rank_comes_from_torch_distributed(monkeypatch):
    monkeypatch.setattr(torch.distributed, "is_available", lambda: True)
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda: 1)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 4)
    it = loader(torch.zeros(42, 1, 2, 2, dtype=torch.uint8), batch_size=4, shuffle=True, seed=0)
    assert (it.rank, it.world_size, it.num_samples, len(it)) == (1, 4, 10, 3)
    perm = torch.randperm(42, generator=torch.Generator().manual_seed(0))
    assert torch.equal(collect(it)[1], perm[:40][1::4])


def test_loader_argument_errors():
    images = torch.zeros(4, 3, 2, 2, dtype=torch.uint8)
    with pytest.raises(ValueError, match="uint8"):
        loader(images.float())
    with pytest.raises(ValueError, match="one value per channel"):
        loader(images, mean=(0.5,), std=(0.5,))
    with pytest.raises(ValueError, match="rank"):
        loader(images, rank=2, world_size=2)


def test_torch_loader_matches_in_memory_loader():
    images = torch.randint(0, 256, (20, 3, 8, 8), dtype=torch.uint8)
    mean, std = (0.3, 0.4, 0.5), (0.2, 0.2, 0.3)
    plain = make_torch_loader(images, torch.arange(20), batch_size=6, shuffle=False, drop_last=False,
                              mean=mean, std=std, num_workers=0)
    x, y = collect(plain)
    ref, ref_y = collect(loader(images, mean=mean, std=std))
    torch.testing.assert_close(x, ref, rtol=1e-5, atol=1e-5)
    assert torch.equal(y, ref_y)
    augmented = make_torch_loader(position_images(30, 6, 6).expand(30, 3, 6, 6), torch.arange(30), batch_size=10,
                                  shuffle=True, drop_last=True, mean=ZERO, std=ONE, crop_padding=2, flip=True,
                                  cutout=2, num_workers=0)
    xs, ys = collect(augmented)
    assert xs.shape == (30, 3, 6, 6) and sorted(ys.tolist()) == list(range(30))
    assert (xs == 0).any() and not torch.equal(xs, position_images(30, 6, 6).expand(30, 3, 6, 6) / 255)


def test_epoch_shuffle_sampler_is_a_function_of_seed_and_epoch():
    from convzoo.data.torch_loader import EpochShuffleSampler
    a, b = EpochShuffleSampler(50, seed=3), EpochShuffleSampler(50, seed=3)
    first = list(a)
    assert sorted(first) == list(range(50)) and list(a) == first  # same epoch, same order
    a.set_epoch(1)
    b.set_epoch(1)
    assert list(a) == list(b) != first                             # a resumed process agrees


def test_memory_loader_falls_back_to_workers_when_the_split_does_not_fit(monkeypatch):
    from convzoo.data import base
    dm = SyntheticDataModule(num_samples=40, val_size=8, batch_size=8, num_workers=0)
    assert not isinstance(dm.train_dataloader(), torch.utils.data.DataLoader)
    monkeypatch.setattr(base, "available_memory", lambda device: 1000)  # 1 kB free
    with pytest.warns(UserWarning, match="needs 0.0 GiB on cpu but only 0.0 GiB are free; using data.loader=torch"):
        assert isinstance(dm.train_dataloader(), torch.utils.data.DataLoader)


def test_available_memory_reads_the_host():
    from convzoo.data.base import available_memory
    free = available_memory(torch.device("cpu"))
    assert free is None or free > 2**20


def test_datamodule_torch_loader_option():
    dm = SyntheticDataModule(num_samples=40, val_size=8, batch_size=8, loader="torch", num_workers=0)
    x, y = next(iter(dm.train_dataloader()))
    assert isinstance(dm.train_dataloader(), torch.utils.data.DataLoader)
    assert x.shape == (8, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64


def test_lightning_fit_runs_on_the_in_memory_loader(tmp_path):
    import lightning as L

    class Tiny(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 4))

        def training_step(self, batch, _):
            x, y = batch
            return torch.nn.functional.cross_entropy(self.net(x), y)

        def validation_step(self, batch, _):
            self.log("val/loss", torch.nn.functional.cross_entropy(self.net(batch[0]), batch[1]))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    dm = SyntheticDataModule(num_samples=64, num_classes=4, image_size=8, val_size=16, batch_size=16)
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(Tiny(), datamodule=dm)
    assert trainer.global_step == 2 * 3 and trainer.train_dataloader.epoch == 2


