"""Every registered block: the block contract, an example configuration, gradients, complexity.

A block registered without an entry in EXAMPLES fails ``test_every_block_has_an_example``, so a
new block is tested the day it is added.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from convzoo.models import registry
from convzoo.models.complexity import complexity, flop_counter_macs
from convzoo.models.layers.contract import check_block
from convzoo.models.registry import get_block, list_blocks, register_block

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


@pytest.mark.parametrize("name", list_blocks())
def test_block_keeps_the_contract(name):
    """Signature, in/out_channels, stride, channel_args, init_weights, output shape and
    channels_last, as models/layers/contract.py writes them down."""
    assert name in EXAMPLES, f"block {name!r} needs an example configuration in EXAMPLES"
    cin, cout, extra = EXAMPLES[name]
    problems = check_block(name, cin, cout, **extra)
    assert not problems, "\n".join(problems)


class _NoAttributes(nn.Module):
    """y = x, but it says nothing of its channels or stride."""

    channel_args = ("hidden",)

    def __init__(self, in_channels, out_channels=None, *, stride=1, mid_channels=None):
        super().__init__()

    def forward(self, x):
        return x


class _WrongLayout(nn.Module):
    """y = x, handed back as an NCHW copy; its constructor has the wrong names."""

    def __init__(self, channels, out_channels=None, *, activation="relu"):
        super().__init__()
        self.in_channels = self.out_channels = channels
        self.stride = 1

    def forward(self, x):
        return x.contiguous()


@pytest.mark.parametrize("cls, expected", [
    (_NoAttributes, ["has no in_channels attribute", "has no out_channels attribute", "has no stride attribute",
                     "lists channel_args ['hidden'] that its constructor does not take",
                     "takes channel counts ['mid_channels'] that are missing from channel_args"]),
    (_WrongLayout, ["constructor should start (in_channels, out_channels, ...), got (channels, out_channels)",
                    "constructor takes no stride argument",
                    "constructor argument activation should be called act_layer",
                    "turns a channels_last input into an NCHW output in training mode"]),
])
def test_a_block_that_breaks_the_contract_is_named_in_the_failure(monkeypatch, cls, expected):
    with monkeypatch.context() as m:
        m.setattr(registry, "_BLOCKS", dict(registry._BLOCKS))  # a copy: the toy never reaches the real table
        register_block("toy")(cls)
        assert "toy" in list_blocks()
        problems = check_block("toy", 4)
    assert "toy" not in list_blocks()
    for what in expected:
        assert f"block 'toy' ({cls.__name__}) {what}" in problems, problems


def test_net_names_a_block_that_breaks_the_contract(monkeypatch):
    from convzoo.models.net import Net

    monkeypatch.setattr(registry, "_BLOCKS", dict(registry._BLOCKS))
    register_block("toy")(_NoAttributes)
    with pytest.raises(TypeError, match=r"stage 0, block 0 \(toy\): _NoAttributes breaks the block contract .* "
                                        r"it lacks in_channels, out_channels, stride"):
        Net(stages=[{"block": "toy"}])


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_block_forward_backward(name):
    torch.manual_seed(0)
    block, cin = build(name)
    x = torch.randn(2, cin, 8, 8, requires_grad=True)
    out = block(x)
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0  # the block passes gradients back to its input
    missing = [n for n, p in block.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []
    assert (type(block).__doc__ or "").strip(), f"{name} needs a docstring stating its maths"


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
