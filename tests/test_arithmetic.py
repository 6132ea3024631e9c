"""Conv arithmetic against the shapes PyTorch layers actually produce, and receptive fields
against the gradient of a real conv stack."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from convzoo.models.layers.arithmetic import (ReceptiveField, conv_output_size, conv_transpose_output_size,
                                      effective_kernel_size, pool_output_size, receptive_field,
                                      same_padding)

FAST = settings(max_examples=80, deadline=None)
sizes = st.integers(1, 24)
kernels = st.integers(1, 6)
strides = st.integers(1, 4)
paddings = st.integers(0, 3)
dilations = st.integers(1, 3)


def torch_size(layer: nn.Module, x: torch.Tensor):
    """Output spatial shape, or None when PyTorch refuses the configuration.

    A zero-size output counts as refused: ConvTranspose2d returns an empty tensor when its
    output size works out to exactly 0, where the arithmetic helpers raise instead.
    """
    try:
        with torch.no_grad():
            shape = tuple(layer(x).shape[2:])
    except RuntimeError:
        return None
    return shape if min(shape) > 0 else None


def ours(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except ValueError:
        return None


@FAST
@given(sizes, kernels, strides, paddings, dilations)
def test_conv_output_size_matches_conv1d(size, kernel, stride, padding, dilation):
    conv = nn.Conv1d(1, 1, kernel, stride=stride, padding=padding, dilation=dilation)
    expected = torch_size(conv, torch.zeros(1, 1, size))
    got = ours(conv_output_size, size, kernel, stride, padding, dilation)
    assert (got,) == expected if expected is not None else got is None


@FAST
@given(st.tuples(sizes, sizes), st.tuples(kernels, kernels), st.tuples(strides, strides),
       st.tuples(paddings, paddings), st.tuples(dilations, dilations))
def test_conv_output_size_matches_conv2d_per_dimension(size, kernel, stride, padding, dilation):
    conv = nn.Conv2d(1, 1, kernel, stride=stride, padding=padding, dilation=dilation)
    expected = torch_size(conv, torch.zeros(1, 1, *size))
    got = tuple(ours(conv_output_size, *args) for args in zip(size, kernel, stride, padding, dilation))
    if expected is None:
        assert None in got
    else:
        assert got == expected


@FAST
@given(sizes, kernels, st.none() | strides, st.data(), dilations, st.booleans())
def test_pool_output_size_matches_maxpool2d(size, kernel, stride, data, dilation, ceil_mode):
    padding = data.draw(st.integers(0, kernel // 2 + 1))  # one past PyTorch's limit: must raise too
    pool = nn.MaxPool2d(kernel, stride=stride, padding=padding, dilation=dilation, ceil_mode=ceil_mode)
    expected = torch_size(pool, torch.zeros(1, 1, size, size))
    got = ours(pool_output_size, size, kernel, stride, padding, dilation, ceil_mode)
    assert (got, got) == expected if expected is not None else got is None


@FAST
@given(sizes, kernels, st.none() | strides, st.data(), st.booleans())
def test_pool_output_size_matches_avgpool2d(size, kernel, stride, data, ceil_mode):
    # AvgPool2d has no dilation argument, so pool_output_size is called with the default 1.
    padding = data.draw(st.integers(0, kernel // 2 + 1))
    pool = nn.AvgPool2d(kernel, stride=stride, padding=padding, ceil_mode=ceil_mode)
    expected = torch_size(pool, torch.zeros(1, 1, size, size))
    got = ours(pool_output_size, size, kernel, stride, padding, ceil_mode=ceil_mode)
    assert (got, got) == expected if expected is not None else got is None


def test_pool_output_size_ceil_mode_drops_window_starting_in_padding():
    # 5 + 2*1 padded, kernel 2 stride 2: ceil gives 4 windows, but the 4th would start in the
    # right padding (index 6 >= 5 + 1), so PyTorch keeps 3.
    assert pool_output_size(5, 2, 2, padding=1, ceil_mode=True) == 3
    assert pool_output_size(5, 2, 2, padding=0, ceil_mode=True) == 3
    assert pool_output_size(5, 2, 2, padding=0, ceil_mode=False) == 2


@FAST
@given(sizes, kernels, strides, paddings, st.data(), dilations)
def test_conv_transpose_output_size_matches_convtranspose2d(size, kernel, stride, padding, data, dilation):
    output_padding = data.draw(st.integers(0, max(stride, dilation)))  # the top value is invalid
    expected = None
    try:
        conv = nn.ConvTranspose2d(1, 1, kernel, stride=stride, padding=padding,
                                  output_padding=output_padding, dilation=dilation)
        expected = torch_size(conv, torch.zeros(1, 1, size, size))
    except (ValueError, RuntimeError):
        pass
    got = ours(conv_transpose_output_size, size, kernel, stride, padding, output_padding, dilation)
    assert (got, got) == expected if expected is not None else got is None


@FAST
@given(st.integers(1, 7), dilations)
def test_effective_kernel_size_is_the_span_a_conv_needs(kernel, dilation):
    span = effective_kernel_size(kernel, dilation)
    assert span == dilation * (kernel - 1) + 1
    conv = nn.Conv1d(1, 1, kernel, dilation=dilation)
    assert torch_size(conv, torch.zeros(1, 1, span)) == (1,)  # exactly one window fits
    assert torch_size(conv, torch.zeros(1, 1, span - 1)) is None if span > 1 else True


@pytest.mark.parametrize("kernel, dilation", [(0, 1), (3, 0), (-1, 2)])
def test_effective_kernel_size_rejects_non_positive(kernel, dilation):
    with pytest.raises(ValueError):
        effective_kernel_size(kernel, dilation)


@FAST
@given(st.integers(1, 16), st.sampled_from([1, 3, 5, 7]), dilations)
def test_same_padding_keeps_size_at_stride_1(size, kernel, dilation):
    padding = same_padding(kernel, dilation)
    conv = nn.Conv2d(1, 1, kernel, padding=padding, dilation=dilation)
    assert torch_size(conv, torch.zeros(1, 1, size, size)) == (size, size)


def test_same_padding_per_dimension_and_even_kernels():
    assert same_padding((1, 7)) == (0, 3)
    assert same_padding((3, 5), (2, 1)) == (2, 2)
    assert same_padding(3, 4) == 4
    for even in (2, 4, (3, 2)):
        with pytest.raises(ValueError, match="odd"):
            same_padding(even)


@pytest.mark.parametrize("layers, expected", [
    ([(3, 1)] * 3, [(3, 1), (5, 1), (7, 1)]),  # three 3x3 convs see 7x7 (VGG's argument)
    ([(3, 2), (3, 1)], [(3, 2), (7, 2)]),  # the stride doubles the second conv's step
    ([(2, 2), (2, 2), (2, 2)], [(2, 2), (4, 4), (8, 8)]),  # non-overlapping pools tile exactly
    ([(3, 1, 1), (3, 1, 2), (3, 1, 4)], [(3, 1), (7, 1), (15, 1)]),  # dilation 1, 2, 4: exponential
    ([(7, 2), (3, 2), (3, 1)], [(7, 2), (11, 4), (19, 4)]),  # ResNet stem: conv7/2, pool3/2, conv3
])
def test_receptive_field_of_known_chains(layers, expected):
    assert receptive_field(layers) == [ReceptiveField(size, jump) for size, jump in expected]


def test_receptive_field_empty_chain_and_bad_stride():
    assert receptive_field([]) == []
    with pytest.raises(ValueError):
        receptive_field([(3, 0)])


def gradient_extent(stack: nn.Module, size: int, out_index: int) -> tuple[int, int]:
    """(first, last) input column whose value reaches output pixel (out_index, out_index)."""
    x = torch.ones(1, 1, size, size, dtype=torch.float64, requires_grad=True)
    stack(x)[0, 0, out_index, out_index].backward()
    cols = x.grad[0, 0].abs().sum(dim=0).nonzero().flatten()  # all weights are 1: no cancellation
    return int(cols[0]), int(cols[-1])


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 4), st.integers(1, 2), st.integers(1, 2)), min_size=1, max_size=3))
def test_receptive_field_matches_gradient_of_conv_stack(layers):
    stack = nn.Sequential(*(nn.Conv2d(1, 1, k, stride=s, dilation=d, bias=False) for k, s, d in layers))
    for conv in stack:
        nn.init.ones_(conv.weight)
    stack.double()
    rf = receptive_field(layers)[-1]
    size = 48  # spans >= any 3-layer stack here (<= 1 + 6 + 12 + 24 = 43) plus one step
    first, last = gradient_extent(stack, size, 0)
    assert (first, last - first + 1) == (0, rf.size)
    # Moving one output pixel moves the field by the jump (when a second output exists).
    if size >= rf.size + rf.jump:
        assert gradient_extent(stack, size, 1) == (rf.jump, rf.jump + rf.size - 1)
