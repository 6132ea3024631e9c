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

    return files("convzoo.configs") / "model"


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


def create_model(name: str, *, checkpoint=None, **overrides) -> nn.Module:
    """Build architecture ``name`` from its YAML exactly as Hydra's ``model=<name>`` does.

    ``overrides`` replace top-level spec keys, e.g. ``create_model("resnet20", num_classes=100)``.
    ``checkpoint``: a ``train.py`` checkpoint (weights under ``state_dict`` as ``net.*``) or a plain
    state_dict file, read with ``torch.load(weights_only=True)`` (tensors and plain data only: the
    file never runs code) and loaded strictly; the errors say which file and what does not fit.
    """
    from pathlib import Path

    import torch
    from hydra.utils import instantiate

    from .serialization import safe_torch_load

    net = instantiate(model_config(name, **overrides))
    if checkpoint is None:
        return net
    path = Path(checkpoint)
    ckpt = safe_torch_load(path)
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} holds no state_dict (a dict of tensors), so it has no weights to load")
    if any(str(k).startswith("net.") for k in state):  # a Lightning checkpoint: the net's weights only
        state = {k[len("net."):]: v for k, v in state.items() if k.startswith("net.")}
    own = net.state_dict()
    missing, unexpected = sorted(own.keys() - state.keys()), sorted(state.keys() - own.keys())
    wrong = [k for k in own.keys() & state.keys() if own[k].shape != state[k].shape]
    problems = []
    fc_w = getattr(getattr(net, "fc", None), "weight", None)
    if "fc.weight" in wrong and fc_w is not None and state["fc.weight"].shape[1:] == fc_w.shape[1:]:
        problems.append(f"checkpoint has {state['fc.weight'].shape[0]} classes, model {name} was built for "
                        f"{fc_w.shape[0]} (pass num_classes={state['fc.weight'].shape[0]})")
        wrong = [k for k in wrong if k not in ("fc.weight", "fc.bias")]
    if missing or unexpected or wrong:
        def few(keys):
            return ", ".join(keys[:5]) + (f" (+{len(keys) - 5} more)" if len(keys) > 5 else "")

        if missing:
            problems.append(f"{len(missing)} weights of {name} are missing from it: {few(missing)}")
        if unexpected:
            problems.append(f"{len(unexpected)} weights in it are not in {name}: {few(unexpected)}")
        if wrong:
            problems.append("shapes differ: " + few([f"{k} {tuple(state[k].shape)} in the checkpoint vs "
                                                     f"{tuple(own[k].shape)} in the model" for k in sorted(wrong)]))
        if not problems[0].startswith("checkpoint has"):
            problems.append("it was probably saved from another architecture")
    if problems:
        raise ValueError(f"the weights in {path} do not fit model {name}: " + "; ".join(problems))
    net.load_state_dict(state, strict=True)
    return net
