"""Every registered block: an example configuration, gradients, attributes, complexity.

A block registered without an entry in EXAMPLES fails ``test_every_block_has_an_example``, so a
new block is tested the day it is added.
"""
from __future__ import annotations

import pytest
import torch

from convzoo.models.complexity import complexity, flop_counter_macs
from convzoo.models.registry import get_block, list_blocks

INCEPTION = dict(ch1x1=8, ch3x3_reduce=8, ch3x3=16, ch5x5_reduce=4, ch5x5=8, pool_proj=8)
# name -> (in_channels, out_channels, extra arguments); input is (2, in_channels, 8, 8).
EXAMPLES = {
    "basic": (16, 32, dict(stride=2, shortcut="A")),
    "bottleneck": (16, 32, dict(stride=2)),
    "channel_shuffle": (16, None, dict(groups=4)),
    "conv": (16, 32, dict(stride=2, dilation=2)),
    "conv_pool": (16, 32, dict(stride=2)),
    "dwsep": (16, 32, dict(stride=2)),
    "flattened": (16, 32, {}),
    "highway": (16, 16, {}),
    "inception": (16, None, INCEPTION),
    "inverted_residual": (16, 16, {}),
    "norm_act": (16, None, {}),
    "plain": (16, 32, dict(stride=2)),
    "pool": (16, 32, dict(mode="conv")),
    "preact": (16, 32, dict(stride=2)),
    "resize_up": (16, 8, {}),
    "resnext": (16, 64, dict(cardinality=4, bottleneck_width=4)),
    "shuffle_v1": (24, 48, dict(stride=2, groups=3)),
    "shuffle_v2": (16, 32, dict(stride=2)),
    "spatial_sep": (16, 32, {}),
    "transposed_up": (16, 8, {}),
    "whiten": (3, None, dict(kernel_size=2)),
}


def build(name: str):
    cin, cout, extra = EXAMPLES[name]
    return get_block(name)(cin, cout, **extra), cin


def test_every_block_has_an_example():
    assert sorted(EXAMPLES) == list_blocks()


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_block_forward_backward_and_attributes(name):
    torch.manual_seed(0)
    block, cin = build(name)
    assert block.in_channels == cin
    x = torch.randn(2, cin, 8, 8, requires_grad=True)
    out = block(x)
    assert out.shape[1] == block.out_channels and torch.isfinite(out).all()
    out.square().mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0  # the block passes gradients back to its input
    missing = [n for n, p in block.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []
    assert (type(block).__doc__ or "").strip(), f"{name} needs a docstring stating its maths"


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_block_keeps_channels_last(name):
    """train.py runs nets in channels_last: a block that hands back an NCHW copy makes every conv
    after it run in the slower layout (a channel shuffle once did, see models/layers/shuffle.py)."""
    block, cin = build(name)
    for training in (True, False):
        x = torch.randn(2, cin, 8, 8).contiguous(memory_format=torch.channels_last)
        assert block.train(training)(x).is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_block_complexity_agrees_with_flop_counter(name):
    block, cin = build(name)
    report = complexity(block, (cin, 8, 8))
    assert report.total_params == sum(p.numel() for p in block.parameters())
    assert report.total_macs == pytest.approx(flop_counter_macs(block, (cin, 8, 8)), rel=0.01)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_block_rejects_a_non_positive_stride(name):
    cin, cout, extra = EXAMPLES[name]
    with pytest.raises(ValueError, match="stride|scale_factor"):  # resize_up calls its stride scale_factor
        get_block(name)(cin, cout, **{**extra, "stride": 0})
