"""Downsampling by pooling, or by a strided conv in its place, and global average pooling.

Springenberg et al., "Striving for Simplicity: The All Convolutional Net" (ICLR 2015 workshop):
a max pool can be replaced by a strided convolution with no loss of accuracy, turning a fixed
downsampling rule into a learned one. ``Pool2d(mode=...)`` makes that a one-word switch.
"""
from __future__ import annotations

import torch
from torch import nn

from convzoo.checks import check_choice, check_positive

from ..registry import register_block
from .conv import ConvNormAct, LayerSpec


@register_block("pool")
class Pool2d(nn.Module):
    """Downsample by ``stride``: ``max``/``avg`` over K x K windows, or ``conv`` = strided ConvNormAct(x).

    Output size ``floor((W + 2P - K) / S) + 1`` with ``P = (K - 1) // 2``. Pools default to
    ``K = stride`` (non-overlapping windows, 2x2 at stride 2, as in VGG), which halves even
    sizes exactly; ``kernel_size=3`` gives GoogLeNet's overlapping 3x3/2 max pool. Pools keep the
    channels (``out_channels`` must be None or ``in_channels``) and have no parameters, so
    ``norm_layer`` and ``act_layer`` shape only the ``conv`` mode: the all-convolutional
    alternative, a K x K (default 3x3) stride-S conv -> norm -> act that may change channels.
    Average pools divide by the number of real pixels in each window (padding is not counted).
    """

    MODES = ("max", "avg", "conv")

    def __init__(
        self,
        in_channels: int,
        out_channels: int | None = None,
        *,
        stride: int = 2,
        kernel_size: int | None = None,
        mode: str = "max",
        norm_layer: LayerSpec = "bn",
        act_layer: LayerSpec = "relu",
    ) -> None:
        super().__init__()
        check_positive("in_channels", in_channels)
        out_channels = in_channels if out_channels is None else out_channels
        check_positive("out_channels", out_channels)
        check_positive("stride", stride)
        check_choice("mode", mode, self.MODES)
        if kernel_size is None:
            kernel_size = 3 if mode == "conv" else stride
        check_positive("kernel_size", kernel_size)
        padding = (kernel_size - 1) // 2  # "same"-style centring: odd K at stride 1 keeps the size
        if mode == "conv":
            self.pool = ConvNormAct(in_channels, out_channels, kernel_size, stride=stride,
                                    padding=padding, norm_layer=norm_layer, act_layer=act_layer)
        elif out_channels != in_channels:
            raise ValueError(f"{mode} pooling keeps the channels: out_channels should be None or "
                             f"{in_channels}, got {out_channels}; use mode='conv' to change them")
        elif mode == "max":
            self.pool = nn.MaxPool2d(kernel_size, stride=stride, padding=padding)
        else:
            self.pool = nn.AvgPool2d(kernel_size, stride=stride, padding=padding, count_include_pad=False)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride = stride
        self.kernel_size = kernel_size
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(x)  # (N, C_in, H, W) -> (N, C_out, H', W'), H' = floor((H + 2P - K) / S) + 1

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}"


class GlobalAvgPool2d(nn.Module):
    """``mean_{h,w} x[n, c, h, w]``: (N, C, H, W) -> (N, C), or (N, C, 1, 1) with ``flatten=False``.

    The usual head before the classifier (Lin et al., "Network in Network", 2014): it works
    for any input size and has no parameters.
    """

    def __init__(self, flatten: bool = True) -> None:
        super().__init__()
        self.flatten = flatten

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"GlobalAvgPool2d expects (N, C, H, W), got {tuple(x.shape)}")
        return x.mean(dim=(2, 3), keepdim=not self.flatten)  # (N, C) or (N, C, 1, 1)

    def extra_repr(self) -> str:
        return f"flatten={self.flatten}"
