"""Name -> builder tables for blocks (used by model specs) and for models (``create_model``).

The block table is filled by ``@register_block("name")`` on each block class in
``models.layers``; importing ``models`` imports every layer file, so the table is complete.
"""
from __future__ import annotations

import fnmatch
from typing import Callable, TypeVar

from torch import nn

T = TypeVar("T", bound=type)
_BLOCKS: dict[str, type[nn.Module]] = {}


def register_block(name: str) -> Callable[[T], T]:
    """Class decorator: make a block available to model specs as ``block: <name>``."""

    def add(cls: T) -> T:
        if name in _BLOCKS and _BLOCKS[name] is not cls:
            raise ValueError(f"block name {name!r} is already registered to {_BLOCKS[name].__name__}")
        _BLOCKS[name] = cls
        return cls

    return add


def list_blocks(pattern: str = "*") -> list[str]:
    """Registered block names matching a shell-style pattern, sorted."""
    return sorted(n for n in _BLOCKS if fnmatch.fnmatchcase(n, pattern))


def get_block(name: str) -> type[nn.Module]:
    """The block class registered as ``name``; the error lists the known names."""
    if name not in _BLOCKS:
        raise ValueError(f"unknown block {name!r}; known blocks: {', '.join(list_blocks())}")
    return _BLOCKS[name]
