"""Pool2d (max / avg / strided conv downsampling) and GlobalAvgPool2d."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from convzoo.models.layers.arithmetic import conv_output_size, pool_output_size
from convzoo.models.layers.pooling import GlobalAvgPool2d, Pool2d
from convzoo.models.registry import get_block


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(Pool2d.MODES), st.integers(1, 3), st.sampled_from([None, 1, 2, 3]), st.integers(3, 9))
def test_output_size_follows_the_arithmetic(mode, stride, kernel, size):
    block = Pool2d(3, 5 if mode == "conv" else None, stride=stride, kernel_size=kernel, mode=mode).eval()
    k = block.kernel_size
    expected = (conv_output_size(size, k, stride, (k - 1) // 2) if mode == "conv"
                else pool_output_size(size, k, stride, (k - 1) // 2))
    out = block(torch.randn(2, 3, size, size))
    assert out.shape == (2, block.out_channels, expected, expected)
    assert block.stride == stride


def test_defaults_halve_even_sizes_in_every_mode():
    x = torch.randn(2, 4, 8, 8)
    for mode in Pool2d.MODES:
        assert Pool2d(4, mode=mode).eval()(x).shape == (2, 4, 4, 4)
    assert Pool2d(4, mode="max").kernel_size == 2
    assert Pool2d(4, mode="conv").kernel_size == 3


def test_max_and_avg_compute_window_max_and_mean():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    torch.testing.assert_close(Pool2d(1, mode="max")(x), torch.tensor([[[[5.0, 7.0], [13.0, 15.0]]]]))
    torch.testing.assert_close(Pool2d(1, mode="avg")(x), torch.tensor([[[[2.5, 4.5], [10.5, 12.5]]]]))


def test_avg_pool_border_windows_ignore_padding():
    # 3x3 windows, padding 1: the corner window sees 4 real pixels of a constant image.
    out = Pool2d(1, mode="avg", kernel_size=3)(torch.ones(1, 1, 4, 4))
    torch.testing.assert_close(out, torch.ones(1, 1, 2, 2))


def test_max_pool_with_kernel_3_is_googlenets_overlapping_pool():
    x = torch.randn(1, 2, 7, 7)
    torch.testing.assert_close(Pool2d(2, kernel_size=3)(x), F.max_pool2d(x, 3, 2, 1))


def test_conv_mode_is_a_learned_strided_conv():
    block = Pool2d(4, 6, mode="conv", norm_layer=None, act_layer=None)
    conv = block.pool.conv
    assert isinstance(conv, nn.Conv2d) and conv.stride == (2, 2) and conv.kernel_size == (3, 3)
    assert sum(p.numel() for p in block.parameters()) == 4 * 6 * 9 + 6
    block(torch.randn(1, 4, 6, 6)).sum().backward()
    assert all(p.grad is not None for p in block.parameters())
    assert sum(p.numel() for p in Pool2d(4, mode="max").parameters()) == 0


@pytest.mark.parametrize("kwargs, match", [
    (dict(mode="median"), "mode"), (dict(stride=0), "stride"), (dict(kernel_size=0), "kernel_size"),
    (dict(out_channels=8), "out_channels"), (dict(out_channels=8, mode="avg"), "keeps the channels"),
    (dict(in_channels=0), "in_channels"), (dict(mode="conv", norm_layer="nope"), "norm_layer"),
])
def test_rejects_bad_arguments(kwargs, match):
    args = dict(in_channels=4) | kwargs
    with pytest.raises(ValueError, match=match):
        Pool2d(**args)


def test_registered_and_generic_calling_form():
    assert get_block("pool") is Pool2d
    assert get_block("pool")(4, 4, stride=2)(torch.randn(1, 4, 6, 6)).shape == (1, 4, 3, 3)


@pytest.mark.parametrize("flatten, shape", [(True, (2, 3)), (False, (2, 3, 1, 1))])
def test_global_avg_pool(flatten, shape):
    x = torch.randn(2, 3, 5, 7)
    out = GlobalAvgPool2d(flatten=flatten)(x)
    assert out.shape == shape
    torch.testing.assert_close(out.flatten(1), F.adaptive_avg_pool2d(x, 1).flatten(1))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        GlobalAvgPool2d()(torch.randn(2, 3))
