"""Checks ``train(cfg)`` makes before the first step: values, the model spec, the data against the
model, and a checkpoint to resume from. Each error names the key, the bad value and what is valid."""
from __future__ import annotations

import warnings
from pathlib import Path

import hydra
import torch
from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf

from convzoo.models.complexity import flop_counter_macs
from convzoo.models.pretrained import check_pretrained
from convzoo.models.serialization import load_checkpoint
from .budget import parse_budget, steps_for_flops
from .instantiate import instantiate_checked


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check(key: str, value, ok, want: str) -> None:
    """``ValueError("<key> should be <want>, got <value>")`` unless ``value`` is None or a number with ``ok(value)``."""
    if value is not None and (not _is_number(value) or not ok(value)):
        raise ValueError(f"{key} should be {want}, got {value!r}")


def validate_config(cfg: DictConfig, net_args: tuple[str, ...] = ("num_classes", "in_chans")) -> None:
    """Fail in seconds, before any data is read or anything is written, on values that would fail
    (or silently misbehave) later: each error names the key, the bad value and what is valid."""
    opt = cfg.optimizer
    _check("optimizer.lr", opt.get("lr"), lambda v: v > 0, "> 0")
    _check("optimizer.weight_decay", opt.get("weight_decay"), lambda v: v >= 0, ">= 0")
    for key in ("batch_size", "eval_batch_size"):
        value = cfg.data.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"data.{key} should be an integer >= 1, got {value!r}")
    epochs, steps = cfg.trainer.get("max_epochs"), cfg.trainer.get("max_steps")
    if epochs is not None and (not isinstance(epochs, int) or isinstance(epochs, bool) or (epochs < 0 and epochs != -1)):
        raise ValueError(f"trainer.max_epochs should be >= 0 (or -1 for no limit), got {epochs!r}")
    if steps is not None and (not isinstance(steps, int) or isinstance(steps, bool) or (steps < 1 and steps != -1)):
        raise ValueError(f"trainer.max_steps should be >= 1 (or -1 for no limit), got {steps!r}")
    if epochs == -1 and steps in (None, -1) and cfg.get("scheduler") is not None and cfg.get("budget") is None:
        name = str(cfg.scheduler.get("_target_", "?")).rsplit(".", 1)[-1]
        raise ValueError(f"scheduler {name} needs the run's length, but trainer.max_epochs=-1 with no "
                         f"trainer.max_steps is an unbounded run; set trainer.max_epochs >= 1 or trainer.max_steps >= 1")
    _check("module.label_smoothing", cfg.get("module", {}).get("label_smoothing"), lambda v: 0 <= v < 1, "in [0, 1)")
    for key in ("channels_last", "compile"):
        value = cfg.get("module", {}).get(key)
        if value is not None and not isinstance(value, bool) and value != "auto":
            raise ValueError(f"module.{key} should be true, false or auto, got {value!r}")
    calibration = cfg.get("calibration") or {}
    _check("calibration.min_steps", calibration.get("min_steps"), lambda v: v >= 0, ">= 0")
    _check("calibration.min_seconds", calibration.get("min_seconds"), lambda v: v >= 0, ">= 0")
    _check("calibration.compile_min_minutes", calibration.get("compile_min_minutes"), lambda v: v >= 0, ">= 0")
    check_budget(cfg, net_args)
    progressive = (cfg.get("callbacks") or {}).get("progressive")
    if progressive is not None and progressive.get("_target_"):  # a cheap constructor: its argument checks
        instantiate_checked(progressive, "callbacks.progressive")
    model = cfg.model
    _check("model.width_mult", model.get("width_mult"), lambda v: v > 0, "> 0")
    head = model.get("head") or {}
    _check("model.head.dropout", head.get("dropout"), lambda v: 0 <= v < 1, "in [0, 1)")
    check_model_spec(cfg, net_args)


def check_budget(cfg: DictConfig, net_args: tuple[str, ...] = ("num_classes", "in_chans"),
                 overrides: list[str] | None = None) -> None:
    """``budget``: well formed and more than zero; a FLOP budget pays for at least one optimizer step
    (MACs counted on the meta device at the data config's image size, 32x32 unless it says); a
    ``trainer.max_epochs`` given on the command line beside a budget is ignored, with a warning."""
    budget = parse_budget(cfg.get("budget"))
    if budget is None:
        return
    if "trainer.max_epochs" in _command_line_keys(overrides):
        warnings.warn(f"budget={budget.text} sets the run's length: trainer.max_epochs="
                      f"{cfg.trainer.get('max_epochs')} is ignored (drop budget to train by epochs)", stacklevel=2)
    if budget.kind != "flop":
        return
    model_cfg = _model_cfg_for(cfg, net_args)
    size = cfg.data.get("image_size") or 32
    size = tuple(size) if not isinstance(size, int) else (size, size)
    try:
        with torch.device("meta"):
            macs = flop_counter_macs(hydra.utils.instantiate(model_cfg),
                                     (cfg.data.get("in_chans") or 3, *size), device="meta")
    except Exception:
        return  # the model's own checks report a bad spec; train() checks the budget again with the data
    steps_for_flops(budget, macs, int(cfg.data.get("batch_size") or 1) * accumulation(cfg), str(cfg.model.get("name")))


def accumulation(cfg: DictConfig) -> int:
    """Batches per optimizer step (``trainer.accumulate_grad_batches``, 1 when unset)."""
    return max(1, int(cfg.trainer.get("accumulate_grad_batches") or 1))


def _model_cfg_for(cfg: DictConfig, net_args) -> dict:
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    for key in net_args:  # what train() will pass, where the data config says it
        if isinstance(model_cfg, dict) and cfg.data.get(key) is not None:
            model_cfg[key] = cfg.data.get(key)
    return model_cfg


def check_model_spec(cfg: DictConfig, net_args: tuple[str, ...] = ("num_classes", "in_chans")) -> None:
    """Build the model on the meta device (no memory, no data): an unknown block, mismatched
    channels or a bad block argument fails now, naming the stage and block, not after the data is read.
    ``net_args``: what the task builds the net with from the data (the task's ``NET_ARGS``)."""
    model_cfg = _model_cfg_for(cfg, net_args)
    if isinstance(model_cfg, dict):  # weights to start from: named well, before anything is fetched
        check_pretrained(model_cfg.get("pretrained"), str(model_cfg.get("name")))
    try:
        with torch.device("meta"):
            hydra.utils.instantiate(model_cfg)
    except Exception as err:
        cause = err.__cause__ if isinstance(err, InstantiationException) else err
        if isinstance(cause, (ValueError, TypeError)):
            raise ValueError(f"model {cfg.model.get('name', '?')}: {cause}") from None
        # anything else (an op the meta device lacks): the real build in train() has the last word


def _command_line_keys(overrides: list[str] | None) -> set[str]:
    """Keys set on the command line (``model.num_classes=5``, ``+a.b=1``): from ``overrides``, or
    from Hydra's task overrides when Hydra is running (none when called from Python without Hydra)."""
    if overrides is None:
        from hydra.core.hydra_config import HydraConfig

        overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return {o.key_or_group for o in OverridesParser.create().parse_overrides(list(overrides)) if not o.is_delete()}


def check_data_fits(cfg: DictConfig, datamodule, *, net_args: tuple[str, ...] = ("num_classes", "in_chans"),
                    checkpoint_hparams: dict | None = None, overrides: list[str] | None = None) -> None:
    """The data's classes and channels against what the user asked for and what a resumed checkpoint has.

    train() takes ``model.num_classes`` / ``model.in_chans`` from the data, so a value given
    explicitly on the command line (``overrides``, default: Hydra's) that differs is an error, not
    silently replaced; a value from the model's YAML is a default and is replaced. Call it once the
    datamodule is built (classes often known before any data is read) and again after ``setup``;
    values still unknown (None) are skipped."""
    data = getattr(datamodule, "name", None) or type(datamodule).__name__
    given = _command_line_keys(overrides)
    for key, what in (("num_classes", "classes"), ("in_chans", "image channels")):
        if key not in net_args:
            continue
        have = getattr(datamodule, key, None)
        if have is None:
            continue
        wanted = cfg.model.get(key)
        if f"model.{key}" in given and wanted != have:
            raise ValueError(f"model.{key}={wanted} was set on the command line but data {data} has {have} {what}; "
                             f"train sets model.{key} from the data: drop model.{key}=..., or use data with {wanted} {what}")
        if checkpoint_hparams is not None:
            saved = checkpoint_hparams["model_cfg"].get(key)
            if saved is not None and saved != have:
                name = checkpoint_hparams["model_cfg"].get("name", "?")
                raise ValueError(f"cannot resume: the checkpoint is {name} for {saved} {what} but data {data} has "
                                 f"{have}; resume on the data it was trained on (see its run's config.yaml), or drop "
                                 f"ckpt_path to start a new run")


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_resume_checkpoint(cfg: DictConfig, ckpt_path: str | Path) -> dict:
    """Before anything is trained or written: the checkpoint loads with ``torch.load(weights_only=True)``
    and was written for this run's model (same name, same spec up to the classes and channels, which
    ``check_data_fits`` compares with the data). Returns its ``hyper_parameters``."""
    hparams = load_checkpoint(ckpt_path)["hyper_parameters"]
    saved, wanted = hparams["model_cfg"], OmegaConf.to_container(cfg.model, resolve=True)
    if saved.get("name") != wanted.get("name"):
        raise ValueError(f"cannot resume from {ckpt_path}: it is a checkpoint of model {saved.get('name')!r} but this "
                         f"run's model is {wanted.get('name')!r}; give model={saved.get('name')}, or drop ckpt_path "
                         f"to start a new run")
    # data-given, descriptive only, or (pretrained) replaced by the checkpoint's weights
    ignored = {"num_classes", "in_chans", "source", "paper_params", "pretrained"}
    diff = [k for k in sorted(set(saved) | set(wanted)) if k not in ignored and saved.get(k) != wanted.get(k)]
    if diff:
        said = ", ".join(f"{k} ({_short(saved.get(k))} in the checkpoint, {_short(wanted.get(k))} now)" for k in diff)
        raise ValueError(f"cannot resume from {ckpt_path}: model {wanted.get('name')} differs from the checkpoint's in "
                         f"{said}; use the checkpoint's settings, or drop ckpt_path to start a new run")
    return hparams
