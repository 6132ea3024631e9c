"""Name -> builder tables for blocks (used by model specs) and for models (``create_model``).

The block table is filled by ``@register_block("name")`` on each block class in
``models.layers``; importing ``models`` imports every layer file, so the table is complete.
"""
from __future__ import annotations

import fnmatch
from contextlib import contextmanager
from functools import lru_cache
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


# --- models: one Hydra config per architecture in configs/model/, shipped with the package ---
#
# Layout: configs/model/<name>.yaml is a model, and only those files are (list_models reads that
# folder, not its subfolders). A family's shared structure (stem, head, citation, the paper's
# description) is written once in configs/model/family/<family>.yaml, which a variant pulls in
# with ``defaults: [family/<family>@_here_, _self_]`` and then states only what differs. The bases
# live in a subfolder so that list_models(), the zoo tables and sweeps never see them, while
# Hydra still finds them relative to the model group; each leaves ``name`` (and usually
# ``stages``) as ``???``, so ``model=family/...`` on the command line fails at once on a missing
# value instead of training a half-written network.

_CONFIG_MODULE = "convzoo.configs"


def _model_dir():
    from importlib.resources import files

    return files(_CONFIG_MODULE) / "model"


def list_models(pattern: str = "*") -> list[str]:
    """Names of the architectures (``configs/model/<name>.yaml``) matching a shell pattern."""
    names = (p.name[: -len(".yaml")] for p in _model_dir().iterdir()
             if p.name.endswith(".yaml") and p.is_file())
    return sorted(n for n in names if fnmatch.fnmatchcase(n, pattern))


@contextmanager
def _packaged_hydra():
    """Hydra initialised on the packaged configs (``pkg://convzoo.configs``) for the ``with`` block.

    Hydra keeps one global instance, and a caller may be inside its own Hydra app (``@hydra.main``,
    or ``initialize(...)`` in a test or notebook): composing there would search *their* configs, and
    initialising again is an error. So the caller's global Hydra and version base are set aside
    untouched, ours is used, and theirs are put back, whatever happens. Not thread-safe, like
    Hydra's own ``initialize``."""
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.singleton import Singleton
    from hydra.version import VersionBase

    keys = (GlobalHydra, VersionBase)
    saved = {k: Singleton._instances.pop(k) for k in keys if k in Singleton._instances}
    try:
        with initialize_config_module(_CONFIG_MODULE, version_base="1.3"):
            yield
    finally:
        for k in keys:
            Singleton._instances.pop(k, None)
        Singleton._instances.update(saved)


@lru_cache(maxsize=None)
def _composed(name: str) -> dict:
    # Composing runs Hydra's whole config machinery (about 0.2 s, mostly Hydra's own config), and
    # the packaged YAML does not change while the process runs: compose each model once.
    from hydra import compose
    from omegaconf import OmegaConf

    with _packaged_hydra():
        cfg = compose(overrides=[f"+model={name}"])
    return OmegaConf.to_container(cfg.model, resolve=False)


def model_config(name: str, **overrides):
    """The model's spec as an OmegaConf config, with ``overrides`` merged on top.

    The spec is composed by Hydra from ``configs/model/<name>.yaml`` and its family base: the same
    node that ``python train.py model=<name>`` gives as ``cfg.model``, so Python and the command
    line build the same network. Interpolations are kept (resolved when the net is built). The
    result is a fresh config, not in struct mode, that the caller may change freely."""
    from omegaconf import OmegaConf

    known = list_models()
    if name not in known:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(known)}")
    cfg = OmegaConf.create(_composed(name))  # a copy: the cached spec stays as composed
    return OmegaConf.merge(cfg, overrides) if overrides else cfg


def create_model(name: str | None = None, *, pretrained=None, checkpoint=None, **overrides) -> nn.Module:
    """Build architecture ``name`` from its composed config (``model_config``), as ``model=<name>`` does.

    ``overrides`` replace top-level spec keys, e.g. ``create_model("resnet20", num_classes=100)``.
    ``pretrained``: weights to start from (``models/pretrained.py``): ``True`` (the model's default),
    a tag (``"cifar10.akamaster"``), a file, a folder written by ``convzoo export`` or
    ``"hf-hub:owner/name"``; a classifier for another class count is initialised afresh, with a
    warning. Without ``name`` (or with ``name="hf-hub:..."``), the net is built from the exported
    folder's own config. ``checkpoint``: a ``train.py`` checkpoint (weights under ``state_dict`` as
    ``net.*``) or a plain state_dict file, read with ``torch.load(weights_only=True)`` (tensors and
    plain data only: the file never runs code) and loaded strictly; the errors say which file and
    what does not fit.
    """
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    from .serialization import load_weights, net_state, safe_torch_load

    if name is None or name.startswith("hf-hub:"):
        from .pretrained import net_from_folder

        net = net_from_folder(pretrained if name is None else name, **overrides)
    else:
        if pretrained is not None:
            overrides["pretrained"] = pretrained if isinstance(pretrained, (bool, str)) else str(pretrained)
        try:
            net = instantiate(model_config(name, **overrides))
        except InstantiationException as err:  # Hydra's multi-line wrapper: the net's own error says it
            if isinstance(err.__cause__, (ValueError, TypeError, OSError, ImportError)):
                raise err.__cause__ from None
            raise
    if checkpoint is None:
        return net
    name = name or getattr(net, "name", "the model")
    return load_weights(net, net_state(safe_torch_load(checkpoint), checkpoint), name=name, source=checkpoint)
