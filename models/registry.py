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


# --- models: one YAML file per architecture in configs/model/, shipped with the package ---

def _model_dir():
    from importlib.resources import files

    return files("configs") / "model"


def list_models(pattern: str = "*") -> list[str]:
    """Names of the architectures (``configs/model/<name>.yaml``) matching a shell pattern."""
    names = (p.name[: -len(".yaml")] for p in _model_dir().iterdir() if p.name.endswith(".yaml"))
    return sorted(n for n in names if fnmatch.fnmatchcase(n, pattern))


def model_config(name: str, **overrides):
    """The model's spec as an OmegaConf config, with ``overrides`` merged on top."""
    from omegaconf import OmegaConf

    path = _model_dir() / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(list_models())}")
    cfg = OmegaConf.create(path.read_text())
    return OmegaConf.merge(cfg, overrides) if overrides else cfg


def create_model(name: str, **overrides) -> nn.Module:
    """Build architecture ``name`` from its YAML exactly as Hydra's ``model=<name>`` does.

    ``overrides`` replace top-level spec keys, e.g. ``create_model("resnet20", num_classes=100)``.
    """
    from hydra.utils import instantiate

    return instantiate(model_config(name, **overrides))
