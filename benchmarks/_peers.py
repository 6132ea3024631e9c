"""Plain-PyTorch peers of convzoo's depthwise models: kuangliu's CIFAR ShuffleNetV2 and MobileNetV2.

benchmarks/peers.py times convzoo's ``shufflenet_v2_x1_0`` and ``mobilenet_v2_x1_0`` against
these. The architectures are those of kuangliu/pytorch-cifar (MIT licence), ``models/shufflenetv2.py``
(``ShuffleNetV2(net_size=1)``) and ``models/mobilenetv2.py`` (as of commit e010fe8, which pools the
final 4x4 map; an older version pooled 2x2 and did not fit its own linear layer). The code is ours,
written in that repository's plain style on purpose: hand-written blocks in ``nn.Sequential``, the
channel shuffle as view / permute / reshape, the split as two slices, ``torch.cat``, functional
ReLUs. That plain style is the baseline a faster implementation has to beat.

Sizes at 3x32x32 (``models.complexity``), checked by tests/test_peers.py:

- ShuffleNetV2 1.0x: 1,263,854 parameters, 45.0M MACs, the same layers as ``shufflenet_v2_x1_0``.
- MobileNetV2: 2,296,922 parameters, 91.2M MACs, against ``mobilenet_v2_x1_0``'s 2,236,682 and
  88.0M. The peer adds what the paper's network (and ours) has not: a 1x1 conv + BN projection
  shortcut on each of the 4 stride-1 blocks that change width (59,152 parameters) and a 1x1
  "expansion" conv in the first block, whose expansion is 1 (1,088). It uses ReLU, ours ReLU6.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv_bn(in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1,
            groups: int = 1) -> nn.Sequential:
    """Conv (no bias: BN follows) + BN; every conv of both peers is one of these."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel_size, stride, (kernel_size - 1) // 2,
                                   groups=groups, bias=False),
                         nn.BatchNorm2d(out_channels))


def shuffle(x: torch.Tensor, groups: int = 2) -> torch.Tensor:
    """(N, g*c, H, W) -> (N, c*g, H, W): channel i of group j moves to position i*g + j."""
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).permute(0, 2, 1, 3, 4).reshape(n, c, h, w)


class ShuffleUnit(nn.Module):
    """Stride 1: half the channels pass through, the other half go 1x1 -> dw 3x3 -> 1x1; cat, shuffle."""

    def __init__(self, channels: int):
        super().__init__()
        half = channels // 2
        self.conv1 = conv_bn(half, half)
        self.conv2 = conv_bn(half, half, 3, groups=half)
        self.conv3 = conv_bn(half, half)

    def forward(self, x):
        half = x.size(1) // 2
        kept, x = x[:, :half], x[:, half:]
        x = F.relu(self.conv1(x))
        x = self.conv2(x)                  # no ReLU after the depthwise conv
        x = F.relu(self.conv3(x))
        return shuffle(torch.cat([kept, x], 1))


class ShuffleDownUnit(nn.Module):
    """Stride 2: both branches see the whole input (dw 3x3/2 -> 1x1 | 1x1 -> dw 3x3/2 -> 1x1); cat, shuffle."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        half = out_channels // 2
        self.left_dw = conv_bn(in_channels, in_channels, 3, 2, groups=in_channels)
        self.left_pw = conv_bn(in_channels, half)
        self.right_pw1 = conv_bn(in_channels, half)
        self.right_dw = conv_bn(half, half, 3, 2, groups=half)
        self.right_pw2 = conv_bn(half, half)

    def forward(self, x):
        left = F.relu(self.left_pw(self.left_dw(x)))
        right = self.right_dw(F.relu(self.right_pw1(x)))
        right = F.relu(self.right_pw2(right))
        return shuffle(torch.cat([left, right], 1))


class CifarNet(nn.Module):
    """What both peers share: a 3x3/1 conv-BN-ReLU stem, a body that leaves a 4x4 map, a 1x1
    conv-BN-ReLU to ``last`` channels, a 4x4 average pool (global on CIFAR) and a linear classifier."""

    def __init__(self, stem: int, body: nn.Sequential, body_channels: int, last: int, num_classes: int):
        super().__init__()
        self.stem = conv_bn(3, stem, 3)
        self.body = body
        self.last = conv_bn(body_channels, last)
        self.linear = nn.Linear(last, num_classes)

    def forward(self, x):                  # (N, 3, 32, 32)
        x = F.relu(self.stem(x))           # (N, stem, 32, 32)
        x = self.body(x)                   # (N, body_channels, 4, 4)
        x = F.relu(self.last(x))           # (N, last, 4, 4)
        x = F.avg_pool2d(x, 4).flatten(1)  # (N, last)
        return self.linear(x)


class PeerShuffleNetV2(CifarNet):
    """CIFAR ShuffleNetV2 1.0x: stem to 24, three stages (a down unit then 3, 7, 3 units) of
    116 / 232 / 464 channels at 16 / 8 / 4 pixels, 1x1 conv to 1024."""

    def __init__(self, num_classes: int = 10, widths=(116, 232, 464), units=(3, 7, 3), last: int = 1024):
        stages, channels = [], 24
        for width, count in zip(widths, units):
            stages.append(nn.Sequential(ShuffleDownUnit(channels, width), *(ShuffleUnit(width) for _ in range(count))))
            channels = width
        super().__init__(24, nn.Sequential(*stages), channels, last, num_classes)


class InvertedResidual(nn.Module):
    """1x1 expand -> ReLU -> dw 3x3 -> ReLU -> 1x1 project (linear). At stride 1 the input is added,
    through a 1x1 conv + BN where the width changes (the peer's own choice); at stride 2 nothing is."""

    def __init__(self, in_channels: int, out_channels: int, expansion: int, stride: int):
        super().__init__()
        hidden = expansion * in_channels
        self.stride = stride
        self.expand = conv_bn(in_channels, hidden)
        self.depthwise = conv_bn(hidden, hidden, 3, stride, groups=hidden)
        self.project = conv_bn(hidden, out_channels)
        self.shortcut = conv_bn(in_channels, out_channels) if stride == 1 and in_channels != out_channels \
            else nn.Sequential()           # empty Sequential: identity

    def forward(self, x):
        out = F.relu(self.expand(x))
        out = F.relu(self.depthwise(out))
        out = self.project(out)
        return out + self.shortcut(x) if self.stride == 1 else out


class PeerMobileNetV2(CifarNet):
    """CIFAR MobileNetV2: stem to 32, 17 inverted residual blocks (the ImageNet table with the
    stem's and the 24-channel group's stride 2 -> 1), 1x1 conv to 1280."""

    # (expansion, out channels, blocks, stride of the first), from the paper's Table 2
    GROUPS = ((1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
              (6, 320, 1, 1))

    def __init__(self, num_classes: int = 10):
        blocks, channels = [], 32
        for expansion, width, count, stride in self.GROUPS:
            for i in range(count):
                blocks.append(InvertedResidual(channels, width, expansion, stride if i == 0 else 1))
                channels = width
        super().__init__(32, nn.Sequential(*blocks), channels, 1280, num_classes)


# convzoo model -> (its peer's builder, how the peer is named in tables)
PEERS = {"shufflenet_v2_x1_0": (PeerShuffleNetV2, "kuangliu ShuffleNetV2(net_size=1)"),
         "mobilenet_v2_x1_0": (PeerMobileNetV2, "kuangliu MobileNetV2")}
