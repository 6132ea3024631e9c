"""The Inception module of GoogLeNet (Szegedy et al., "Going deeper with convolutions", 2015).

Four parallel branches look at the same input at different scales and their outputs are
stacked along the channel axis. The 1x1 "reduce" convs in front of the 3x3 and 5x5 convs (and
behind the pool) are what make the module affordable: they shrink the channel count before the
expensive spatial convs, which cost ``H W K^2 C_in C_out`` MACs each.
"""
from __future__ import annotations

import torch
from torch import nn

from convzoo.checks import check_positive

from ..registry import register_block
from .conv import ConvNormAct, LayerSpec


@register_block("inception")
class InceptionBlock(nn.Module):
    """y = concat[1x1(x), 3x3(1x1(x)), 5x5(1x1(x)), 1x1(maxpool3x3(x))]; C_out = ch1x1 + ch3x3 + ch5x5 + pool_proj.

    Branches, concatenated in this order along channels:

    1. ``branch1x1``: 1x1 conv, ``in_channels -> ch1x1``.
    2. ``branch3x3``: 1x1 ``in_channels -> ch3x3_reduce``, then 3x3 ``-> ch3x3``.
    3. ``branch5x5``: 1x1 ``in_channels -> ch5x5_reduce``, then 5x5 ``-> ch5x5``. With
       ``use_double_3x3=True`` the 5x5 becomes two stacked 3x3 convs (``-> ch5x5 -> ch5x5``),
       the factorisation of Inception v2 / BN-Inception (Ioffe & Szegedy 2015; Szegedy et al.
       2016): same 5x5 receptive field for ``18 c^2`` instead of ``25 c^2`` weights, with an
       extra non-linearity. Note torchvision's GoogLeNet uses neither: its branch has a single
       3x3 (a known bug it keeps for its pretrained weights, pytorch/vision#906).
    4. ``branch_pool``: 3x3 max-pool at stride 1 (padding 1), then 1x1 ``-> pool_proj``.

    Every conv is conv -> norm -> act (GoogLeNet v1 had no norm; pass ``norm_layer=None``).
    The module never changes the spatial size: ``stride`` must be 1, because GoogLeNet
    downsamples between modules with a separate 3x3 stride-2 max-pool. ``out_channels`` is
    implied by the branch widths; it is accepted (the generic network passes it) and must equal
    their sum.
    """

    # Branch widths scale with the network's width multiplier, like out_channels elsewhere.
    channel_args = ("ch1x1", "ch3x3_reduce", "ch3x3", "ch5x5_reduce", "ch5x5", "pool_proj")

    def __init__(
        self,
        in_channels: int,
        out_channels: int | None = None,
        *,
        stride: int = 1,
        ch1x1: int,
        ch3x3_reduce: int,
        ch3x3: int,
        ch5x5_reduce: int,
        ch5x5: int,
        pool_proj: int,
        use_double_3x3: bool = False,
        norm_layer: LayerSpec = "bn",
        act_layer: LayerSpec = "relu",
    ) -> None:
        super().__init__()
        widths = dict(in_channels=in_channels, ch1x1=ch1x1, ch3x3_reduce=ch3x3_reduce, ch3x3=ch3x3,
                      ch5x5_reduce=ch5x5_reduce, ch5x5=ch5x5, pool_proj=pool_proj)
        for name, value in widths.items():
            check_positive(name, value)
        if stride != 1:
            raise ValueError(f"InceptionBlock stride should be 1 (GoogLeNet downsamples between "
                             f"modules with a stride-2 max-pool), got {stride}")
        total = ch1x1 + ch3x3 + ch5x5 + pool_proj
        if out_channels is not None and out_channels != total:
            raise ValueError(
                f"InceptionBlock out_channels={out_channels} does not match the branch widths: "
                f"ch1x1 + ch3x3 + ch5x5 + pool_proj = {ch1x1} + {ch3x3} + {ch5x5} + {pool_proj} = {total}")
        self.in_channels = in_channels
        self.out_channels = total
        self.stride = stride
        self.use_double_3x3 = use_double_3x3

        def conv(cin: int, cout: int, k: int) -> ConvNormAct:
            return ConvNormAct(cin, cout, k, norm_layer=norm_layer, act_layer=act_layer)

        self.branch1x1 = conv(in_channels, ch1x1, 1)
        self.branch3x3 = nn.Sequential(conv(in_channels, ch3x3_reduce, 1), conv(ch3x3_reduce, ch3x3, 3))
        if use_double_3x3:
            self.branch5x5 = nn.Sequential(conv(in_channels, ch5x5_reduce, 1),
                                           conv(ch5x5_reduce, ch5x5, 3), conv(ch5x5, ch5x5, 3))
        else:
            self.branch5x5 = nn.Sequential(conv(in_channels, ch5x5_reduce, 1), conv(ch5x5_reduce, ch5x5, 5))
        self.branch_pool = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1), conv(in_channels, pool_proj, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (N, C_in, H, W); every branch keeps H, W, so the outputs stack along channels.
        branches = (self.branch1x1, self.branch3x3, self.branch5x5, self.branch_pool)
        return torch.cat([branch(x) for branch in branches], dim=1)  # (N, C_out, H, W)
