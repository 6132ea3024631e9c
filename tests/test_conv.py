"""ConvNormAct, NormAct and the norm/activation factories."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from convzoo.models.layers.conv import ConvNormAct, NormAct, make_act, make_norm


@pytest.mark.parametrize("kernel, dilation, stride, size", [(3, 1, 1, 9), (5, 1, 2, 9), (3, 2, 1, 8), (7, 3, 2, 17)])
def test_same_padding_keeps_size_at_stride_one(kernel, dilation, stride, size):
    layer = ConvNormAct(2, 4, kernel, stride=stride, dilation=dilation)
    assert layer.conv.padding == ((kernel - 1) // 2 * dilation,) * 2
    assert layer(torch.randn(1, 2, size, size)).shape[-1] == (size + stride - 1) // stride


def test_bias_only_without_norm_and_names_or_classes_for_layers():
    assert ConvNormAct(2, 4).conv.bias is None
    assert ConvNormAct(2, 4, norm_layer="none").conv.bias is not None
    assert ConvNormAct(2, 4, norm_layer=None, bias=False).conv.bias is None
    layer = ConvNormAct(2, 64, norm_layer="gn", act_layer=nn.SiLU)
    assert isinstance(layer.norm, nn.GroupNorm) and layer.norm.num_groups == 32 and isinstance(layer.act, nn.SiLU)
    assert make_norm("gn", 24).num_groups == 24  # fewer channels than 32 groups: largest divisor
    assert make_norm("gn", 40).num_groups == 20
    assert isinstance(make_act("relu6"), nn.ReLU6) and isinstance(make_act("gelu"), nn.GELU)
    assert isinstance(make_act(None), nn.Identity) and isinstance(make_norm("none", 3), nn.Identity)


@pytest.mark.parametrize("make, message", [
    (lambda: ConvNormAct(4, 6, groups=4), r"groups=4 does not divide out_channels=6"),
    (lambda: ConvNormAct(4, 8, stride=0), r"stride should be an integer >= 1, got 0"),
    (lambda: ConvNormAct(4, 8, kernel_size=4), r"'same' padding needs an odd kernel_size, got 4"),
    (lambda: ConvNormAct(4, 8, norm_layer="batch"), r"unknown norm_layer 'batch'; expected one of: .*bn"),
    (lambda: ConvNormAct(4, 8, act_layer="swish"), r"unknown act_layer 'swish'; expected one of: .*silu"),
    (lambda: ConvNormAct(0, 8), r"in_channels should be an integer >= 1, got 0"),
    (lambda: NormAct(8, 16), r"NormAct keeps the channel count: out_channels should be 8 or None, got 16"),
])
def test_bad_arguments_name_the_value_and_what_is_valid(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_even_kernel_with_explicit_padding_is_allowed():
    layer = ConvNormAct(2, 4, 4, stride=2, padding=1)
    assert layer(torch.randn(1, 2, 8, 8)).shape == (1, 4, 4, 4)
