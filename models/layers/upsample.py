"""Learned upsampling: transposed convolution and resize-convolution, and a checkerboard measure.

Odena, Dumoulin & Olah, "Deconvolution and Checkerboard Artifacts" (Distill, 2016): a
transposed conv whose kernel size is not a multiple of its stride writes overlapping kernel
copies unevenly, so some output pixels receive more contributions than their neighbours and
a checkerboard appears. Resizing first (nearest or bilinear) and then convolving at stride 1
spreads contributions evenly by construction. ``checkerboard_score`` measures that unevenness.

In these blocks ``stride`` is the *upsampling* factor (output = input * stride), so the generic
network's ``Block(in_channels, out_channels, stride=s)`` call works for decoders too.
"""
from __future__ import annotations

import copy
import math
from collections import OrderedDict

import torch
from torch import nn

from convzoo.checks import check_channels, check_choice, check_positive

from ..registry import register_block
from .arithmetic import effective_kernel_size
from .conv import ConvNormAct, LayerSpec, make_act, make_norm


def transposed_padding(kernel_size: int, stride: int) -> tuple[int, int]:
    """``(padding, output_padding)`` that make a transposed conv's output exactly ``W * S``.

    From ``out = (W - 1) S - 2P + K + output_padding`` and ``out = W S`` follows
    ``2P - output_padding = K - S``: take the smallest ``P >= 0`` that works and the matching
    ``0 <= output_padding < S``. E.g. k=4, s=2 -> (1, 0); k=3, s=2 -> (1, 1); k=2, s=2 -> (0, 0).
    """
    check_positive("kernel_size", kernel_size)
    check_positive("stride", stride)
    padding = max(0, math.ceil((kernel_size - stride) / 2))
    output_padding = 2 * padding - (kernel_size - stride)
    if not 0 <= output_padding < stride:
        raise ValueError(f"no padding makes a transposed conv with kernel_size={kernel_size}, "
                         f"stride={stride} output exactly input * stride (K - S must be even at "
                         f"stride 1); use an odd kernel_size at stride 1")
    return padding, output_padding


@register_block("transposed_up")
class TransposedConvUp(nn.Sequential):
    """ConvTranspose2d -> norm -> act; output ``(W - 1) S - 2P + K + output_padding`` (= ``W S`` by default).

    ``kernel_size=None`` picks ``2 * stride`` (a multiple of the stride: even overlap, no
    checkerboard; 4 at the usual stride 2) and 3 at stride 1. ``padding`` / ``output_padding``
    default to the values that give exactly ``input * stride`` (see ``transposed_padding``).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        stride: int = 2,
        kernel_size: int | None = None,
        padding: int | None = None,
        output_padding: int | None = None,
        norm_layer: LayerSpec = "bn",
        act_layer: LayerSpec = "relu",
    ) -> None:
        check_channels(in_channels, out_channels)
        check_positive("stride", stride)
        if kernel_size is None:
            kernel_size = 2 * stride if stride > 1 else 3
        check_positive("kernel_size", kernel_size)
        if padding is None and output_padding is None:
            padding, output_padding = transposed_padding(kernel_size, stride)
        elif padding is None:  # solve 2P - op = K - S for P
            twice = kernel_size - stride + output_padding
            if twice < 0 or twice % 2:
                raise ValueError(f"output_padding={output_padding} leaves no integer padding >= 0 "
                                 f"for kernel_size={kernel_size}, stride={stride}; pass padding too")
            padding = twice // 2
        elif output_padding is None:  # solve for op; clamped into [0, S), so W * S may not be reachable
            output_padding = min(max(2 * padding - (kernel_size - stride), 0), stride - 1)
        check_positive("padding", padding, allow_zero=True)
        check_positive("output_padding", output_padding, allow_zero=True)
        if output_padding >= stride:
            raise ValueError(f"output_padding should be in [0, stride) = [0, {stride}), got {output_padding}")
        norm = make_norm(norm_layer, out_channels)
        conv = nn.ConvTranspose2d(in_channels, out_channels, kernel_size, stride=stride,
                                  padding=padding, output_padding=output_padding,
                                  bias=isinstance(norm, nn.Identity))  # a norm's shift replaces the bias
        super().__init__(OrderedDict(conv=conv, norm=norm, act=make_act(act_layer)))
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride = self.scale_factor = stride  # an upsampling factor here, not a reduction
        self.kernel_size = kernel_size


@register_block("resize_up")
class ResizeConvUp(nn.Sequential):
    """Resize by ``scale_factor`` (nearest or bilinear) -> ConvNormAct at stride 1: ``conv(up(x))``.

    Output is ``input * scale_factor``. ``stride`` is accepted as another name for
    ``scale_factor`` (the generic network passes ``stride``); give one or make them agree.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        scale_factor: int | None = None,
        stride: int | None = None,
        mode: str = "nearest",
        kernel_size: int = 3,
        norm_layer: LayerSpec = "bn",
        act_layer: LayerSpec = "relu",
    ) -> None:
        check_channels(in_channels, out_channels)
        if scale_factor is not None and stride is not None and scale_factor != stride:
            raise ValueError(f"scale_factor={scale_factor} and stride={stride} disagree; "
                             "they name the same upsampling factor, pass one")
        factor = next((f for f in (scale_factor, stride) if f is not None), 2)
        check_positive("scale_factor", factor)
        check_choice("mode", mode, ("nearest", "bilinear"))
        check_positive("kernel_size", kernel_size)
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size should be odd (the conv keeps the resized size), got {kernel_size}")
        # align_corners=False: each output pixel samples the input at its own centre, so a
        # constant image stays constant and borders are not treated specially.
        upsample = (nn.Upsample(scale_factor=factor, mode=mode) if mode == "nearest" else
                    nn.Upsample(scale_factor=factor, mode=mode, align_corners=False))
        conv = ConvNormAct(in_channels, out_channels, kernel_size, norm_layer=norm_layer, act_layer=act_layer)
        super().__init__(OrderedDict(upsample=upsample if factor > 1 else nn.Identity(), conv=conv))
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride = self.scale_factor = factor
        self.mode = mode


# Modules the checkerboard measure treats as identity: only the linear skeleton
# (convolutions and resizes) decides how evenly contributions overlap.
_NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm)
_CONVS = (nn.Conv2d, nn.ConvTranspose2d)


def _linear_skeleton(module: nn.Module) -> nn.Module:
    """A float64 copy with all-ones conv weights, zero biases and identity norms/activations."""
    skeleton = copy.deepcopy(module).double().eval()
    for parent in list(skeleton.modules()):
        for name, child in list(parent.named_children()):
            # nn.ReLU.__module__ is torch.nn.modules.activation, home of every torch activation.
            if isinstance(child, _NORMS) or type(child).__module__ == nn.ReLU.__module__:
                setattr(parent, name, nn.Identity())
    with torch.no_grad():
        for m in skeleton.modules():
            if isinstance(m, _CONVS):
                m.weight.fill_(1.0)
                if m.bias is not None:
                    m.bias.zero_()
    return skeleton


def _pairs(*values) -> list[tuple]:
    # Per-dimension tuples from ints or tuples, so 2-D layers are handled one axis at a time.
    return list(zip(*[v if isinstance(v, tuple) else (v, v) for v in values]))


def _margin_after(margin: int, module: nn.Module, scale: float) -> int:
    """Border width (in this layer's output pixels) that padding or missing inputs can reach.

    A border of ``m`` contaminated input pixels plus the zero padding spread to
    ``ceil((m + P) / S)`` outputs of a conv or pool and ``(m - 1) S - P + F + output_padding``
    outputs of a transposed conv (F the dilated kernel); a resize by ``f`` reaches
    ``ceil((m + 1) f)`` outputs (one extra input pixel covers bilinear's half-pixel offset).
    """
    if all(hasattr(module, a) for a in ("kernel_size", "stride", "padding")):
        padding = module.padding
        if isinstance(padding, str):  # Conv2d(padding="same" / "valid")
            padding = (tuple(d * (k - 1) for k, d in zip(module.kernel_size, module.dilation))
                       if padding == "same" else 0)  # "same" pads at most D (K - 1) per side
        dilation = getattr(module, "dilation", 1)
        per_dim = _pairs(module.kernel_size, module.stride, padding, dilation,
                         getattr(module, "output_padding", 0))
        if isinstance(module, nn.ConvTranspose2d):
            return max(0, *((margin - 1) * s - p + effective_kernel_size(k, d) + op
                            for k, s, p, d, op in per_dim))
        return max(math.ceil((margin + p) / s) for k, s, p, d, op in per_dim)
    if scale != 1:
        return math.ceil((margin + 1) * scale)
    return margin


@torch.no_grad()
def checkerboard_score(module: nn.Module, in_channels: int | None = None, size: int = 8) -> float:
    """Relative unevenness ``(max - min) / max`` of how many paths reach each interior output pixel.

    Measured, not derived: the module is copied in float64 and reduced to its linear
    skeleton, i.e. every (transposed) conv gets all-ones weights and zero bias, and norms
    and activation modules become identities (so a trained decoder is scored by its
    architecture, not by its weights; dropout is off in eval mode); resizes and pools are
    kept. On an all-ones ``size x size`` input each output pixel then counts the kernel taps
    that reach it, the overlap pattern of Odena et al. The border, where padding and missing
    inputs lower the counts, is cropped: each leaf layer widens it (see ``_margin_after``),
    tracked in execution order, so sequential stacks are handled; grow ``size`` when the
    interior comes out empty. The max (not the mean) normalises, so the score does not depend
    on which stride phases the crop happens to contain.

    0: every interior pixel receives the same overlap (kernel a multiple of the stride,
    resize-convolution). 3x3 stride-2 transposed conv: counts 1, 2, 4 -> 0.75. 1 means some
    pixels receive nothing (kernel smaller than the stride). Accepts a bare
    ``nn.ConvTranspose2d``, any block, or an ``nn.Sequential`` decoder; ``in_channels``
    defaults to the module's ``in_channels`` or that of its first conv layer.
    """
    check_positive("size", size)
    if in_channels is None:
        in_channels = getattr(module, "in_channels", None)
        if in_channels is None:
            first = next((m for m in module.modules() if isinstance(m, _CONVS)), None)
            if first is None:
                raise ValueError("checkerboard_score found no conv layer to infer in_channels from; "
                                 "pass in_channels")
            in_channels = first.in_channels
    skeleton = _linear_skeleton(module)
    calls: list[tuple[nn.Module, float]] = []

    def record(m, inputs, output):
        # Leaf modules only; scale from the spatial sizes actually seen (last dim).
        if not list(m.children()) and torch.is_tensor(output) and inputs and torch.is_tensor(inputs[0]):
            calls.append((m, output.shape[-1] / inputs[0].shape[-1]))

    hooks = [m.register_forward_hook(record) for m in skeleton.modules()]
    try:
        x = torch.ones(1, in_channels, size, size, dtype=torch.float64)  # (1, C, size, size)
        y = skeleton(x)  # (1, C_out, H_out, W_out)
    finally:
        for hook in hooks:
            hook.remove()
    margin = 0
    for m, scale in calls:
        margin = _margin_after(margin, m, scale)
    interior = y[..., margin:y.shape[-2] - margin, margin:y.shape[-1] - margin]
    if interior.numel() == 0 or min(interior.shape[-2:]) < 2:
        raise ValueError(f"output {tuple(y.shape[-2:])} has no interior after cropping a border of "
                         f"{margin} pixels; pass a larger size (got {size})")
    top = interior.max()
    if top <= 0:
        raise ValueError("the module's linear skeleton sends an all-ones input to zero; cannot score it")
    return float((top - interior.min()) / top)
