"""The data a checkpoint is evaluated on: the run's own data config (same split, same normalisation)
unless the command line picks another, checked against the checkpoint's classes and channels."""
from __future__ import annotations

import copy
import inspect

import hydra
from omegaconf import DictConfig, OmegaConf, open_dict

from convzoo.models.serialization import check_targets

from .instantiate import instantiate_checked


def resolve_data_config(cfg: DictConfig, run_cfg: DictConfig | None, overrides: list[str]) -> DictConfig:
    """The run's own data config (same split, same normalisation), unless ``overrides`` (the
    command line) pick another data group (``data=folder``); ``data.key=value`` overrides apply
    on top of the run's. Without a run config (or with ``data_from_run=false``): ``cfg.data``."""
    if run_cfg is None or run_cfg.get("data") is None or not cfg.get("data_from_run", True):
        return cfg.data
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = [o for o in OverridesParser.create().parse_overrides(list(overrides))
              if o.key_or_group == "data" or o.key_or_group.startswith("data.")]
    if any(o.key_or_group == "data" for o in parsed):
        return cfg.data  # a different data set: the composed group, with its dotted overrides
    data = copy.deepcopy(run_cfg.data)
    check_targets(OmegaConf.to_container(data), package="convzoo.data", where="run config data")
    with open_dict(data):
        for o in parsed:
            key = o.key_or_group[len("data."):]
            if o.is_delete():
                parent_key, _, leaf = key.rpartition(".")
                parent = OmegaConf.select(data, parent_key) if parent_key else data
                if parent is not None and leaf in parent:
                    del parent[leaf]
            else:
                OmegaConf.update(data, key, OmegaConf.select(cfg.data, key), force_add=True)
    return data


def _accepts(target: str, name: str) -> bool:
    try:
        params = inspect.signature(hydra.utils.get_class(target)).parameters.values()
    except Exception:
        return False
    return any(p.name == name or p.kind is p.VAR_KEYWORD for p in params)


def build_datamodule(data_cfg: DictConfig, ckpt: dict, batch_size: int | None = None):
    """Instantiate the data, normalised as in training (the checkpoint's mean/std unless the data
    config sets its own), checking classes and channels against the checkpoint."""
    data_cfg = copy.deepcopy(data_cfg)
    info = ckpt["hyper_parameters"].get("data_info") or {}
    target = str(data_cfg.get("_target_", ""))
    with open_dict(data_cfg):
        if info.get("mean") is not None and data_cfg.get("mean") is None and _accepts(target, "mean"):
            data_cfg.mean, data_cfg.std = list(info["mean"]), list(info["std"])
        if batch_size is not None and "eval_batch_size" in data_cfg:
            data_cfg.eval_batch_size = batch_size
    dm = instantiate_checked(data_cfg, "data")
    _check_data(dm, ckpt)  # before setup when the data knows its classes up front: fail in seconds
    dm.prepare_data()
    dm.setup("test" if dm.has_test else "validate")
    _check_data(dm, ckpt)
    return dm


def _check_data(dm, ckpt: dict) -> None:
    hp = ckpt["hyper_parameters"]
    name = hp["model_cfg"].get("name", "model")
    classes = hp["model_cfg"].get("num_classes", hp.get("num_classes"))
    chans = hp["model_cfg"].get("in_chans")
    data = getattr(dm, "name", None) or type(dm).__name__
    if dm.num_classes is not None and classes is not None and dm.num_classes != classes:
        raise ValueError(f"checkpoint is {name} for {classes} classes but data {data} has {dm.num_classes}")
    if dm.in_chans is not None and chans is not None and dm.in_chans != chans:
        raise ValueError(f"checkpoint is {name} for {chans}-channel images but data {data} has {dm.in_chans}")
