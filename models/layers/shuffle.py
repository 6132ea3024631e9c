"""Grouped convolutions with channel shuffle: ShuffleNet v1 (Zhang et al. 2018) and v2 (Ma et al. 2018).

A 1x1 conv with ``g`` groups costs ``1/g`` of a dense one, but stacking grouped convs keeps each
group's information inside that group. Channel shuffle fixes that for free: view the channels as
a ``g x (C/g)`` grid, transpose it and flatten, so the next grouped conv sees channels from every
group. It is a fixed permutation; shuffling by ``g`` and then by ``C/g`` undoes it.
"""
from __future__ import annotations

import torch
from torch import nn

from convzoo.checks import check_channels, check_choice, check_divisible, check_positive

from ..registry import register_block
from .conv import ConvNormAct, LayerSpec, make_act


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Permute channels so output channel ``j`` is input channel ``(j % g) * (C / g) + j // g``."""
    n, c, h, w = x.shape
    check_positive("groups", groups)
    if c % groups:
        raise ValueError(f"channel_shuffle: groups={groups} does not divide the {c} input channels")
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        # Channels-last input: shuffle the last axis of its NHWC view, so the output stays
        # channels_last. (The NCHW recipe below would hand the next conv an NCHW copy, and the
        # depthwise and grouped convs around a shuffle run much slower in NCHW on CPUs.)
        x = x.permute(0, 2, 3, 1).reshape(n, h, w, groups, c // groups)  # (N, H, W, g, C/g)
        return x.transpose(3, 4).reshape(n, h, w, c).permute(0, 3, 1, 2)  # (N, C, H, W), NHWC in memory
    x = x.reshape(n, groups, c // groups, h, w)  # (N, g, C/g, H, W): row r holds group r
    x = x.transpose(1, 2)  # (N, C/g, g, H, W): now each row takes one channel from every group
    return x.reshape(n, c, h, w)


def concat_shuffle(parts: list[torch.Tensor]) -> torch.Tensor:
    """``channel_shuffle(torch.cat(parts, 1), len(parts))`` for parts of equal width, in one copy.

    Shuffling a concatenation of ``g`` equal parts interleaves them: output channel ``i g + k``
    is channel ``i`` of part ``k``. Stacking the parts on a new axis after the channels and
    flattening writes exactly that, so the concatenation and the shuffle cost one pass over the
    data instead of two (ShuffleNet v2 pays this in every unit). Keeps channels_last.
    """
    n, c, h, w = parts[0].shape
    if any(p.shape != parts[0].shape for p in parts):
        raise ValueError(f"concat_shuffle needs parts of one shape, got {[tuple(p.shape) for p in parts]}")
    # Channels innermost in memory (channels_last, or a channel slice of it such as a unit's
    # ``x.chunk(2, 1)`` half): interleave along the last axis of the NHWC view, so the output stays
    # channels_last like the convs around it.
    if c > 1 and all(p.stride(1) == 1 for p in parts):
        out = torch.stack([p.permute(0, 2, 3, 1) for p in parts], dim=4)  # (N, H, W, C, g)
        return out.reshape(n, h, w, c * len(parts)).permute(0, 3, 1, 2)  # (N, g C, H, W), NHWC in memory
    return torch.stack(parts, dim=2).reshape(n, c * len(parts), h, w)  # (N, C, g, H, W) -> (N, g C, H, W)


class ChannelShuffle(nn.Module):
    """Module form of ``channel_shuffle``: a fixed permutation, y[:, j] = x[:, (j % g) C/g + j // g]."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        check_positive("groups", groups)
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return channel_shuffle(x, self.groups)

    def extra_repr(self) -> str:
        return f"groups={self.groups}"


@register_block("channel_shuffle")
class ChannelShuffleBlock(ChannelShuffle):
    """Channel shuffle as a spec block: y[:, j] = x[:, (j % g) C/g + j // g], same shape, no weights.

    Put it between two grouped convs (``{block: conv, groups: g}``) so the second one reads
    channels from every group of the first: without it, a stack of grouped convs is ``g``
    independent narrow paths (Zhang et al. 2018, sec. 3.1, Fig. 1). Keeps the channels
    (``out_channels`` must be None or ``in_channels``) and the size (``stride`` must be 1).
    """

    def __init__(self, in_channels: int, out_channels: int | None = None, *, groups: int,
                 stride: int = 1) -> None:
        super().__init__(groups)
        check_positive("in_channels", in_channels)
        if out_channels is not None and out_channels != in_channels:
            raise ValueError(f"channel shuffle keeps the channels: out_channels should be None or "
                             f"{in_channels} (in_channels), got {out_channels}")
        check_choice("stride", stride, (1,))
        check_divisible("in_channels", in_channels, "groups", groups)
        self.in_channels = self.out_channels = in_channels
        self.stride = stride


@register_block("shuffle_v1")
class ShuffleUnit(nn.Module):
    """y = relu(x + branch(x)) at stride 1, relu(concat[avgpool3x3/2(x), branch(x)]) at stride 2.

    ShuffleNet v1 unit (Zhang et al. 2018), ``branch``: 1x1 group conv (``groups``, norm, act)
    -> channel shuffle -> 3x3 depthwise (``stride``, norm, no act) -> 1x1 group conv (norm, no
    act). At stride 1 the input is added (so ``in_channels == out_channels``). At stride 2 the
    input is average-pooled (3x3, stride 2, padding 1) and concatenated in front of the branch,
    which therefore outputs ``out_channels - in_channels`` channels: widening costs no weights.

    The bottleneck width is ``out_channels * bottleneck_ratio`` (1/4 in the paper), taken from
    the unit's output even for the concat unit. ``first_group_conv=False`` makes the first 1x1
    conv dense: the paper does so in the first unit of stage 2, whose input (24 channels) is too
    narrow to split. The shuffle is kept there too (a harmless fixed permutation).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        stride: int = 1,
        groups: int = 3,
        bottleneck_ratio: float = 0.25,
        first_group_conv: bool = True,
        norm_layer: LayerSpec = "bn",
        act_layer: LayerSpec = "relu",
    ) -> None:
        super().__init__()
        check_channels(in_channels, out_channels)
        check_choice("stride", stride, (1, 2))
        check_positive("groups", groups)
        if not bottleneck_ratio > 0:
            raise ValueError(f"bottleneck_ratio should be > 0, got {bottleneck_ratio}")
        if stride == 1 and in_channels != out_channels:
            raise ValueError(f"ShuffleUnit at stride 1 adds its input, so in_channels ({in_channels}) "
                             f"should equal out_channels ({out_channels}); use stride=2 to widen")
        branch_channels = out_channels if stride == 1 else out_channels - in_channels
        if branch_channels < 1:
            raise ValueError(f"ShuffleUnit at stride 2 concatenates its input, so out_channels "
                             f"({out_channels}) should be larger than in_channels ({in_channels})")
        mid_channels = int(out_channels * bottleneck_ratio)
        if mid_channels < 1:
            raise ValueError(f"bottleneck width int(out_channels * bottleneck_ratio) = "
                             f"int({out_channels} * {bottleneck_ratio}) should be >= 1")
        first_groups = groups if first_group_conv else 1
        check_divisible("in_channels", in_channels, "groups", first_groups)
        check_divisible(f"bottleneck width int({out_channels} * {bottleneck_ratio})", mid_channels,
                        "groups", groups)
        check_divisible("branch output channels" + ("" if stride == 1 else " (out_channels - in_channels)"),
                        branch_channels, "groups", groups)
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.groups, self.mid_channels = groups, mid_channels

        self.compress = ConvNormAct(in_channels, mid_channels, 1, groups=first_groups,
                                    norm_layer=norm_layer, act_layer=act_layer)
        self.shuffle = ChannelShuffle(groups)
        self.depthwise = ConvNormAct(mid_channels, mid_channels, 3, stride=stride, groups=mid_channels,
                                     norm_layer=norm_layer, act_layer=None)
        self.expand = ConvNormAct(mid_channels, branch_channels, 1, groups=groups,
                                  norm_layer=norm_layer, act_layer=None)
        self.shortcut = nn.AvgPool2d(3, stride=2, padding=1) if stride == 2 else nn.Identity()
        self.act = make_act(act_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.shuffle(self.compress(x))  # (N, C_mid, H, W), groups interleaved
        out = self.depthwise(out)  # (N, C_mid, H/s, W/s)
        out = self.expand(out)  # (N, C_branch, H/s, W/s)
        if self.stride == 1:
            return self.act(x + out)  # (N, C_out, H, W)
        return self.act(torch.cat([self.shortcut(x), out], dim=1))  # (N, C_in + C_branch, H/2, W/2)


@register_block("shuffle_v2")
class ShuffleV2Unit(nn.Module):
    """y = shuffle2(concat[x_left, branch(x_right)]) at stride 1, shuffle2(concat[left(x), branch(x)]) at stride 2.

    ShuffleNet v2 unit (Ma et al. 2018). At stride 1 the input is split in half: the left half
    passes through untouched (feature reuse, no element-wise add), the right half goes through
    1x1 conv-norm-act -> 3x3 depthwise-norm -> 1x1 conv-norm-act at constant width. At stride 2
    both branches read the whole input: left is 3x3 depthwise (stride 2)-norm -> 1x1
    conv-norm-act, right is the same branch as before with a stride-2 depthwise; each gives
    ``out_channels / 2`` channels. Either way the halves are concatenated and shuffled with 2
    groups so the next unit's split mixes both. ``out_channels`` must be even; stride 1 needs
    ``in_channels == out_channels``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        stride: int = 1,
        norm_layer: LayerSpec = "bn",
        act_layer: LayerSpec = "relu",
    ) -> None:
        super().__init__()
        check_channels(in_channels, out_channels)
        check_choice("stride", stride, (1, 2))
        if out_channels % 2:
            raise ValueError(f"ShuffleV2Unit splits its output into two halves, so out_channels "
                             f"should be even, got {out_channels}")
        if stride == 1 and in_channels != out_channels:
            raise ValueError(f"ShuffleV2Unit at stride 1 passes half its input through, so "
                             f"in_channels ({in_channels}) should equal out_channels ({out_channels})")
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        half = out_channels // 2
        branch_in = half if stride == 1 else in_channels

        if stride == 2:
            self.left = nn.Sequential(
                ConvNormAct(in_channels, in_channels, 3, stride=2, groups=in_channels,
                            norm_layer=norm_layer, act_layer=None),
                ConvNormAct(in_channels, half, 1, norm_layer=norm_layer, act_layer=act_layer),
            )
        else:
            self.left = nn.Identity()
        self.right = nn.Sequential(
            ConvNormAct(branch_in, half, 1, norm_layer=norm_layer, act_layer=act_layer),
            ConvNormAct(half, half, 3, stride=stride, groups=half, norm_layer=norm_layer, act_layer=None),
            ConvNormAct(half, half, 1, norm_layer=norm_layer, act_layer=act_layer),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            left, right = x.chunk(2, dim=1)  # 2 x (N, C/2, H, W)
            parts = [left, self.right(right)]
        else:
            parts = [self.left(x), self.right(x)]  # 2 x (N, C_out/2, H/2, W/2)
        return concat_shuffle(parts)  # = channel_shuffle(torch.cat(parts, 1), 2) in one copy, not two
