"""The VGG-style group of the fast CIFAR trainers: conv -> max-pool -> norm -> act -> conv -> norm -> act.

Page (2018, "How to train your ResNet", the DAWNBench ResNet-9) and Jordan (2024, airbench) build
their networks from this group. Pooling right after the first conv, before its norm and
activation, runs the norm and activation on 4x fewer pixels; for a max-pool it changes the
result only where the norm's scale is negative. Cost per image: ``H W 9 C_in C_out`` for the
first conv plus ``(H/s)(W/s) 9 C_out^2`` for the second (``s`` = pool stride).
"""
from __future__ import annotations

import torch
from torch import nn

from convzoo.checks import check_channels, check_positive

from ..registry import register_block
from .conv import LayerSpec, make_act, make_norm


@register_block("conv_pool")
class ConvPoolBlock(nn.Module):
    """Two 3x3 convs with a ``stride`` x ``stride`` max-pool after the first (none at stride 1).

    airbench's choices (Jordan 2024), each a switch: ``identity_init`` starts each conv as a
    (partial) identity, the first ``C_in`` filters Dirac deltas, an implicit residual path;
    ``norm_momentum`` sets BatchNorm's running-statistics momentum (PyTorch convention, new-value
    weight; airbench uses 0.4 so short runs' statistics keep up); ``learn_norm_scale=False`` keeps
    BatchNorm's scale at 1 and trains only its shift.
    """

    def __init__(self, in_channels: int, out_channels: int, *, stride: int = 2,
                 norm_layer: LayerSpec = "bn", act_layer: LayerSpec = "gelu", identity_init: bool = False,
                 norm_momentum: float | None = None, learn_norm_scale: bool = True) -> None:
        super().__init__()
        check_channels(in_channels, out_channels)
        check_positive("stride", stride)
        if norm_momentum is not None and not 0.0 < norm_momentum <= 1.0:
            raise ValueError(f"norm_momentum should be in (0, 1] (the new batch's weight), got {norm_momentum}")
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.identity_init = identity_init
        self.norm1, self.act1 = make_norm(norm_layer, out_channels), make_act(act_layer)
        self.norm2, self.act2 = make_norm(norm_layer, out_channels), make_act(act_layer)
        for norm in (self.norm1, self.norm2):
            if isinstance(norm, nn.modules.batchnorm._BatchNorm):
                if norm_momentum is not None:
                    norm.momentum = norm_momentum
                if not learn_norm_scale:
                    norm.weight.requires_grad_(False)
        bias = isinstance(self.norm1, nn.Identity)  # a norm's shift makes a conv bias redundant
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=bias)
        self.pool = nn.MaxPool2d(stride) if stride > 1 else nn.Identity()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=bias)

    @torch.no_grad()
    def init_weights(self) -> None:
        if self.identity_init:
            for conv in (self.conv1, self.conv2):
                nn.init.dirac_(conv.weight[:conv.in_channels])  # filter i passes input channel i

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.norm1(self.pool(self.conv1(x))))  # (N, C_out, H / s, W / s)
        return self.act2(self.norm2(self.conv2(x)))          # (N, C_out, H / s, W / s)
