"""Reference convolution (im2col and the convolution matrix) against F.conv2d / F.conv_transpose2d."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from convzoo.models.layers.arithmetic import conv_output_size
from convzoo.models.layers.reference import conv2d_im2col, conv_matrix

FAST = settings(max_examples=60, deadline=None)


@st.composite
def conv_cases(draw, max_size=9):
    """A random float64 conv problem that PyTorch accepts: (x, weight, bias, kwargs)."""
    groups = draw(st.sampled_from([1, 2, 3]))
    c_in = groups * draw(st.integers(1, 2))
    c_out = groups * draw(st.integers(1, 2))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    h, w = draw(st.integers(1, max_size)), draw(st.integers(1, max_size))
    # The dilated kernel must fit the padded input, or there is no output at all.
    assume(h + 2 * padding[0] >= dilation[0] * (kh - 1) + 1)
    assume(w + 2 * padding[1] >= dilation[1] * (kw - 1) + 1)
    seed = draw(st.integers(0, 2**16))
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(draw(st.integers(1, 2)), c_in, h, w, generator=gen, dtype=torch.float64)
    weight = torch.randn(c_out, c_in // groups, kh, kw, generator=gen, dtype=torch.float64)
    bias = torch.randn(c_out, generator=gen, dtype=torch.float64) if draw(st.booleans()) else None
    return x, weight, bias, dict(stride=stride, padding=padding, dilation=dilation, groups=groups)


@FAST
@given(conv_cases())
def test_im2col_equals_conv2d(case):
    x, weight, bias, kw = case
    torch.testing.assert_close(conv2d_im2col(x, weight, bias, **kw), F.conv2d(x, weight, bias, **kw),
                               rtol=1e-12, atol=1e-12)


def test_im2col_accepts_int_arguments():
    x, weight = torch.randn(2, 4, 8, 7, dtype=torch.float64), torch.randn(6, 2, 3, 3, dtype=torch.float64)
    torch.testing.assert_close(conv2d_im2col(x, weight, stride=2, padding=1, dilation=2, groups=2),
                               F.conv2d(x, weight, stride=2, padding=1, dilation=2, groups=2))


def test_im2col_rejects_mismatched_channels():
    with pytest.raises(ValueError, match="input channels"):
        conv2d_im2col(torch.randn(1, 4, 5, 5), torch.randn(2, 3, 3, 3))
    with pytest.raises(ValueError, match="groups"):
        conv2d_im2col(torch.randn(1, 4, 5, 5), torch.randn(3, 2, 3, 3), groups=2)


def transpose_kwargs(kw: dict, weight: torch.Tensor, input_size) -> dict:
    """conv_transpose2d arguments that send the conv's output back to exactly ``input_size``."""
    output_padding = []
    for n, k, s, p, d in zip(input_size, weight.shape[2:], kw["stride"], kw["padding"], kw["dilation"]):
        # A strided conv maps several input sizes to one output size; output_padding picks ours.
        # (Inline formula: without output_padding the size may be < 1, which the helper rejects.)
        out = conv_output_size(n, k, s, p, d)
        output_padding.append(n - ((out - 1) * s - 2 * p + d * (k - 1) + 1))
    return dict(kw, output_padding=tuple(output_padding))


@FAST
@given(conv_cases(max_size=7))
def test_conv_matrix_is_conv2d_and_its_transpose_is_conv_transpose2d(case):
    x, weight, _, kw = case
    x = x[:1]
    matrix = conv_matrix(weight, tuple(x.shape[2:]), **kw)
    y = F.conv2d(x, weight, **kw)
    assert matrix.shape == (y.numel(), x.numel())
    torch.testing.assert_close(matrix @ x.flatten(), y.flatten(), rtol=1e-12, atol=1e-12)

    upstream = torch.randn_like(y)
    back = F.conv_transpose2d(upstream, weight, **transpose_kwargs(kw, weight, x.shape[2:]))
    assert back.shape == x.shape
    torch.testing.assert_close(matrix.T @ upstream.flatten(), back.flatten(), rtol=1e-12, atol=1e-12)


@FAST
@given(conv_cases(max_size=7))
def test_conv_transpose_is_the_adjoint_of_conv(case):
    # <conv(x), y> == <x, conv_transpose(y)> with the same weight, for any x and y.
    x, weight, _, kw = case
    y = torch.randn_like(F.conv2d(x, weight, **kw))
    lhs = (F.conv2d(x, weight, **kw) * y).sum()
    rhs = (x * F.conv_transpose2d(y, weight, **transpose_kwargs(kw, weight, x.shape[2:]))).sum()
    torch.testing.assert_close(lhs, rhs, rtol=1e-10, atol=1e-10)


def test_conv_transpose_is_the_input_gradient_of_conv():
    # Backprop through a conv applies the transposed conv: the same matrix, transposed.
    weight = torch.randn(3, 2, 3, 3, dtype=torch.float64)
    x = torch.randn(1, 2, 6, 6, dtype=torch.float64, requires_grad=True)
    y = F.conv2d(x, weight, stride=2, padding=1)
    upstream = torch.randn_like(y)
    y.backward(upstream)
    matrix = conv_matrix(weight, 6, stride=2, padding=1)
    torch.testing.assert_close(x.grad.flatten(), matrix.T @ upstream.flatten())


def test_conv_matrix_of_identity_kernel_is_identity():
    weight = torch.zeros(2, 2, 3, 3, dtype=torch.float64)
    weight[0, 0, 1, 1] = weight[1, 1, 1, 1] = 1.0  # centre tap, channel to itself
    torch.testing.assert_close(conv_matrix(weight, (4, 5), padding=1), torch.eye(2 * 4 * 5, dtype=torch.float64))


def test_conv_matrix_is_sparse_and_banded():
    # A 3x3 kernel on 5x5 without padding: every row holds exactly 9 taps (C_in = 1).
    matrix = conv_matrix(torch.ones(1, 1, 3, 3), 5)
    assert matrix.shape == (9, 25)
    assert ((matrix != 0).sum(dim=1) == 9).all()
