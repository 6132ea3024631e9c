"""InceptionBlock: output width, branch order, parameter count, gradients, argument errors."""
from __future__ import annotations

import pytest
import torch

from convzoo.models.layers.inception import InceptionBlock
from convzoo.models.registry import get_block

# GoogLeNet's inception(3a) widths, scaled down by 8 to keep the test fast.
WIDTHS = dict(ch1x1=8, ch3x3_reduce=12, ch3x3=16, ch5x5_reduce=2, ch5x5=4, pool_proj=4)
IN = 24


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_registered():
    assert get_block("inception") is InceptionBlock


@pytest.mark.parametrize("double", [False, True])
def test_out_channels_and_shape(double):
    block = InceptionBlock(IN, **WIDTHS, use_double_3x3=double)
    assert block.out_channels == 8 + 16 + 4 + 4
    y = block(torch.randn(2, IN, 7, 5))
    assert y.shape == (2, 32, 7, 5)


def test_generic_calling_form():
    # The generic network calls Block(in, out, stride=s, **args).
    block = InceptionBlock(IN, 32, stride=1, **WIDTHS)
    assert (block.in_channels, block.out_channels, block.stride) == (IN, 32, 1)


@pytest.mark.parametrize("double", [False, True])
def test_branch_concat_order(double):
    block = InceptionBlock(IN, **WIDTHS, use_double_3x3=double).eval()
    x = torch.randn(2, IN, 6, 6)
    y = block(x)
    c1, c3, c5, cp = (WIDTHS[k] for k in ("ch1x1", "ch3x3", "ch5x5", "pool_proj"))
    bounds = [0, c1, c1 + c3, c1 + c3 + c5, c1 + c3 + c5 + cp]
    branches = [block.branch1x1, block.branch3x3, block.branch5x5, block.branch_pool]
    for branch, lo, hi in zip(branches, bounds, bounds[1:]):
        torch.testing.assert_close(y[:, lo:hi], branch(x))


def test_branch_kernels():
    single = InceptionBlock(IN, **WIDTHS)
    assert single.branch5x5[1].conv.kernel_size == (5, 5)
    double = InceptionBlock(IN, **WIDTHS, use_double_3x3=True)
    assert [m.conv.kernel_size for m in double.branch5x5] == [(1, 1), (3, 3), (3, 3)]
    pool = single.branch_pool[0]
    assert (pool.kernel_size, pool.stride, pool.padding) == (3, 1, 1)


@pytest.mark.parametrize("double", [False, True])
@pytest.mark.parametrize("norm", ["bn", None])
def test_param_count_closed_form(double, norm):
    c1, r3, c3, r5, c5, pp = (WIDTHS[k] for k in
                               ("ch1x1", "ch3x3_reduce", "ch3x3", "ch5x5_reduce", "ch5x5", "pool_proj"))
    block = InceptionBlock(IN, **WIDTHS, use_double_3x3=double, norm_layer=norm)
    # Per conv output channel: 2 BN params (weight, bias), or 1 conv bias without norm.
    extra = 2 if norm else 1
    expected = (IN * c1 + extra * c1
                + IN * r3 + extra * r3 + 9 * r3 * c3 + extra * c3
                + IN * r5 + extra * r5
                + (9 * r5 * c5 + extra * c5 + 9 * c5 * c5 + extra * c5 if double else 25 * r5 * c5 + extra * c5)
                + IN * pp + extra * pp)
    assert n_params(block) == expected


def test_every_parameter_gets_a_gradient():
    block = InceptionBlock(IN, **WIDTHS, use_double_3x3=True)
    block(torch.randn(2, IN, 5, 5)).square().mean().backward()
    for name, p in block.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_out_channels_mismatch_names_both():
    with pytest.raises(ValueError, match=r"out_channels=40.*= 32"):
        InceptionBlock(IN, 40, **WIDTHS)


@pytest.mark.parametrize("stride", [2, 3])
def test_stride_must_be_one(stride):
    with pytest.raises(ValueError, match=f"stride should be 1.*got {stride}"):
        InceptionBlock(IN, stride=stride, **WIDTHS)


@pytest.mark.parametrize("name", sorted(WIDTHS))
def test_bad_width(name):
    with pytest.raises(ValueError, match=name):
        InceptionBlock(IN, **{**WIDTHS, name: 0})
