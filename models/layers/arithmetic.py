"""Convolution arithmetic (Dumoulin & Visin, "A guide to convolution arithmetic", 2016).

All sizes are per spatial dimension. The seed formula is the output size of a convolution,
``floor((W + 2P - F) / S) + 1`` with ``F = D (K - 1) + 1`` the dilated (effective) kernel.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

from convzoo.checks import check_positive


def effective_kernel_size(kernel_size: int, dilation: int = 1) -> int:
    """Span of a dilated kernel: ``D (K - 1) + 1`` (a 3x3 kernel at dilation 2 covers 5x5)."""
    check_positive("kernel_size", kernel_size)
    check_positive("dilation", dilation)
    return dilation * (kernel_size - 1) + 1


def same_padding(kernel_size, dilation=1):
    """Padding that keeps the size at stride 1: ``(K - 1) // 2 * D``; odd kernels only.

    Accepts ints or per-dimension tuples (for k x 1 kernels) and returns the same form.
    """
    if isinstance(kernel_size, (tuple, list)):
        dilations = dilation if isinstance(dilation, (tuple, list)) else (dilation,) * len(kernel_size)
        return tuple(same_padding(k, d) for k, d in zip(kernel_size, dilations))
    check_positive("kernel_size", kernel_size)
    check_positive("dilation", dilation)
    if kernel_size % 2 == 0:
        raise ValueError(f"'same' padding needs an odd kernel_size, got {kernel_size}; "
                         "pass an explicit padding for even kernels")
    return (kernel_size - 1) // 2 * dilation


def conv_output_size(size: int, kernel_size: int, stride: int = 1, padding: int = 0,
                     dilation: int = 1) -> int:
    """Output size of Conv1d/Conv2d: ``floor((W + 2P - D(K-1) - 1) / S) + 1``."""
    check_positive("size", size)
    check_positive("stride", stride)
    check_positive("padding", padding, allow_zero=True)
    span = effective_kernel_size(kernel_size, dilation)
    if size + 2 * padding < span:
        raise ValueError(f"kernel span {span} is larger than the padded input {size + 2 * padding}")
    return (size + 2 * padding - span) // stride + 1


def pool_output_size(size: int, kernel_size: int, stride: int | None = None, padding: int = 0,
                     dilation: int = 1, ceil_mode: bool = False) -> int:
    """Output size of MaxPool/AvgPool (stride defaults to the kernel size, as in PyTorch).

    With ``ceil_mode`` the division rounds up, but the last window must start inside the input
    or the left padding, so PyTorch drops it when it would start in the right padding.
    """
    stride = kernel_size if stride is None else stride
    check_positive("stride", stride)
    check_positive("padding", padding, allow_zero=True)
    span = effective_kernel_size(kernel_size, dilation)
    if padding * 2 > kernel_size:  # PyTorch bounds it by the undilated kernel, even when dilated
        raise ValueError(f"pool padding should be at most half the kernel size "
                         f"({kernel_size // 2}), got {padding}")
    rounding = math.ceil if ceil_mode else math.floor
    out = rounding((size + 2 * padding - span) / stride) + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    if out < 1:
        raise ValueError(f"pool window {span} is larger than the padded input {size + 2 * padding}")
    return out


def conv_transpose_output_size(size: int, kernel_size: int, stride: int = 1, padding: int = 0,
                               output_padding: int = 0, dilation: int = 1) -> int:
    """Output size of ConvTranspose: ``(W - 1) S - 2P + D(K-1) + output_padding + 1``.

    ``output_padding`` must be smaller than the stride or the dilation (PyTorch's rule): it
    picks one of the ``S`` input sizes that a strided conv maps to the same output size.
    """
    check_positive("size", size)
    check_positive("stride", stride)
    if not 0 <= output_padding < max(stride, dilation):
        raise ValueError(f"output_padding should be in [0, max(stride, dilation)) = "
                         f"[0, {max(stride, dilation)}), got {output_padding}")
    out = (size - 1) * stride - 2 * padding + effective_kernel_size(kernel_size, dilation) + output_padding
    if out < 1:
        raise ValueError(f"transposed conv output size would be {out}; reduce padding ({padding})")
    return out


@dataclass(frozen=True)
class ReceptiveField:
    """Receptive field after a layer: ``size`` input pixels, output step ``jump`` input pixels."""

    size: int
    jump: int


def receptive_field(layers: Iterable[Sequence[int]]) -> list[ReceptiveField]:
    """Receptive field size and jump after each layer of a chain.

    ``layers`` holds ``(kernel_size, stride)`` or ``(kernel_size, stride, dilation)`` per layer.
    Recurrence (Araujo et al., Distill 2019): ``r_l = r_{l-1} + (F_l - 1) j_{l-1}``,
    ``j_l = j_{l-1} S_l``, starting from ``r_0 = j_0 = 1``.
    """
    size, jump, out = 1, 1, []
    for layer in layers:
        kernel, stride, *rest = layer
        dilation = rest[0] if rest else 1
        check_positive("stride", stride)
        size += (effective_kernel_size(kernel, dilation) - 1) * jump
        jump *= stride
        out.append(ReceptiveField(size, jump))
    return out
