"""ConvNormAct and the small factories every block shares.

Every block in ``models.layers`` takes ``norm_layer`` and ``act_layer`` in one of three forms:
a name (``"bn"``, ``"gn"``, ``"none"``; ``"relu"``, ``"relu6"``, ``"silu"``, ``"gelu"``,
``"none"``), an ``nn.Module`` class (or any callable that builds one), or ``None`` for no layer.
``make_norm`` / ``make_act`` turn those into modules, so blocks never special-case them.
"""
from __future__ import annotations

from functools import partial
from typing import Callable, Union

from torch import nn

from convzoo.checks import check_channels, check_divisible, check_positive

from ..registry import register_block
from .activation import ReLU6
from .arithmetic import same_padding

LayerSpec = Union[str, Callable[..., nn.Module], None]


def _group_norm(num_channels: int, num_groups: int = 32) -> nn.GroupNorm:
    # 32 groups as in Wu & He (2018), falling back to the largest divisor so narrow layers work.
    groups = min(num_groups, num_channels)
    while num_channels % groups:
        groups -= 1
    return nn.GroupNorm(groups, num_channels)


NORM_LAYERS: dict[str, Callable[[int], nn.Module]] = {
    "bn": nn.BatchNorm2d,
    "batchnorm": nn.BatchNorm2d,
    "gn": _group_norm,
    "groupnorm": _group_norm,
}
ACT_LAYERS: dict[str, Callable[[], nn.Module]] = {
    "relu": partial(nn.ReLU, inplace=True),
    "relu6": partial(ReLU6, inplace=True),  # nn.ReLU6 without the input copy of its in-place form
    "silu": partial(nn.SiLU, inplace=True),
    "gelu": nn.GELU,
    "sigmoid": nn.Sigmoid,
    "hardswish": partial(nn.Hardswish, inplace=True),
    "leaky_relu": partial(nn.LeakyReLU, 0.1, inplace=True),
}
_NONE_NAMES = ("none", "identity", "")


def _resolve(spec: LayerSpec, table: dict, what: str):
    if spec is None:
        return None
    if isinstance(spec, str):
        key = spec.lower()
        if key in _NONE_NAMES:
            return None
        if key not in table:
            known = ", ".join(sorted(table) + ["none"])
            raise ValueError(f"unknown {what} {spec!r}; expected one of: {known}, a module class or None")
        return table[key]
    if callable(spec):
        return spec
    raise ValueError(f"{what} should be a name, a module class or None, got {spec!r}")


def make_norm(norm_layer: LayerSpec, num_channels: int) -> nn.Module:
    """A normalisation layer over ``num_channels`` channels (``nn.Identity`` for none)."""
    factory = _resolve(norm_layer, NORM_LAYERS, "norm_layer")
    return nn.Identity() if factory is None else factory(num_channels)


def make_act(act_layer: LayerSpec) -> nn.Module:
    """An activation module (``nn.Identity`` for none)."""
    factory = _resolve(act_layer, ACT_LAYERS, "act_layer")
    return nn.Identity() if factory is None else factory()


@register_block("conv")
class ConvNormAct(nn.Sequential):
    """Conv2d -> norm -> activation. Output size ``floor((W + 2P - D(K-1) - 1) / S) + 1``;
    cost ``H_out W_out K^2 (C_in / groups) C_out`` MACs.

    ``padding=None`` means "same" for odd kernels, ``(k - 1) // 2 * dilation``. The conv has a
    bias only when there is no norm (``bias=None``), since a norm's shift makes it redundant.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int] = 3,
        *,
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | None = None,
        dilation: int = 1,
        groups: int = 1,
        bias: bool | None = None,
        norm_layer: LayerSpec = "bn",
        act_layer: LayerSpec = "relu",
    ) -> None:
        check_channels(in_channels, out_channels)
        check_positive("kernel_size", kernel_size)
        check_positive("stride", stride)
        check_positive("dilation", dilation)
        check_positive("groups", groups)
        check_divisible("in_channels", in_channels, "groups", groups)
        check_divisible("out_channels", out_channels, "groups", groups)
        if padding is None:
            padding = same_padding(kernel_size, dilation)
        norm = make_norm(norm_layer, out_channels)
        if bias is None:
            bias = isinstance(norm, nn.Identity)
        conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                         dilation=dilation, groups=groups, bias=bias)
        super().__init__(conv, norm, make_act(act_layer))
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride = stride

    @property
    def conv(self) -> nn.Conv2d:
        return self[0]

    @property
    def norm(self) -> nn.Module:
        return self[1]

    @property
    def act(self) -> nn.Module:
        return self[2]


@register_block("norm_act")
class NormAct(nn.Sequential):
    """norm -> activation, ``y = act(norm(x))``: the closing layer of a pre-activation network."""

    def __init__(self, in_channels: int, out_channels: int | None = None, *, stride: int = 1,
                 norm_layer: LayerSpec = "bn", act_layer: LayerSpec = "relu") -> None:
        check_positive("in_channels", in_channels)
        if out_channels not in (None, in_channels):
            raise ValueError(f"NormAct keeps the channel count: out_channels should be {in_channels} "
                             f"or None, got {out_channels}")
        if stride != 1:
            raise ValueError(f"NormAct does not downsample: stride should be 1, got {stride}")
        super().__init__(make_norm(norm_layer, in_channels), make_act(act_layer))
        self.in_channels = self.out_channels = in_channels
        self.stride = 1
