"""Residual blocks (He et al. 2016, "Deep Residual Learning for Image Recognition"; He et al.
2016b, "Identity Mappings in Deep Residual Networks").

A residual block learns ``F(x)`` and adds the input back: ``y = act(F(x) + shortcut(x))``.
When the block changes the shape (stride 2 or more channels) the shortcut has to change it too:

- option "A" (the paper's CIFAR nets): parameter-free, a strided identity with the extra
  channels filled with zeros, after the input's (``shortcut_pad="end"``) or split on both sides
  (``"both"``, what akamaster's pretrained CIFAR ResNets expect; the ResNet configs use it).
  ``"end"`` stays the default so that a net saved with a config that names no placement
  rebuilds as it was trained;
- option "B": a 1x1 convolution + norm projection, and the plain identity when shapes match.

``PlainBlock`` is the same body with no shortcut at all, for the degradation experiment
(deeper plain nets train worse; the residual version does not).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from convzoo.checks import check_channels, check_choice, check_divisible, check_positive

from ..registry import register_block
from .conv import ConvNormAct, LayerSpec, make_act, make_norm

SHORTCUTS = ("A", "B")
SHORTCUT_PADS = ("end", "both")  # where option A puts its zero channels


def _check_block_args(in_channels: int, out_channels: int, stride: int, dilation: int) -> None:
    check_channels(in_channels, out_channels)
    check_choice("stride", stride, (1, 2))
    check_positive("dilation", dilation)


class ShortcutA(nn.Module):
    """Option-A shortcut: ``y = pad_channels(x[:, :, ::s, ::s])``, zero parameters.

    The ``out_channels - in_channels`` new channels are zeros. He et al. do not say where they go:
    ``pad="end"`` puts them after the input's channels, ``pad="both"`` splits them, the smaller
    half before (akamaster's CIFAR ResNets, whose published weights expect ``planes // 4`` zero
    channels on each side; the ResNet configs choose it). Striding by slicing gives the same size
    as a 3x3 "same"-padded conv at that stride, ``ceil(W / s)``, odd sizes included.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, pad: str = "end") -> None:
        super().__init__()
        check_channels(in_channels, out_channels)
        check_positive("stride", stride)
        check_choice("shortcut_pad", pad, SHORTCUT_PADS)
        if out_channels < in_channels:
            raise ValueError(f"shortcut 'A' can only add channels (zero padding), got in_channels="
                             f"{in_channels} > out_channels={out_channels}; use shortcut 'B'")
        self.in_channels, self.out_channels, self.stride, self.pad = in_channels, out_channels, stride, pad
        extra = out_channels - in_channels
        before = extra // 2 if pad == "both" else 0
        self.channel_pad = (before, extra - before)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, ::self.stride, ::self.stride]  # (N, C_in, ceil(H/s), ceil(W/s))
        if any(self.channel_pad):
            x = F.pad(x, (0, 0, 0, 0, *self.channel_pad))  # (N, C_out, H', W'), new channels are zeros
        return x

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, stride={self.stride}, pad={self.pad!r}"


def make_shortcut(kind: str, in_channels: int, out_channels: int, stride: int = 1,
                  norm_layer: LayerSpec = "bn", pad: str = "end") -> nn.Module:
    """The shortcut of a residual block: ``nn.Identity`` when the shape is kept, otherwise
    ``ShortcutA`` (kind "A", zero channels placed by ``pad``) or a 1x1 conv (stride ``stride``,
    no bias) + norm (kind "B")."""
    check_choice("shortcut", kind, SHORTCUTS)
    check_choice("shortcut_pad", pad, SHORTCUT_PADS)
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    if kind == "A":
        return ShortcutA(in_channels, out_channels, stride, pad)
    # The conv needs no bias: it is followed by a norm, or (pre-activation) summed with a
    # residual branch whose result is normalised next.
    return ConvNormAct(in_channels, out_channels, 1, stride=stride, bias=False,
                       norm_layer=norm_layer, act_layer=None)


def zero_init_last(layer: ConvNormAct) -> None:
    """Make a ConvNormAct output exactly zero: zero the norm's scale and shift (gamma, beta),
    or, when there is no affine norm, the conv's weight and bias."""
    if isinstance(getattr(layer.norm, "weight", None), nn.Parameter):
        target = layer.norm
    else:
        target = layer.conv
    nn.init.zeros_(target.weight)
    if getattr(target, "bias", None) is not None:
        nn.init.zeros_(target.bias)


class _PostActResidual(nn.Module):
    """What BasicBlock and Bottleneck share: ``y = act(branch(x) + shortcut(x))``, and
    ``zero_init_residual`` zeroing the branch's last ConvNormAct (named by ``_last``)."""

    _last = "conv2"

    def _add_shortcut(self, shortcut: str, norm_layer: LayerSpec, act_layer: LayerSpec,
                      zero_init_residual: bool, shortcut_pad: str = "end") -> None:
        self.shortcut = make_shortcut(shortcut, self.in_channels, self.out_channels, self.stride, norm_layer,
                                      shortcut_pad)
        self.act = make_act(act_layer)
        self.zero_init_residual = zero_init_residual
        self.init_weights()

    def init_weights(self) -> None:
        """The block's own init rule; ``Net.init_weights`` calls it after its generic one."""
        if self.zero_init_residual:
            zero_init_last(getattr(self, self._last))


@register_block("basic")
class BasicBlock(_PostActResidual):
    """``y = act(BN(conv3x3(act(BN(conv3x3_s(x))))) + shortcut(x))`` (He et al. 2016, fig. 2).

    ``stride`` is on the first conv; ``dilation`` on both 3x3 convs (padding ``dilation``, so the
    size is kept at stride 1). ``zero_init_residual`` zeros the last norm's gamma: the branch
    then outputs 0 and, with an identity shortcut, the block is ``act(x)``.
    """

    def __init__(self, in_channels: int, out_channels: int, *, stride: int = 1, dilation: int = 1,
                 shortcut: str = "B", shortcut_pad: str = "end", zero_init_residual: bool = False,
                 norm_layer: LayerSpec = "bn", act_layer: LayerSpec = "relu") -> None:
        super().__init__()
        _check_block_args(in_channels, out_channels, stride, dilation)
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.conv1 = ConvNormAct(in_channels, out_channels, 3, stride=stride, dilation=dilation,
                                 norm_layer=norm_layer, act_layer=act_layer)
        self.conv2 = ConvNormAct(out_channels, out_channels, 3, dilation=dilation,
                                 norm_layer=norm_layer, act_layer=None)
        self._add_shortcut(shortcut, norm_layer, act_layer, zero_init_residual, shortcut_pad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.conv1(x))  # (N, C_out, H/s, W/s)
        return self.act(out + self.shortcut(x))


@register_block("bottleneck")
class Bottleneck(_PostActResidual):
    """``y = act(BN(conv1x1(act(BN(conv3x3_s,g(act(BN(conv1x1(x))))))) + shortcut(x))``.

    1x1 reduces to ``width`` (default ``out_channels // expansion``), the 3x3 carries the stride,
    dilation and groups (stride on the 3x3 as in torchvision's "ResNet v1.5"), 1x1 expands to
    ``out_channels``. ``zero_init_residual`` zeros the last norm's gamma (see ``BasicBlock``).
    """

    channel_args = ("width",)  # scaled with the net's width_mult, like out_channels
    _last = "conv3"

    def __init__(self, in_channels: int, out_channels: int, *, stride: int = 1, dilation: int = 1,
                 expansion: int = 4, width: int | None = None, groups: int = 1, shortcut: str = "B",
                 shortcut_pad: str = "end", zero_init_residual: bool = False, norm_layer: LayerSpec = "bn",
                 act_layer: LayerSpec = "relu") -> None:
        super().__init__()
        _check_block_args(in_channels, out_channels, stride, dilation)
        check_positive("groups", groups)
        if width is None:
            check_positive("expansion", expansion)
            check_divisible("out_channels", out_channels, "expansion", expansion)
            width = out_channels // expansion
        check_positive("width", width)
        check_divisible("width", width, "groups", groups)
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.width, self.groups = width, groups
        self.conv1 = ConvNormAct(in_channels, width, 1, norm_layer=norm_layer, act_layer=act_layer)
        self.conv2 = ConvNormAct(width, width, 3, stride=stride, dilation=dilation, groups=groups,
                                 norm_layer=norm_layer, act_layer=act_layer)
        self.conv3 = ConvNormAct(width, out_channels, 1, norm_layer=norm_layer, act_layer=None)
        self._add_shortcut(shortcut, norm_layer, act_layer, zero_init_residual, shortcut_pad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(x)  # (N, width, H, W)
        out = self.conv2(out)  # (N, width, H/s, W/s)
        out = self.conv3(out)  # (N, C_out, H/s, W/s)
        return self.act(out + self.shortcut(x))


@register_block("preact")
class PreActBlock(nn.Module):
    """``y = conv3x3(act(BN(conv3x3_s(act(BN(x)))))) + shortcut(x)`` (He et al. 2016b, fig. 1b).

    Nothing follows the addition, so the identity path runs clean from block to block. A
    projection shortcut ("B", shape change) is a 1x1 conv with no norm applied to the
    pre-activated input ``act(BN(x))``, as in the paper's code and common CIFAR PreActResNets;
    the parameter-free shortcuts (identity, "A") take ``x`` itself. With no final norm,
    ``zero_init_residual`` zeros the last conv's weight instead, so the identity-shortcut block
    is exactly ``y = x``.
    """

    def __init__(self, in_channels: int, out_channels: int, *, stride: int = 1, dilation: int = 1,
                 shortcut: str = "B", shortcut_pad: str = "end", zero_init_residual: bool = False,
                 norm_layer: LayerSpec = "bn", act_layer: LayerSpec = "relu") -> None:
        super().__init__()
        _check_block_args(in_channels, out_channels, stride, dilation)
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.norm1 = make_norm(norm_layer, in_channels)
        self.act1 = make_act(act_layer)
        # Without a norm the act would run on the caller's x itself; in-place would corrupt it.
        if hasattr(self.act1, "inplace"):
            self.act1.inplace = False
        self.conv1 = ConvNormAct(in_channels, out_channels, 3, stride=stride, dilation=dilation,
                                 norm_layer=norm_layer, act_layer=act_layer)
        has_norm = not isinstance(self.norm1, nn.Identity)
        self.conv2 = ConvNormAct(out_channels, out_channels, 3, dilation=dilation,
                                 bias=not has_norm, norm_layer=None, act_layer=None)
        self.shortcut = make_shortcut(shortcut, in_channels, out_channels, stride, None, shortcut_pad)
        self.project_preact = isinstance(self.shortcut, ConvNormAct)
        self.zero_init_residual = zero_init_residual
        self.init_weights()

    def init_weights(self) -> None:
        """The block's own init rule; ``Net.init_weights`` calls it after its generic one."""
        if self.zero_init_residual:
            zero_init_last(self.conv2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.act1(self.norm1(x))  # (N, C_in, H, W)
        skip = self.shortcut(pre if self.project_preact else x)  # (N, C_out, H/s, W/s)
        return self.conv2(self.conv1(pre)) + skip


@register_block("plain")
class PlainBlock(nn.Module):
    """``y = act(BN(conv3x3(act(BN(conv3x3_s(x))))))``: ``BasicBlock`` without the shortcut.

    The "plain" baseline of He et al. 2016 (sec. 4.1): the same layers and parameter count as a
    ``BasicBlock`` with the parameter-free shortcut "A", and the same parameter names.
    """

    def __init__(self, in_channels: int, out_channels: int, *, stride: int = 1, dilation: int = 1,
                 norm_layer: LayerSpec = "bn", act_layer: LayerSpec = "relu") -> None:
        super().__init__()
        _check_block_args(in_channels, out_channels, stride, dilation)
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.conv1 = ConvNormAct(in_channels, out_channels, 3, stride=stride, dilation=dilation,
                                 norm_layer=norm_layer, act_layer=act_layer)
        self.conv2 = ConvNormAct(out_channels, out_channels, 3, dilation=dilation,
                                 norm_layer=norm_layer, act_layer=None)
        self.act = make_act(act_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv2(self.conv1(x)))  # (N, C_out, H/s, W/s)
