"""Factorised convs: cost ratio, closed-form parameter counts, plain-mode equivalences, shortcuts, errors."""
from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from convzoo.models.layers.conv import ConvNormAct
from convzoo.models.layers.separable import (DepthwiseSeparableConv, FlattenedConv, InvertedResidual,
                                     SpatiallySeparableConv)
from convzoo.models.registry import get_block

FAST = settings(max_examples=25, deadline=None)


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def conv_macs(module: nn.Module, x: torch.Tensor) -> int:
    """MACs per sample of every Conv2d in ``module``, from its weight shape and actual output size."""
    total = 0

    def hook(conv, _inputs, out):
        nonlocal total
        # Each output element is a dot product over weight.shape[1:] = (C_in / groups, kh, kw).
        total += out[0].numel() * math.prod(conv.weight.shape[1:])

    handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        module(x)
    for h in handles:
        h.remove()
    return total


def assert_all_grads(module: nn.Module, x: torch.Tensor) -> None:
    module(x).square().mean().backward()
    for name, p in module.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_registered():
    assert get_block("dwsep") is DepthwiseSeparableConv
    assert get_block("inverted_residual") is InvertedResidual
    assert get_block("spatial_sep") is SpatiallySeparableConv
    assert get_block("flattened") is FlattenedConv


# --- DepthwiseSeparableConv -------------------------------------------------------------------

@FAST
@given(cin=st.integers(1, 8), cout=st.integers(1, 8), k=st.sampled_from([1, 3, 5]),
       stride=st.integers(1, 2), size=st.integers(5, 9))
def test_dwsep_cost_ratio_is_exact(cin, cout, k, stride, size):
    x = torch.randn(1, cin, size, size)
    sep = DepthwiseSeparableConv(cin, cout, kernel_size=k, stride=stride)
    std = ConvNormAct(cin, cout, k, stride=stride)
    assert sep(x).shape == std(x).shape
    h = w = std(x).shape[-1]
    sep_macs, std_macs = conv_macs(sep, x), conv_macs(std, x)
    assert sep_macs == h * w * k * k * cin + h * w * cin * cout
    assert std_macs == h * w * k * k * cin * cout
    assert Fraction(sep_macs, std_macs) == Fraction(1, cout) + Fraction(1, k * k)


def test_dwsep_structure_and_params():
    block = DepthwiseSeparableConv(6, 10, kernel_size=5, stride=2, dilation=1)
    assert block.depthwise.conv.groups == 6 and block.depthwise.conv.kernel_size == (5, 5)
    assert block.depthwise.conv.stride == (2, 2) and block.pointwise.conv.kernel_size == (1, 1)
    assert n_params(block) == 25 * 6 + 2 * 6 + 6 * 10 + 2 * 10
    plain = DepthwiseSeparableConv(6, 10, norm_layer=None, act_layer=None)
    assert n_params(plain) == 9 * 6 + 6 + 6 * 10 + 10  # conv biases instead of BN
    assert block(torch.randn(2, 6, 9, 9)).shape == (2, 10, 5, 5)


def test_dwsep_dilation_keeps_size():
    block = DepthwiseSeparableConv(3, 4, dilation=2)
    assert block.depthwise.conv.padding == (2, 2)
    assert block(torch.randn(1, 3, 8, 8)).shape == (1, 4, 8, 8)


# --- InvertedResidual -------------------------------------------------------------------------

@pytest.mark.parametrize("cin,cout,stride,expect", [(8, 8, 1, True), (8, 16, 1, False),
                                                    (8, 8, 2, False), (8, 16, 2, False)])
def test_inverted_residual_shortcut_only_when_shapes_allow(cin, cout, stride, expect):
    block = InvertedResidual(cin, cout, stride=stride, expansion=2).eval()
    assert block.use_residual is expect
    x = torch.randn(2, cin, 6, 6)
    path = block.project(block.depthwise(block.expand(x)))
    y = block(x)
    assert y.shape == (2, cout, 6 // stride, 6 // stride)
    torch.testing.assert_close(y, x + path if expect else path)


@pytest.mark.parametrize("t", [1, 6])
def test_inverted_residual_params(t):
    cin, cout, k = 4, 6, 3
    block = InvertedResidual(cin, cout, expansion=t)
    hid = cin * t
    expand = 0 if t == 1 else cin * hid + 2 * hid
    assert n_params(block) == expand + k * k * hid + 2 * hid + hid * cout + 2 * cout
    assert isinstance(block.expand, nn.Identity) is (t == 1)
    # Linear bottleneck: the projection has a norm but no activation; the others use ReLU6.
    assert isinstance(block.project.act, nn.Identity) and isinstance(block.depthwise.act, nn.ReLU6)


@pytest.mark.parametrize("cin,cout,stride,t", [(4, 4, 1, 6), (4, 8, 2, 6), (8, 8, 1, 1)])
def test_inverted_residual_matches_torchvision(cin, cout, stride, t):
    tv = pytest.importorskip("torchvision.models.mobilenetv2")
    ours = InvertedResidual(cin, cout, stride=stride, expansion=t).eval()
    ref = tv.InvertedResidual(cin, cout, stride, t).eval()
    ours_sd, ref_sd = ours.state_dict(), ref.state_dict()
    assert [v.shape for v in ours_sd.values()] == [v.shape for v in ref_sd.values()]
    ref.load_state_dict(dict(zip(ref_sd, (torch.randn_like(v.float()).abs().to(v.dtype) + 0.1
                                           for v in ref_sd.values()))))
    ours.load_state_dict(dict(zip(ours_sd, ref.state_dict().values())))
    x = torch.randn(2, cin, 7, 7)
    torch.testing.assert_close(ours(x), ref(x))


# --- SpatiallySeparableConv -------------------------------------------------------------------

@FAST
@given(k=st.sampled_from([1, 3, 5, 7]), stride=st.integers(1, 3), h=st.integers(7, 12), w=st.integers(7, 12))
def test_spatial_sep_plain_is_outer_product_kernel(k, stride, h, w):
    block = SpatiallySeparableConv(1, 1, kernel_size=k, stride=stride, mid_channels=1,
                                   norm_layer=None, act_layer=None)
    assert block.vertical.conv.bias is None  # plain mode: only the second factor has a bias
    col = block.vertical.conv.weight.reshape(k)  # (k,) along H
    row = block.horizontal.conv.weight.reshape(k)  # (k,) along W
    kernel = torch.outer(col, row).reshape(1, 1, k, k)
    x = torch.randn(2, 1, h, w)
    ref = F.conv2d(x, kernel, block.horizontal.conv.bias, stride=stride, padding=k // 2)
    torch.testing.assert_close(block(x), ref)


def test_spatial_sep_plain_general_channels_is_sum_of_outer_products():
    cin, mid, cout, k = 3, 2, 4, 5
    block = SpatiallySeparableConv(cin, cout, kernel_size=k, stride=2, mid_channels=mid,
                                   norm_layer=None, act_layer=None)
    col = block.vertical.conv.weight[..., 0]  # (mid, cin, k)
    row = block.horizontal.conv.weight[:, :, 0, :]  # (cout, mid, k)
    kernel = torch.einsum("mia,omb->oiab", col, row)  # rank <= mid in (a, b) for each (o, i)
    x = torch.randn(2, cin, 11, 9)
    ref = F.conv2d(x, kernel, block.horizontal.conv.bias, stride=2, padding=k // 2)
    torch.testing.assert_close(block(x), ref)


@pytest.mark.parametrize("norm", ["bn", None])
def test_spatial_sep_params(norm):
    cin, cout, mid, k = 3, 5, 4, 7
    block = SpatiallySeparableConv(cin, cout, kernel_size=k, mid_channels=mid, norm_layer=norm,
                                   act_layer=None)
    if norm:
        expected = k * cin * mid + 2 * mid + k * mid * cout + 2 * cout
    else:
        expected = k * cin * mid + k * mid * cout + cout  # first factor has no bias
    assert n_params(block) == expected
    assert SpatiallySeparableConv(cin, cout).mid_channels == cout


def test_spatial_sep_stride_axes():
    block = SpatiallySeparableConv(2, 3, stride=2)
    assert block.vertical.conv.stride == (2, 1) and block.horizontal.conv.stride == (1, 2)
    assert block.vertical.conv.kernel_size == (3, 1) and block.horizontal.conv.kernel_size == (1, 3)
    assert block(torch.randn(1, 2, 9, 6)).shape == (1, 3, 5, 3)


# --- FlattenedConv ----------------------------------------------------------------------------

@pytest.mark.parametrize("stride", [1, 2])
def test_flattened_plain_is_rank1_per_filter(stride):
    cin, cout, k = 3, 4, 3
    block = FlattenedConv(cin, cout, kernel_size=k, stride=stride, norm_layer=None, act_layer=None)
    lat = block.lateral.conv.weight[:, :, 0, 0]  # (cout, cin)
    ver = block.vertical.conv.weight[:, 0, :, 0]  # (cout, k)
    hor = block.horizontal.conv.weight[:, 0, 0, :]  # (cout, k)
    kernel = torch.einsum("oi,oa,ob->oiab", lat, ver, hor)
    x = torch.randn(2, cin, 8, 7)
    ref = F.conv2d(x, kernel, block.horizontal.conv.bias, stride=stride, padding=k // 2)
    torch.testing.assert_close(block(x), ref)


@pytest.mark.parametrize("norm_between", [False, True])
def test_flattened_params(norm_between):
    cin, cout, k = 5, 6, 3
    block = FlattenedConv(cin, cout, kernel_size=k, norm_between=norm_between)
    bn = 2 * cout
    expected = cin * cout + 2 * k * cout + (3 * bn if norm_between else bn)
    assert n_params(block) == expected
    plain = FlattenedConv(cin, cout, kernel_size=k, norm_layer=None, act_layer=None)
    assert n_params(plain) == cin * cout + 2 * k * cout + cout
    # Default: norm and act only after the last conv.
    assert isinstance(block.horizontal.norm, nn.BatchNorm2d)
    assert isinstance(block.lateral.norm, nn.BatchNorm2d) is norm_between


def test_flattened_structure():
    block = FlattenedConv(2, 4, kernel_size=5, stride=2)
    assert block.vertical.conv.groups == 4 and block.horizontal.conv.groups == 4
    assert block.vertical.conv.kernel_size == (5, 1) and block.horizontal.conv.kernel_size == (1, 5)
    assert block(torch.randn(1, 2, 9, 8)).shape == (1, 4, 5, 4)


# --- common -----------------------------------------------------------------------------------

BLOCKS = [
    lambda: DepthwiseSeparableConv(3, 5, stride=2),
    lambda: InvertedResidual(4, 4, expansion=3),
    lambda: InvertedResidual(4, 6, stride=2, expansion=1),
    lambda: SpatiallySeparableConv(3, 5, kernel_size=5, mid_channels=2),
    lambda: SpatiallySeparableConv(1, 1, norm_layer=None, act_layer=None),
    lambda: FlattenedConv(3, 5, stride=2),
    lambda: FlattenedConv(3, 5, norm_between=True),
]


@pytest.mark.parametrize("make", BLOCKS)
def test_every_parameter_gets_a_gradient(make):
    block = make()
    assert_all_grads(block, torch.randn(2, block.in_channels, 6, 6))


@pytest.mark.parametrize("cls", [DepthwiseSeparableConv, SpatiallySeparableConv, FlattenedConv])
def test_generic_calling_form(cls):
    block = cls(3, 8, stride=2)
    assert (block.in_channels, block.out_channels, block.stride) == (3, 8, 2)


@pytest.mark.parametrize("make,match", [
    (lambda: InvertedResidual(4, 4, stride=3), r"stride should be one of \[1, 2\], got 3"),
    (lambda: InvertedResidual(4, 4, expansion=0), "expansion"),
    (lambda: DepthwiseSeparableConv(4, 4, stride=0), "stride"),
    (lambda: DepthwiseSeparableConv(0, 4), "in_channels"),
    (lambda: SpatiallySeparableConv(4, 4, mid_channels=0), "mid_channels"),
    (lambda: SpatiallySeparableConv(4, 4, kernel_size=4), "odd kernel_size"),
    (lambda: FlattenedConv(4, 0), "out_channels"),
    (lambda: FlattenedConv(4, 4, act_layer="nope"), "act_layer"),
])
def test_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()
