"""Batch norm folded into the convolution before it, for inference.

In eval mode a BatchNorm2d after a Conv2d is an affine map per output channel, so it folds into the
conv's weights: with ``s = gamma / sqrt(running_var + eps)``, ``W' = W s`` (per output channel) and
``b' = (b - running_mean) s + beta``. The fused net computes the same function with one layer (and one
pass over the activations) fewer per pair, which is what a deployed net wants; it cannot be trained
further, since batch statistics no longer exist in it.
"""
from __future__ import annotations

import copy

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def _foldable(conv: nn.Module, norm: nn.Module) -> bool:
    return (type(conv) is nn.Conv2d and isinstance(norm, nn.BatchNorm2d) and norm.track_running_stats
            and norm.running_mean is not None and norm.num_features == conv.out_channels)


def fuse_conv_bn(net: nn.Module, *, inplace: bool = False) -> nn.Module:
    """``net`` with every BatchNorm2d that directly follows a Conv2d in an ``nn.Sequential``
    (``ConvNormAct``, projection shortcuts) folded into that conv and replaced by ``nn.Identity``.

    The net must be in eval mode (a training-mode BN normalises by the batch, which no fixed conv can
    do). Returns a fused copy (``inplace=True``: fuses ``net`` itself); ``fused_pairs`` on the result
    says how many pairs were folded."""
    if net.training:
        raise ValueError("fuse_conv_bn folds batch norm's running statistics, so it is for inference: "
                         "call net.eval() first (a training-mode batch norm normalises by the batch)")
    net = net if inplace else copy.deepcopy(net)
    pairs = 0
    for module in list(net.modules()):
        if not isinstance(module, nn.Sequential):
            continue
        children = list(module.named_children())
        for (conv_name, conv), (norm_name, norm) in zip(children, children[1:]):
            if _foldable(conv, norm):
                setattr(module, conv_name, fuse_conv_bn_eval(conv, norm))
                setattr(module, norm_name, nn.Identity())
                pairs += 1
    net.fused_pairs = pairs
    return net
