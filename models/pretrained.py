"""Pretrained weights by name: the registry of published weights, and the one function that puts
weights of any kind into a net. ``Net(pretrained=...)`` calls it, so ``create_model(name,
pretrained=True)`` and ``python train.py model=resnet20 model.pretrained=true`` take the same path.

``pretrained`` may be:

- ``True``: the model's default weights (the first registered for it);
- a tag of its registered weights, ``"cifar10.akamaster"`` (``list_pretrained()`` lists
  ``<model>.<tag>``);
- a file, as a path or a ``file://`` URL: a state_dict or ``train.py`` checkpoint (read with
  ``torch.load(weights_only=True)``), a ``.safetensors`` file, or a registered file by its
  published name (converted as its entry says);
- a folder written by ``convzoo export`` (model.safetensors + config.json), or such a folder on the
  Hugging Face Hub, ``"hf-hub:owner/name"``.

A classifier for another class count (fine-tuning on CIFAR-100 from CIFAR-10 weights) keeps its
fresh initialisation, with a warning; every other weight must fit exactly.
"""
from __future__ import annotations

import fnmatch
import warnings
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from .serialization import build_from_config, load_weights, net_state, safe_torch_load
from .weights_io import HF_PREFIX, check_sha256, fetch, hub_folder, load_safetensors, local_path, read_folder

State = dict[str, torch.Tensor]


@dataclass(frozen=True)
class PretrainedWeights:
    """One published set of weights for one model, and how to turn its file into our state_dict."""

    model: str                       # the convzoo model they fit (configs/model/<model>.yaml)
    tag: str                         # "<data set>.<source>", e.g. "cifar10.akamaster"
    url: str
    sha256: str                      # 64 hex digits, or the published prefix where only that is known
    license: str
    source: str                      # who trained them, where they are described
    dataset: str
    accuracy: float | None           # top-1 (%) on the data set's test split, as published
    convert: Callable[[object], State]  # the loaded file -> our state_dict
    mean: tuple[float, ...]          # the input normalisation they were trained with ([0, 1] pixels)
    std: tuple[float, ...]
    num_classes: int = 10

    @property
    def name(self) -> str:
        return f"{self.model}.{self.tag}"

    @property
    def file_name(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    @property
    def full_hash(self) -> bool:
        return len(self.sha256) == 64

    def pretrained_cfg(self) -> dict:
        return {"weights": self.name, "dataset": self.dataset, "num_classes": self.num_classes,
                "mean": list(self.mean), "std": list(self.std), "license": self.license, "source": self.source,
                "accuracy": self.accuracy}


_WEIGHTS: dict[str, PretrainedWeights] = {}


def register_pretrained(entry: PretrainedWeights) -> PretrainedWeights:
    if entry.name in _WEIGHTS:
        raise ValueError(f"pretrained weights {entry.name!r} are already registered")
    _WEIGHTS[entry.name] = entry
    return entry


def list_pretrained(pattern: str = "*") -> list[str]:
    """``<model>.<tag>`` of every registered set of weights matching a shell pattern (``"resnet*"``)."""
    return sorted(n for n in _WEIGHTS if fnmatch.fnmatchcase(n, pattern))


def get_pretrained(model: str, tag: str | None = None) -> PretrainedWeights:
    """The registered weights ``model.tag`` (``tag=None``: the model's default, registered first)."""
    tags = [e.tag for e in _WEIGHTS.values() if e.model == model]
    if not tags:
        raise ValueError(f"no pretrained weights are registered for {model}; models with some: "
                         f"{', '.join(sorted({e.model for e in _WEIGHTS.values()}))} (list_pretrained())")
    tag = tags[0] if tag is None else tag
    if tag not in tags:
        raise ValueError(f"{model} has no pretrained weights tagged {tag!r}; its tags: {', '.join(tags)}")
    return _WEIGHTS[f"{model}.{tag}"]


def registered_state(entry: PretrainedWeights, path=None) -> State:
    """The entry's file (fetched, hash checked, unless ``path`` is given) as our state_dict."""
    path = fetch(entry.url, entry.sha256, entry.file_name) if path is None else path
    return entry.convert(safe_torch_load(path))


def _by_file_name(model: str, file_name: str) -> PretrainedWeights | None:
    return next((e for e in _WEIGHTS.values() if e.model == model and e.file_name == file_name), None)


def resolve(pretrained, model: str) -> tuple[State, str, dict, dict | None]:
    """``(state_dict, where it came from, pretrained_cfg, config.json of a folder or None)``."""
    if pretrained is True:
        entry = get_pretrained(model)
        return registered_state(entry), entry.name, entry.pretrained_cfg(), None
    if not isinstance(pretrained, str) or not pretrained:
        raise _not_a_kind(pretrained)
    if pretrained.startswith(HF_PREFIX):
        config, state = read_folder(hub_folder(pretrained))
        return state, pretrained, config.get("pretrained_cfg") or {}, config
    if f"{model}.{pretrained}" in _WEIGHTS:
        entry = _WEIGHTS[f"{model}.{pretrained}"]
        return registered_state(entry), entry.name, entry.pretrained_cfg(), None
    path = local_path(pretrained)
    if path.is_dir():
        config, state = read_folder(path)
        return state, str(path), config.get("pretrained_cfg") or {}, config
    if path.is_file():
        entry = _by_file_name(model, path.name)
        if entry is not None:  # a published file kept by hand: checked and converted as registered
            check_sha256(path, entry.sha256)
            return registered_state(entry, path), str(path), entry.pretrained_cfg(), None
        if path.suffix == ".safetensors":
            return load_safetensors(path), str(path), {}, None
        return net_state(safe_torch_load(path), path), str(path), {}, None
    raise _not_found(pretrained, model)


def _not_a_kind(pretrained) -> ValueError:
    return ValueError(f"pretrained should be true, a tag, a file, a folder or hf-hub:owner/name, got {pretrained!r}")


def _not_found(pretrained, model: str) -> FileNotFoundError:
    tags = [e.tag for e in _WEIGHTS.values() if e.model == model]
    return FileNotFoundError(f"pretrained={pretrained!r} is not a tag of {model}'s weights "
                             f"({', '.join(tags) or 'none registered'}), nor a file or folder that exists, "
                             f"nor hf-hub:owner/name")


def check_pretrained(pretrained, model: str) -> None:
    """What ``resolve`` would refuse at once, found without fetching or reading anything: for the
    config checks, so that a bad ``model.pretrained`` fails before any data is read."""
    if not pretrained:
        return
    if pretrained is True:
        get_pretrained(model)
    elif not isinstance(pretrained, str):
        raise _not_a_kind(pretrained)
    elif not (pretrained.startswith(HF_PREFIX) or f"{model}.{pretrained}" in _WEIGHTS
              or local_path(pretrained).exists()):
        raise _not_found(pretrained, model)


def fit_head(net: nn.Module, state: State, model: str, source: str) -> State:
    """``state`` with the classifier replaced by ``net``'s own fresh one when the class counts
    differ (or dropped when ``net`` has none), so that the rest loads strictly."""
    fc = getattr(net, "fc", None)
    weight = state.get("fc.weight")
    if weight is None or fc is None:
        return state
    if isinstance(fc, nn.Identity):  # num_classes=0: the net is a feature extractor
        return {k: v for k, v in state.items() if k not in ("fc.weight", "fc.bias")}
    if isinstance(fc, nn.Linear) and weight.shape != fc.weight.shape and weight.shape[1:] == fc.weight.shape[1:]:
        warnings.warn(f"{source} has a classifier for {weight.shape[0]} classes but {model} was built for "
                      f"{fc.out_features}: the classifier (fc) is initialised afresh, every other weight is "
                      f"loaded (fine-tuning with a new head)", stacklevel=3)
        return {**state, "fc.weight": fc.weight.detach().clone(), "fc.bias": fc.bias.detach().clone()}
    return state


def _load(net: nn.Module, state: State, model: str, source: str, pretrained_cfg: dict) -> nn.Module:
    load_weights(net, fit_head(net, state, model, source), name=model, source=source)
    net.pretrained_cfg = {"weights": source, **pretrained_cfg}
    return net


def load_pretrained(net: nn.Module, pretrained, model: str | None = None) -> nn.Module:
    """Load ``pretrained`` (see the module docstring) into ``net`` and record ``net.pretrained_cfg``
    (which weights, their data set, input normalisation and licence)."""
    model = model or getattr(net, "name", type(net).__name__)
    state, source, pretrained_cfg, config = resolve(pretrained, model)
    if config is not None and config.get("architecture") not in (None, model):
        raise ValueError(f"{source} holds weights of {config['architecture']}, not {model}; build it from its own "
                         f"config with create_model(pretrained={str(pretrained)!r})")
    return _load(net, state, model, source, pretrained_cfg)


def net_from_folder(location, **overrides) -> nn.Module:
    """The net an exported folder (or ``hf-hub:owner/name``) describes, built from its config.json
    (this package's classes only) with ``overrides`` on top, its weights loaded."""
    from omegaconf import OmegaConf

    if location is None or location is True:
        raise ValueError("create_model without a model name needs pretrained=<folder written by convzoo export> "
                         "or hf-hub:owner/name, whose config says what to build")
    state, source, pretrained_cfg, config = resolve(str(location), model="")
    if config is None:
        raise ValueError(f"{source} is a weights file without a config: give the model name, "
                         f"create_model('<model>', pretrained={str(location)!r})")
    model_cfg = OmegaConf.to_container(OmegaConf.merge(config["model_cfg"], overrides))
    net = build_from_config(model_cfg, where=f"model_cfg of {source}")
    return _load(net, state, str(model_cfg.get("name", "model")), source, pretrained_cfg)
