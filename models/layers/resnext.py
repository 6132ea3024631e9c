"""ResNeXt block (Xie et al. 2017, "Aggregated Residual Transformations for Deep Neural Networks").

A ResNeXt block sums ``C`` (the cardinality) parallel paths of the same shape,
``y = act(x + sum_i T_i(x))``, each path ``1x1 -> 3x3 -> 1x1`` with ``d`` (the bottleneck width)
channels inside. The paper's form (c) computes all of them at once: one 1x1 conv to
``D = C * d`` channels, one 3x3 conv with ``groups = C``, one 1x1 back to ``out_channels``, so the
block is a ``Bottleneck`` with a grouped 3x3 and a wider inside.

Naming a network "ResNeXt-29 (C x d)": in both the ImageNet and CIFAR models the inside width
doubles with every stage, so a model spec sets ``bottleneck_width`` (or ``width``) per stage.
ResNeXt-29 2x64d on CIFAR: stages of 3 blocks with ``out_channels`` 256 / 512 / 1024 and
``cardinality: 2`` with ``bottleneck_width`` 64 / 128 / 256 (inside widths D = 128 / 256 / 512).
"""
from __future__ import annotations

from convzoo.checks import check_divisible, check_positive

from ..registry import register_block
from .conv import LayerSpec
from .residual import Bottleneck


@register_block("resnext")
class ResNeXtBlock(Bottleneck):
    """``y = act(BN(conv1x1(act(BN(conv3x3_s,groups=C(act(BN(conv1x1(x)))))))) + shortcut(x))``
    with ``D = cardinality * bottleneck_width`` channels inside (Xie et al. 2017, form (c)).

    ``width`` sets ``D`` directly (it must be divisible by ``cardinality``; give it or
    ``bottleneck_width``, default 4, not both). A net's ``width_mult`` scales ``width`` only, so
    model specs give ``width``. The shortcut is the identity, or a 1x1 conv + norm projection
    (option "B") when the shape changes.
    """

    def __init__(self, in_channels: int, out_channels: int, *, stride: int = 1,
                 cardinality: int = 32, bottleneck_width: int | None = None, width: int | None = None,
                 dilation: int = 1, shortcut: str = "B", zero_init_residual: bool = False,
                 norm_layer: LayerSpec = "bn", act_layer: LayerSpec = "relu") -> None:
        check_positive("cardinality", cardinality)
        if width is not None and bottleneck_width is not None:
            raise ValueError(f"give width ({width}) or bottleneck_width ({bottleneck_width}), not both")
        if width is None:
            bottleneck_width = 4 if bottleneck_width is None else bottleneck_width
            check_positive("bottleneck_width", bottleneck_width)
            width = cardinality * bottleneck_width
        check_positive("width", width)
        check_divisible("width", width, "cardinality", cardinality)
        super().__init__(in_channels, out_channels, stride=stride, dilation=dilation, width=width,
                         groups=cardinality, shortcut=shortcut,
                         zero_init_residual=zero_init_residual, norm_layer=norm_layer,
                         act_layer=act_layer)
        self.cardinality = cardinality
        self.bottleneck_width = width // cardinality
