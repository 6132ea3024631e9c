"""Factorised convolutions: a K x K x C_in x C_out convolution split into cheaper pieces.

A standard conv costs ``H W K^2 C_in C_out`` MACs. The blocks here factor it along different
axes of its weight tensor:

- ``DepthwiseSeparableConv`` (MobileNet v1): spatial (per channel) x channel mixing.
- ``InvertedResidual`` (MobileNet v2): expand -> depthwise -> linear project, with a shortcut.
- ``SpatiallySeparableConv`` (Inception v3): the K x K window into K x 1 then 1 x K.
- ``FlattenedConv`` (Jin et al. 2014): channels, then rows, then columns, each one-dimensional.
"""
from __future__ import annotations

import torch
from torch import nn

from convzoo.checks import check_channels, check_choice, check_positive

from ..registry import register_block
from .conv import ConvNormAct, LayerSpec, make_act, make_norm


def _is_linear(norm_layer: LayerSpec, act_layer: LayerSpec) -> bool:
    """True when neither a norm nor an activation would be inserted ("plain" mode)."""
    return isinstance(make_norm(norm_layer, 1), nn.Identity) and isinstance(make_act(act_layer), nn.Identity)


@register_block("dwsep")
class DepthwiseSeparableConv(nn.Module):
    """y = pointwise1x1(depthwise_KxK(x)); cost / standard conv cost = 1/C_out + 1/K^2.

    MobileNet v1 (Howard et al. 2017). The depthwise K x K conv (``groups=in_channels``) filters
    each channel on its own, ``H W K^2 C_in`` MACs; the pointwise 1x1 conv mixes channels,
    ``H W C_in C_out`` MACs. Against a standard conv's ``H W K^2 C_in C_out`` the ratio is
    ``1/C_out + 1/K^2``: about 8-9x cheaper for 3x3 kernels. Both convs are followed by norm and
    activation, as in the paper. ``stride`` and ``dilation`` apply to the depthwise conv.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        stride: int = 1,
        kernel_size: int = 3,
        dilation: int = 1,
        norm_layer: LayerSpec = "bn",
        act_layer: LayerSpec = "relu",
    ) -> None:
        super().__init__()
        check_channels(in_channels, out_channels)
        check_positive("stride", stride)
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.depthwise = ConvNormAct(in_channels, in_channels, kernel_size, stride=stride, dilation=dilation,
                                     groups=in_channels, norm_layer=norm_layer, act_layer=act_layer)
        self.pointwise = ConvNormAct(in_channels, out_channels, 1, norm_layer=norm_layer, act_layer=act_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.depthwise(x)  # (N, C_in, H/s, W/s): one K x K filter per channel
        return self.pointwise(x)  # (N, C_out, H/s, W/s): 1x1 channel mixing


@register_block("inverted_residual")
class InvertedResidual(nn.Module):
    """y = x + project1x1(depthwise_KxK(expand1x1(x))), the add only when stride == 1 and C_in == C_out.

    MobileNet v2 (Sandler et al. 2018). The block is "inverted" against a ResNet bottleneck: it
    widens ``in_channels -> in_channels * expansion``, filters that wide tensor depthwise, then
    projects back down with a *linear* 1x1 conv (norm, no activation), because a ReLU on the
    narrow bottleneck would destroy information. With ``expansion == 1`` the expand conv is
    skipped (nothing to widen), as in the paper's first bottleneck. The shortcut joins the narrow
    ends and exists only when shapes match (``self.use_residual``).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        stride: int = 1,
        expansion: int = 6,
        kernel_size: int = 3,
        dilation: int = 1,
        norm_layer: LayerSpec = "bn",
        act_layer: LayerSpec = "relu6",
    ) -> None:
        super().__init__()
        check_channels(in_channels, out_channels)
        check_choice("stride", stride, (1, 2))
        check_positive("expansion", expansion)
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.hidden_channels = hidden = in_channels * expansion
        self.use_residual = stride == 1 and in_channels == out_channels
        self.expand = (nn.Identity() if expansion == 1 else
                       ConvNormAct(in_channels, hidden, 1, norm_layer=norm_layer, act_layer=act_layer))
        self.depthwise = ConvNormAct(hidden, hidden, kernel_size, stride=stride, dilation=dilation,
                                     groups=hidden, norm_layer=norm_layer, act_layer=act_layer)
        self.project = ConvNormAct(hidden, out_channels, 1, norm_layer=norm_layer, act_layer=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.expand(x)  # (N, C_in * t, H, W)
        out = self.depthwise(out)  # (N, C_in * t, H/s, W/s)
        out = self.project(out)  # (N, C_out, H/s, W/s), linear
        return x + out if self.use_residual else out


@register_block("spatial_sep")
class SpatiallySeparableConv(nn.Module):
    """y = conv_1xK(conv_Kx1(x)); with no norm/act between, one KxK conv of kernel sum_m row_m (x) col_m.

    Inception v3's factorisation (Szegedy et al. 2016, "Rethinking the Inception architecture"):
    a K x 1 conv ``in_channels -> mid_channels`` (default ``out_channels``) then a 1 x K conv
    ``-> out_channels``, ``K (C_in C_mid + C_mid C_out)`` weights instead of ``K^2 C_in C_out``.
    Each factor is conv -> norm -> act, as in Inception v3.

    Stride: the K x 1 conv strides along H (``(stride, 1)``) and the 1 x K conv along W
    (``(1, stride)``), so the output size is that of one strided K x K conv.

    Plain mode (``norm_layer=None, act_layer=None``): the pair is linear and equals a single
    K x K conv (same stride and padding) with kernel ``W[o, i] = sum_m row[o, m] outer col[m, i]``;
    for one channel in, out and mid that is a rank-1 kernel ``outer(col, row)``. To keep that
    identity exact the first conv then has no bias (a bias between the two would be zero-padded
    at the borders); the second conv keeps its bias, which is the combined conv's bias.
    """

    channel_args = ("mid_channels",)  # scaled with the net's width_mult, like out_channels

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        stride: int = 1,
        kernel_size: int = 3,
        mid_channels: int | None = None,
        dilation: int = 1,
        norm_layer: LayerSpec = "bn",
        act_layer: LayerSpec = "relu",
    ) -> None:
        super().__init__()
        mid_channels = out_channels if mid_channels is None else mid_channels
        for name, value in dict(in_channels=in_channels, out_channels=out_channels, stride=stride,
                                kernel_size=kernel_size, mid_channels=mid_channels).items():
            check_positive(name, value)
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.mid_channels = mid_channels
        first_bias = False if _is_linear(norm_layer, act_layer) else None
        self.vertical = ConvNormAct(in_channels, mid_channels, (kernel_size, 1), stride=(stride, 1),
                                    dilation=dilation, bias=first_bias, norm_layer=norm_layer, act_layer=act_layer)
        self.horizontal = ConvNormAct(mid_channels, out_channels, (1, kernel_size), stride=(1, stride),
                                      dilation=dilation, norm_layer=norm_layer, act_layer=act_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.vertical(x)  # (N, C_mid, H/s, W): K x 1 window along H
        return self.horizontal(x)  # (N, C_out, H/s, W/s): 1 x K window along W


@register_block("flattened")
class FlattenedConv(nn.Module):
    """y = conv_1xK_dw(conv_Kx1_dw(conv_1x1(x))): each output filter is rank 1, W[o,i,a,b] = l[o,i] v[o,a] h[o,b].

    Jin et al. 2014, "Flattened convolutional neural networks for feedforward acceleration": a
    3-D filter ``C_in x K x K`` is replaced by three 1-D filters applied in turn: across channels
    (1x1 conv, ``in -> out``), down columns (K x 1 depthwise) and along rows (1 x K depthwise).
    Weights: ``C_in C_out + 2 K C_out`` instead of ``K^2 C_in C_out``.

    Norm and activation follow only the last conv, by default: the three 1-D convs stay linear,
    so together they are exactly one K x K conv with rank-1 filters (the paper's decomposition),
    and only the last conv has a bias (a bias in between would be zero-padded at the borders).
    ``norm_between=True`` puts norm -> act after each of the three instead (a deeper,
    non-linear variant). Stride: the K x 1 conv strides along H, the 1 x K conv along W.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        stride: int = 1,
        kernel_size: int = 3,
        dilation: int = 1,
        norm_between: bool = False,
        norm_layer: LayerSpec = "bn",
        act_layer: LayerSpec = "relu",
    ) -> None:
        super().__init__()
        for name, value in dict(in_channels=in_channels, out_channels=out_channels, stride=stride,
                                kernel_size=kernel_size).items():
            check_positive(name, value)
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.norm_between = norm_between
        inner = dict(norm_layer=norm_layer, act_layer=act_layer) if norm_between else \
            dict(norm_layer=None, act_layer=None, bias=False)
        self.lateral = ConvNormAct(in_channels, out_channels, 1, **inner)
        self.vertical = ConvNormAct(out_channels, out_channels, (kernel_size, 1), stride=(stride, 1),
                                    dilation=dilation, groups=out_channels, **inner)
        self.horizontal = ConvNormAct(out_channels, out_channels, (1, kernel_size), stride=(1, stride),
                                      dilation=dilation, groups=out_channels,
                                      norm_layer=norm_layer, act_layer=act_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.lateral(x)  # (N, C_out, H, W): 1-D filters across channels
        x = self.vertical(x)  # (N, C_out, H/s, W): per-channel K x 1
        return self.horizontal(x)  # (N, C_out, H/s, W/s): per-channel 1 x K
