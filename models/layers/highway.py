"""Convolutional highway block (Srivastava, Greff & Schmidhuber 2015, "Training Very Deep Networks").

A highway layer mixes a transform ``H(x)`` with a carried input ``C(x)`` through a learned gate
``T(x)`` in (0, 1), per channel and position: ``y = H(x) T(x) + C(x) (1 - T(x))``. The gate bias
starts negative (the paper suggests -1 to -3) so a fresh layer mostly carries its input through
and a deep stack of them starts close to the identity, which is what lets it train.
"""
from __future__ import annotations

import numbers

import torch
from torch import nn

from convzoo.checks import check_channels, check_choice, check_positive

from ..registry import register_block
from .arithmetic import same_padding
from .conv import ConvNormAct, LayerSpec
from .residual import make_shortcut


@register_block("highway")
class HighwayBlock(nn.Module):
    """``y = H(x) * T(x) + C(x) * (1 - T(x))``, ``H = act(BN(conv(x)))``, ``T = sigmoid(conv(x))``.

    The gate conv has the same kernel and stride as ``H``, no norm, and its bias set to
    ``gate_bias``. The carry ``C`` is the identity when the shape is kept; otherwise
    ``carry="project"`` uses a 1x1 conv (stride ``stride``) + norm and ``carry="error"`` raises.
    ``gate_mean`` is the mean of ``T`` over the last forward's batch (a detached 0-dim tensor, None
    before the first forward; ``last_gate_mean`` as a float) so a study can log how open the gates are.
    """

    def __init__(self, in_channels: int, out_channels: int, *, stride: int = 1,
                 kernel_size: int = 3, gate_bias: float = -2.0, carry: str = "project",
                 norm_layer: LayerSpec = "bn", act_layer: LayerSpec = "relu") -> None:
        super().__init__()
        check_channels(in_channels, out_channels)
        check_choice("stride", stride, (1, 2))
        check_positive("kernel_size", kernel_size)
        check_choice("carry", carry, ("project", "error"))
        if isinstance(gate_bias, bool) or not isinstance(gate_bias, numbers.Real):
            raise ValueError(f"gate_bias should be a real number (e.g. -2.0), got {gate_bias!r}")
        if carry == "error" and (stride != 1 or in_channels != out_channels):
            raise ValueError(
                f"carry='error' needs an identity carry, i.e. stride 1 and in_channels == "
                f"out_channels, got stride={stride}, in_channels={in_channels}, "
                f"out_channels={out_channels}; use carry='project'")
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.gate_bias = float(gate_bias)
        self.transform = ConvNormAct(in_channels, out_channels, kernel_size, stride=stride,
                                     norm_layer=norm_layer, act_layer=act_layer)
        self.gate = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride,
                              padding=same_padding(kernel_size), bias=True)
        self.carry = make_shortcut("B", in_channels, out_channels, stride, norm_layer)
        self.init_weights()
        # A detached 0-dim tensor, not a float: calling .item() here would sync the GPU every step
        # (and break a compiled graph in two).
        self.gate_mean: torch.Tensor | None = None

    def init_weights(self) -> None:
        """The gate bias rule; ``Net.init_weights`` calls it after its generic init."""
        nn.init.constant_(self.gate.bias, self.gate_bias)

    @property
    def last_gate_mean(self) -> float | None:
        return None if self.gate_mean is None else float(self.gate_mean)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.transform(x)  # (N, C_out, H/s, W/s)
        t = torch.sigmoid(self.gate(x))  # (N, C_out, H/s, W/s), in (0, 1)
        c = self.carry(x)  # (N, C_out, H/s, W/s)
        # fp32 even under bf16 autocast: a monitor sums ~80 of these, and a bf16 sum past 16 rounds
        # each addition to a multiple of 0.125
        self.gate_mean = t.detach().mean(dtype=torch.float32)
        # c + t (h - c) = h t + c (1 - t) with one multiply fewer; written out rather than
        # torch.lerp, which refuses mixed dtypes (an fp32 identity carry under bf16 autocast).
        return c + t * (h - c)
