"""Batch norm folded into the preceding conv for inference: the same outputs for every model, no
foldable pair left, the original untouched, and training mode refused."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from convzoo.models import create_model, fuse_conv_bn, list_models


def _trained_looking(net: nn.Module) -> nn.Module:
    """Batch-norm statistics and affine parameters away from their initial 0 / 1, so folding them is
    not trivially exact."""
    g = torch.Generator().manual_seed(0)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.5, generator=g)
            m.running_var.uniform_(0.5, 2.0, generator=g)
            m.weight.data.normal_(1.0, 0.2, generator=g)
            m.bias.data.normal_(0.0, 0.2, generator=g)
    return net.eval()


def _pairs_left(net: nn.Module) -> int:
    left = 0
    for module in net.modules():
        if isinstance(module, nn.Sequential):
            kids = list(module.children())
            left += sum(type(a) is nn.Conv2d and isinstance(b, nn.BatchNorm2d) for a, b in zip(kids, kids[1:]))
    return left


def _bns(net: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d) for m in net.modules())


@pytest.mark.parametrize("name", list_models())
def test_fused_model_gives_the_same_outputs(name):
    net = _trained_looking(create_model(name))
    x = torch.randn(2, 3, 32, 32)
    fused = fuse_conv_bn(net)
    with torch.no_grad():
        want, got = net(x), fused(x)
        got_cl = fused.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
    scale = want.abs().max().clamp_min(1.0)
    assert torch.allclose(got, want, atol=1e-4 * float(scale), rtol=0), float((got - want).abs().max())
    assert torch.allclose(got_cl, want, atol=1e-4 * float(scale), rtol=0)
    assert _pairs_left(fused) == 0 and _bns(fused) == _bns(net) - fused.fused_pairs
    assert _bns(net) == _bns(create_model(name)) and _pairs_left(net) == fused.fused_pairs  # original untouched


def test_resnet20_folds_every_batch_norm():
    fused = fuse_conv_bn(create_model("resnet20").eval())
    assert fused.fused_pairs == 19 and _bns(fused) == 0  # stem + 18 convs of the 9 basic blocks


def test_training_mode_is_refused_and_inplace_fuses_the_net_itself():
    net = create_model("resnet20")
    with pytest.raises(ValueError, match=r"for inference: call net.eval\(\) first"):
        fuse_conv_bn(net)
    same = fuse_conv_bn(net.eval(), inplace=True)
    assert same is net and _bns(net) == 0
