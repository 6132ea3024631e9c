"""Channel shuffle as a permutation, ShuffleNet v1 / v2 units: structure, parameter counts, errors."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from convzoo.models.layers.conv import ConvNormAct
from convzoo.models.layers.shuffle import (ChannelShuffle, ChannelShuffleBlock, ShuffleUnit, ShuffleV2Unit,
                                           channel_shuffle, concat_shuffle)
from convzoo.models.registry import get_block

FAST = settings(max_examples=40, deadline=None)


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def channel_ids(n: int, c: int, h: int, w: int) -> torch.Tensor:
    """A batch whose every value encodes its channel, so permutations are easy to read off."""
    return torch.arange(c, dtype=torch.float32).view(1, c, 1, 1).expand(n, c, h, w).contiguous()


def test_registered():
    assert get_block("shuffle_v1") is ShuffleUnit
    assert get_block("shuffle_v2") is ShuffleV2Unit
    assert get_block("channel_shuffle") is ChannelShuffleBlock


# --- channel_shuffle --------------------------------------------------------------------------

@FAST
@given(n=st.integers(1, 3), g=st.integers(1, 6), per_group=st.integers(1, 6),
       h=st.integers(1, 3), w=st.integers(1, 3))
def test_channel_shuffle_is_the_transpose_permutation(n, g, per_group, h, w):
    c = g * per_group
    x = torch.randn(n, c, h, w)
    y = channel_shuffle(x, g)
    perm = [(j % g) * per_group + j // g for j in range(c)]
    assert sorted(perm) == list(range(c))  # a permutation of the channels
    torch.testing.assert_close(y, x[:, perm], rtol=0, atol=0)
    # Only channels move: the multiset of values per (n, h, w) position is unchanged.
    torch.testing.assert_close(y.sort(dim=1).values, x.sort(dim=1).values, rtol=0, atol=0)


@FAST
@given(n=st.integers(1, 2), g=st.integers(1, 6), per_group=st.integers(1, 6))
def test_shuffle_by_g_then_c_over_g_restores(n, g, per_group):
    x = torch.randn(n, g * per_group, 2, 3)
    torch.testing.assert_close(channel_shuffle(channel_shuffle(x, g), per_group), x, rtol=0, atol=0)


@FAST
@given(g=st.integers(1, 5), per_group=st.integers(1, 5))
def test_channel_shuffle_matches_torch(g, per_group):
    x = torch.randn(2, g * per_group, 3, 2)
    torch.testing.assert_close(ChannelShuffle(g)(x), nn.ChannelShuffle(g)(x), rtol=0, atol=0)


def test_channel_shuffle_interleaves_groups():
    y = channel_shuffle(channel_ids(1, 6, 1, 1), 3)  # groups [0 1] [2 3] [4 5]
    assert y.flatten().tolist() == [0, 2, 4, 1, 3, 5]


def test_channel_shuffle_non_contiguous_input():
    x = torch.randn(2, 3, 4, 6).transpose(2, 3)  # not contiguous
    torch.testing.assert_close(channel_shuffle(x, 3), x[:, [0, 1, 2]], rtol=0, atol=0)
    x = torch.randn(2, 4, 3, 3).permute(0, 1, 3, 2)
    torch.testing.assert_close(channel_shuffle(x, 2), x[:, [0, 2, 1, 3]], rtol=0, atol=0)


@pytest.mark.parametrize("g,per_group", [(2, 3), (3, 4), (4, 4), (8, 2)])
def test_channel_shuffle_keeps_channels_last(g, per_group):
    x = torch.randn(2, g * per_group, 5, 3)
    y = channel_shuffle(x.contiguous(memory_format=torch.channels_last), g)
    assert y.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y, channel_shuffle(x, g), rtol=0, atol=0)


@pytest.mark.parametrize("g", [2, 3])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "channels_last halves"])
def test_concat_shuffle_is_shuffle_of_concat(g, layout):
    """One copy instead of two, the same tensor, and channels_last stays channels_last (also for a
    channel slice of a channels_last tensor, as ShuffleV2Unit's ``x.chunk(2, 1)`` left half)."""
    parts = [torch.randn(2, 5, 4, 3) for _ in range(g)]
    if layout != "contiguous":
        parts = [p.contiguous(memory_format=torch.channels_last) for p in parts]
    if layout == "channels_last halves":
        whole = torch.randn(2, 10, 4, 3).contiguous(memory_format=torch.channels_last)
        parts[0] = whole[:, :5]
    y = concat_shuffle(parts)
    torch.testing.assert_close(y, channel_shuffle(torch.cat(parts, 1), g), rtol=0, atol=0)
    assert y.is_contiguous(memory_format=torch.channels_last if layout != "contiguous" else torch.contiguous_format)
    with pytest.raises(ValueError, match=r"concat_shuffle needs parts of one shape"):
        concat_shuffle([parts[0], torch.randn(2, 4, 4, 3)])


@pytest.mark.parametrize("stride", [1, 2])
def test_shuffle_v2_unit_output_is_shuffled_concat(stride):
    """The unit's fused concat-shuffle gives what its maths says: shuffle2(cat[left, right])."""
    unit = ShuffleV2Unit(8, 8 if stride == 1 else 16, stride=stride).eval()
    x = torch.randn(2, 8, 6, 6)
    with torch.no_grad():
        left = x[:, :4] if stride == 1 else unit.left(x)
        right = unit.right(x[:, 4:] if stride == 1 else x)
        torch.testing.assert_close(unit(x), channel_shuffle(torch.cat([left, right], 1), 2))


def test_channel_shuffle_bad_groups():
    with pytest.raises(ValueError, match=r"groups=4 does not divide the 6"):
        channel_shuffle(torch.randn(1, 6, 2, 2), 4)
    with pytest.raises(ValueError, match="groups"):
        ChannelShuffle(0)


def grouped_stack(shuffle: bool, channels: int = 16, groups: int = 4) -> nn.Sequential:
    conv = lambda: ConvNormAct(channels, channels, 3, groups=groups, norm_layer=None)  # noqa: E731
    middle = [ChannelShuffleBlock(channels, groups=groups)] if shuffle else []
    return nn.Sequential(conv(), *middle, conv())


@pytest.mark.parametrize("shuffle", [False, True])
def test_shuffle_block_lets_stacked_grouped_convs_read_every_group(shuffle):
    """Zhang et al. 2018, Fig. 1 (a) vs (b): without a shuffle, output group k of two stacked
    grouped convs depends only on input group k; with one, on every input group (each group
    holds at least ``groups`` channels, so the shuffle hands every group one from each)."""
    torch.manual_seed(0)
    stack, groups, per_group = grouped_stack(shuffle), 4, 4
    x = torch.randn(1, 16, 5, 5, requires_grad=True)
    out = stack(x)
    for k in range(groups):
        (grad,) = torch.autograd.grad(out[:, k * per_group:(k + 1) * per_group].sum(), x, retain_graph=True)
        reads = [bool(grad[:, r * per_group:(r + 1) * per_group].abs().sum() > 0) for r in range(groups)]
        assert reads == ([True] * groups if shuffle else [r == k for r in range(groups)])


def test_shuffle_block_keeps_shape_and_rejects_what_it_cannot_do():
    block = ChannelShuffleBlock(12, 12, groups=3)
    x = torch.randn(2, 12, 4, 4)
    torch.testing.assert_close(block(x), channel_shuffle(x, 3), rtol=0, atol=0)
    assert (block.in_channels, block.out_channels, block.stride, n_params(block)) == (12, 12, 1, 0)
    with pytest.raises(ValueError, match=r"keeps the channels: out_channels should be None or 12 .*got 24"):
        ChannelShuffleBlock(12, 24, groups=3)
    with pytest.raises(ValueError, match=r"groups=5 does not divide in_channels=12"):
        ChannelShuffleBlock(12, groups=5)
    with pytest.raises(ValueError, match="stride"):
        ChannelShuffleBlock(12, groups=3, stride=2)


# --- ShuffleUnit (v1) -------------------------------------------------------------------------

def v1_params(cin, cout, stride, g, first_group_conv=True):
    mid = cout // 4
    branch = cout if stride == 1 else cout - cin
    g1 = g if first_group_conv else 1
    return (cin // g1 * mid + 2 * mid  # grouped 1x1 + BN
            + 9 * mid + 2 * mid  # depthwise 3x3 + BN
            + mid // g * branch + 2 * branch)  # grouped 1x1 + BN


@pytest.mark.parametrize("cin,cout,stride,g,first", [
    (24, 24, 1, 3, True), (12, 48, 2, 3, True), (6, 48, 2, 3, False), (16, 32, 2, 2, True),
    (24, 240, 2, 3, False),  # the paper's first unit of stage 2 (g = 3)
])
def test_shuffle_v1_params_and_shape(cin, cout, stride, g, first):
    block = ShuffleUnit(cin, cout, stride=stride, groups=g, first_group_conv=first)
    assert n_params(block) == v1_params(cin, cout, stride, g, first)
    assert block.compress.conv.groups == (g if first else 1)
    assert block.expand.conv.groups == g and block.depthwise.conv.groups == block.mid_channels
    y = block(torch.randn(2, cin, 5, 6))
    assert y.shape == (2, cout, (5 - 1) // stride + 1, (6 - 1) // stride + 1)


def test_shuffle_v1_stride2_concats_pooled_input_first():
    cin, cout = 6, 24
    block = ShuffleUnit(cin, cout, stride=2, groups=3).eval()
    x = torch.randn(2, cin, 7, 7)
    y = block(x)
    pooled = nn.functional.avg_pool2d(x, 3, stride=2, padding=1)
    branch = block.expand(block.depthwise(block.shuffle(block.compress(x))))
    assert branch.shape[1] == cout - cin
    torch.testing.assert_close(y[:, :cin], pooled.relu())
    torch.testing.assert_close(y[:, cin:], branch.relu())


def test_shuffle_v1_stride1_adds_input():
    block = ShuffleUnit(12, 12, groups=3).eval()
    x = torch.randn(2, 12, 5, 5)
    branch = block.expand(block.depthwise(block.shuffle(block.compress(x))))
    torch.testing.assert_close(block(x), (x + branch).relu())


def test_shuffle_v1_shuffles_after_first_pointwise():
    block = ShuffleUnit(12, 12, groups=3).eval()
    x = torch.randn(1, 12, 4, 4)
    seen = {}
    block.depthwise.register_forward_hook(lambda m, inp, out: seen.setdefault("dw_in", inp[0]))
    block(x)
    torch.testing.assert_close(seen["dw_in"], channel_shuffle(block.compress(x), 3))


@pytest.mark.parametrize("kwargs,match", [
    (dict(in_channels=12, out_channels=12, stride=3), r"stride should be one of \[1, 2\], got 3"),
    (dict(in_channels=12, out_channels=24, stride=1), r"in_channels \(12\) should equal out_channels \(24\)"),
    (dict(in_channels=24, out_channels=24, stride=2), "out_channels .24. should be larger"),
    (dict(in_channels=10, out_channels=40, stride=2, groups=3), "groups=3 does not divide in_channels=10"),
    (dict(in_channels=12, out_channels=40, stride=2, groups=4), "groups=4 does not divide bottleneck width"),
    (dict(in_channels=1, out_channels=2, stride=2, groups=1), r"int\(2 \* 0.25\) should be >= 1"),
    (dict(in_channels=6, out_channels=24, stride=2, groups=4, bottleneck_ratio=0.5, first_group_conv=False),
     r"groups=4 does not divide branch output channels \(out_channels - in_channels\)=18"),
    (dict(in_channels=8, out_channels=8, groups=0), "groups"),
    (dict(in_channels=8, out_channels=8, groups=1, bottleneck_ratio=0), "bottleneck_ratio"),
])
def test_shuffle_v1_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ShuffleUnit(**kwargs)


def test_shuffle_v1_first_group_conv_false_allows_indivisible_input():
    args = dict(stride=2, groups=3, bottleneck_ratio=0.375)  # mid = 12, branch = 24
    with pytest.raises(ValueError, match="groups=3 does not divide in_channels=8"):
        ShuffleUnit(8, 32, **args)
    block = ShuffleUnit(8, 32, first_group_conv=False, **args)
    assert block.compress.conv.groups == 1 and block.mid_channels == 12
    assert block(torch.randn(1, 8, 4, 4)).shape == (1, 32, 2, 2)


# --- ShuffleV2Unit ----------------------------------------------------------------------------

def v2_params(cin, cout, stride):
    b = cout // 2
    right_in = b if stride == 1 else cin
    right = right_in * b + 2 * b + 9 * b + 2 * b + b * b + 2 * b
    left = 0 if stride == 1 else 9 * cin + 2 * cin + cin * b + 2 * b
    return left + right


@pytest.mark.parametrize("cin,cout,stride", [(8, 8, 1), (6, 12, 2), (8, 8, 2)])
def test_shuffle_v2_params_and_shape(cin, cout, stride):
    block = ShuffleV2Unit(cin, cout, stride=stride)
    assert n_params(block) == v2_params(cin, cout, stride)
    assert block(torch.randn(2, cin, 6, 7)).shape == (2, cout, (6 - 1) // stride + 1, (7 - 1) // stride + 1)


def test_shuffle_v2_stride1_passes_left_half_through():
    block = ShuffleV2Unit(8, 8).eval()
    x = torch.randn(2, 8, 5, 5)
    y = channel_shuffle(block(x), 4)  # undo the shuffle by 2 (C / 2 = 4)
    torch.testing.assert_close(y[:, :4], x[:, :4], rtol=0, atol=0)
    torch.testing.assert_close(y[:, 4:], block.right(x[:, 4:]))


@pytest.mark.parametrize("cin,cout,stride", [(8, 8, 1), (6, 12, 2)])
def test_shuffle_v2_matches_torchvision(cin, cout, stride):
    tv = pytest.importorskip("torchvision.models.shufflenetv2")
    ours, ref = ShuffleV2Unit(cin, cout, stride=stride).eval(), tv.InvertedResidual(cin, cout, stride).eval()
    ours_sd, ref_sd = ours.state_dict(), ref.state_dict()
    assert [v.shape for v in ours_sd.values()] == [v.shape for v in ref_sd.values()]
    ref.load_state_dict({k: torch.rand_like(v.float()).add(0.5).to(v.dtype) for k, v in ref_sd.items()})
    ours.load_state_dict(dict(zip(ours_sd, ref.state_dict().values())))
    x = torch.randn(2, cin, 6, 6)
    torch.testing.assert_close(ours(x), ref(x))


@pytest.mark.parametrize("kwargs,match", [
    (dict(in_channels=8, out_channels=8, stride=3), r"stride should be one of \[1, 2\], got 3"),
    (dict(in_channels=7, out_channels=7), "out_channels should be even, got 7"),
    (dict(in_channels=6, out_channels=9, stride=2), "out_channels should be even, got 9"),
    (dict(in_channels=8, out_channels=16), r"in_channels \(8\) should equal out_channels \(16\)"),
])
def test_shuffle_v2_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ShuffleV2Unit(**kwargs)


# --- common -----------------------------------------------------------------------------------

@pytest.mark.parametrize("make", [
    lambda: ShuffleUnit(12, 12, groups=3),
    lambda: ShuffleUnit(6, 24, stride=2, groups=3, first_group_conv=False),
    lambda: ShuffleV2Unit(8, 8),
    lambda: ShuffleV2Unit(6, 12, stride=2),
])
def test_every_parameter_gets_a_gradient(make):
    block = make()
    block(torch.randn(2, block.in_channels, 6, 6)).square().mean().backward()
    for name, p in block.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


@pytest.mark.parametrize("cls,kwargs", [(ShuffleUnit, dict(groups=2)), (ShuffleV2Unit, {})])
def test_generic_calling_form(cls, kwargs):
    block = cls(8, 16, stride=2, **kwargs)
    assert (block.in_channels, block.out_channels, block.stride) == (8, 16, 2)
