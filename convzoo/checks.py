"""Argument checks shared by blocks, networks and datamodules: each error names the value and what
would be valid."""
from __future__ import annotations

from collections.abc import Iterable


def _as_tuple(value) -> tuple:
    return tuple(value) if isinstance(value, Iterable) and not isinstance(value, str) else (value,)


def check_positive(name: str, value, *, allow_zero: bool = False) -> None:
    """Raise ``ValueError`` unless every entry of ``value`` is an int > 0 (>= 0 with allow_zero)."""
    for v in _as_tuple(value):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0 or (v == 0 and not allow_zero):
            bound = ">= 0" if allow_zero else ">= 1"
            raise ValueError(f"{name} should be an integer {bound}, got {value!r}")


def check_channels(in_channels, out_channels) -> None:
    """Raise ``ValueError`` unless both channel counts are integers >= 1."""
    check_positive("in_channels", in_channels)
    check_positive("out_channels", out_channels)


def check_divisible(name: str, value: int, by_name: str, by: int) -> None:
    """Raise ``ValueError`` unless ``by`` divides ``value``."""
    if value % by:
        divisors = [d for d in range(1, value + 1) if value % d == 0]
        raise ValueError(f"{by_name}={by} does not divide {name}={value}; "
                         f"{by_name} should be one of {divisors}")


def check_choice(name: str, value, choices: Iterable) -> None:
    """Raise ``ValueError`` unless ``value`` is one of ``choices``."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name} should be one of {list(choices)}, got {value!r}")


def check_input(x, channels: int, where: str) -> None:
    """Raise ``ValueError`` unless ``x`` is a batch of ``channels``-channel images (N, C, H, W)."""
    if x.dim() != 4 or x.shape[1] != channels:
        raise ValueError(f"{where} expects input of shape (N, {channels}, H, W), got {tuple(x.shape)}")
