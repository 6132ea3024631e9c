"""How convolution is computed: readable reference code, checked against PyTorch in the tests.

Two views of the same linear map (Dumoulin & Visin, "A guide to convolution arithmetic", 2016):

- im2col: copy every receptive-field patch into a column (``F.unfold``), then one matrix
  multiply with the flattened kernels does the whole convolution. This is how many fast
  libraries (Caffe, cuDNN's GEMM algorithms) compute it.
- the convolution matrix C: conv(x).flatten() == C @ x.flatten(). C is sparse and banded;
  its transpose is the transposed ("fractionally strided") convolution with the same kernel,
  which is also what backpropagation applies to send gradients back to the input.

Not for speed: ``conv_matrix`` is dense, (C_out H_out W_out) x (C_in H W); keep inputs tiny.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from convzoo.checks import check_divisible, check_positive

from .arithmetic import conv_output_size

IntPair = int | tuple[int, int]


def _pair(value: IntPair) -> tuple[int, int]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def conv2d_im2col(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                  stride: IntPair = 1, padding: IntPair = 0, dilation: IntPair = 1,
                  groups: int = 1) -> torch.Tensor:
    """Same result as ``F.conv2d(x, weight, bias, stride, padding, dilation, groups)``, via unfold + matmul.

    x: (N, C_in, H, W); weight: (C_out, C_in / groups, kh, kw); bias: (C_out,) or None.
    """
    n, c_in, h, w = x.shape
    c_out, c_in_group, kh, kw = weight.shape
    check_positive("groups", groups)
    check_divisible("in_channels", c_in, "groups", groups)
    check_divisible("out_channels", c_out, "groups", groups)
    if c_in_group * groups != c_in:
        raise ValueError(f"weight expects {c_in_group * groups} input channels "
                         f"({c_in_group} per group x {groups} groups), x has {c_in}")
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    h_out = conv_output_size(h, kh, sh, ph, dh)
    w_out = conv_output_size(w, kw, sw, pw, dw)

    # Every patch as a column; rows run over (channel, kernel row, kernel col), channel slowest,
    # the same order as weight[o].flatten(). L = h_out * w_out patch positions.
    cols = F.unfold(x, (kh, kw), dilation=(dh, dw), padding=(ph, pw), stride=(sh, sw))  # (N, C_in*kh*kw, L)
    # Groups: channels g*C_in/G .. (g+1)*C_in/G - 1 form group g, so the rows split cleanly.
    cols = cols.view(n, groups, c_in_group * kh * kw, h_out * w_out)  # (N, G, C_in/G*kh*kw, L)
    kernels = weight.view(groups, c_out // groups, c_in_group * kh * kw)  # (G, C_out/G, C_in/G*kh*kw)
    out = kernels @ cols  # broadcast over N: (N, G, C_out/G, L), one dot product per output pixel
    out = out.view(n, c_out, h_out, w_out)  # groups are contiguous in C_out, as in F.conv2d
    if bias is not None:
        out = out + bias.view(1, c_out, 1, 1)
    return out


def conv_matrix(weight: torch.Tensor, input_size: IntPair, stride: IntPair = 1, padding: IntPair = 0,
                dilation: IntPair = 1, groups: int = 1) -> torch.Tensor:
    """Dense matrix C with ``F.conv2d(x, weight, ...).flatten() == C @ x.flatten()`` (batch 1, no bias).

    Shape (C_out * H_out * W_out, C_in * H * W). Its transpose is the transposed conv with the
    same weight: ``F.conv_transpose2d(y, weight, stride=stride, padding=padding,
    output_padding=op, groups=groups, dilation=dilation).flatten() == C.T @ y.flatten()``, with
    ``op = H - conv_transpose_output_size(H_out, ...)`` picking the original input size H
    (a strided conv maps several input sizes to the same H_out).
    """
    c_out, c_in_group, kh, kw = weight.shape
    check_positive("groups", groups)
    check_divisible("out_channels", c_out, "groups", groups)
    (h, w), (sh, sw), (ph, pw), (dh, dw) = _pair(input_size), _pair(stride), _pair(padding), _pair(dilation)
    h_out = conv_output_size(h, kh, sh, ph, dh)
    w_out = conv_output_size(w, kw, sw, pw, dw)
    c_in = c_in_group * groups

    # One entry per (output channel o, input channel c within o's group, kernel tap u, v,
    # output pixel i, j): weight[o, c, u, v] links output (o, i, j) to input pixel
    # (o's group offset + c, i*S - P + u*D, j*S - P + v*D) when that pixel is not padding.
    o, c, u, v, i, j = torch.meshgrid(
        *(torch.arange(n) for n in (c_out, c_in_group, kh, kw, h_out, w_out)), indexing="ij")
    row_in = i * sh - ph + u * dh
    col_in = j * sw - pw + v * dw
    channel_in = (o // (c_out // groups)) * c_in_group + c
    inside = (row_in >= 0) & (row_in < h) & (col_in >= 0) & (col_in < w)  # taps on padding add 0

    rows = (o * h_out + i) * w_out + j  # index into conv(x).flatten(): (C_out, H_out, W_out) order
    cols = (channel_in * h + row_in) * w + col_in  # index into x.flatten(): (C_in, H, W) order
    matrix = weight.new_zeros(c_out * h_out * w_out, c_in * h * w)
    # Each (output pixel, input pixel) pair is reached by one tap at most, so plain assignment
    # would do; accumulate keeps it correct even if that ever changed.
    matrix.index_put_((rows[inside], cols[inside]), weight[o, c, u, v][inside], accumulate=True)
    return matrix
