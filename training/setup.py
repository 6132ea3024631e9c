"""What ``train(cfg)`` needs before the first step: checks, precision, callbacks, resume path."""
from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import hydra
import torch
from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check(key: str, value, ok, want: str) -> None:
    """``ValueError("<key> should be <want>, got <value>")`` unless ``value`` is None or a number with ``ok(value)``."""
    if value is not None and (not _is_number(value) or not ok(value)):
        raise ValueError(f"{key} should be {want}, got {value!r}")


def validate_config(cfg: DictConfig) -> None:
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
    if epochs == -1 and steps in (None, -1) and cfg.get("scheduler") is not None:
        name = str(cfg.scheduler.get("_target_", "?")).rsplit(".", 1)[-1]
        raise ValueError(f"scheduler {name} needs the run's length, but trainer.max_epochs=-1 with no "
                         f"trainer.max_steps is an unbounded run; set trainer.max_epochs >= 1 or trainer.max_steps >= 1")
    _check("module.label_smoothing", cfg.get("module", {}).get("label_smoothing"), lambda v: 0 <= v < 1, "in [0, 1)")
    model = cfg.model
    _check("model.width_mult", model.get("width_mult"), lambda v: v > 0, "> 0")
    head = model.get("head") or {}
    _check("model.head.dropout", head.get("dropout"), lambda v: 0 <= v < 1, "in [0, 1)")
    check_model_spec(cfg)


def check_model_spec(cfg: DictConfig) -> None:
    """Build the model on the meta device (no memory, no data): an unknown block, mismatched
    channels or a bad block argument fails now, naming the stage and block, not after the data is read."""
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    for key in ("num_classes", "in_chans"):  # what train() will pass, where the data config says it
        if isinstance(model_cfg, dict) and cfg.data.get(key) is not None:
            model_cfg[key] = cfg.data.get(key)
    try:
        with torch.device("meta"):
            hydra.utils.instantiate(model_cfg)
    except Exception as err:
        cause = err.__cause__ if isinstance(err, InstantiationException) else err
        if isinstance(cause, (ValueError, TypeError)):
            raise ValueError(f"model {cfg.model.get('name', '?')}: {cause}") from None
        # anything else (an op the meta device lacks): the real build in train() has the last word


def instantiate_checked(node, where: str, **kwargs):
    """``hydra.utils.instantiate`` whose argument errors come out as they are, not wrapped in Hydra's
    multi-line InstantiationException: ``ValueError("data: val_size=192 should be smaller than ...")``
    (a TypeError, e.g. an unknown keyword, becomes a ValueError; OSErrors pass unchanged)."""
    try:
        return hydra.utils.instantiate(node, **kwargs)
    except InstantiationException as err:
        cause = err.__cause__
        if isinstance(cause, OSError):
            raise cause from None
        if isinstance(cause, (ValueError, TypeError)):
            raise ValueError(f"{where}: {cause}") from None
        raise


def _command_line_keys(overrides: list[str] | None) -> set[str]:
    """Keys set on the command line (``model.num_classes=5``, ``+a.b=1``): from ``overrides``, or
    from Hydra's task overrides when Hydra is running (none when called from Python without Hydra)."""
    if overrides is None:
        from hydra.core.hydra_config import HydraConfig

        overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return {o.key_or_group for o in OverridesParser.create().parse_overrides(list(overrides)) if not o.is_delete()}


def check_data_fits(cfg: DictConfig, datamodule, *, checkpoint_hparams: dict | None = None,
                    overrides: list[str] | None = None) -> None:
    """The data's classes and channels against what the user asked for and what a resumed checkpoint has.

    train() takes ``model.num_classes`` / ``model.in_chans`` from the data, so a value given
    explicitly on the command line (``overrides``, default: Hydra's) that differs is an error, not
    silently replaced; a value from the model's YAML is a default and is replaced. Call it once the
    datamodule is built (classes often known before any data is read) and again after ``setup``;
    values still unknown (None) are skipped."""
    data = getattr(datamodule, "name", None) or type(datamodule).__name__
    given = _command_line_keys(overrides)
    for key, what in (("num_classes", "classes"), ("in_chans", "image channels")):
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
    from .evaluation import load_checkpoint  # names the file on a missing, truncated or unsafe checkpoint

    hparams = load_checkpoint(ckpt_path)["hyper_parameters"]
    saved, wanted = hparams["model_cfg"], OmegaConf.to_container(cfg.model, resolve=True)
    if saved.get("name") != wanted.get("name"):
        raise ValueError(f"cannot resume from {ckpt_path}: it is a checkpoint of model {saved.get('name')!r} but this "
                         f"run's model is {wanted.get('name')!r}; give model={saved.get('name')}, or drop ckpt_path "
                         f"to start a new run")
    ignored = {"num_classes", "in_chans", "source", "paper_params"}  # data-given, or descriptive only
    diff = [k for k in sorted(set(saved) | set(wanted)) if k not in ignored and saved.get(k) != wanted.get(k)]
    if diff:
        said = ", ".join(f"{k} ({_short(saved.get(k))} in the checkpoint, {_short(wanted.get(k))} now)" for k in diff)
        raise ValueError(f"cannot resume from {ckpt_path}: model {wanted.get('name')} differs from the checkpoint's in "
                         f"{said}; use the checkpoint's settings, or drop ckpt_path to start a new run")
    return hparams


def resolve_precision(precision, accelerator: str = "auto") -> str:
    """``auto``: bf16 mixed precision where the hardware the trainer runs on does it natively
    (GPUs with bf16, CPUs with AMX or AVX512-BF16), full fp32 elsewhere. Any other value is
    passed to Lightning as is."""
    if str(precision) != "auto":
        return str(precision)
    if str(accelerator) in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "32-true"
    return "bf16-mixed" if ("amx_bf16" in flags or "avx512_bf16" in flags) else "32-true"


PRECISIONS = {"32-true": None, "bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}  # Lightning's names -> dtype
ALIASES = {"fp32": "32-true", "32": "32-true", "bf16": "bf16-mixed", "fp16": "16-mixed", "16": "16-mixed"}


def canonical_precision(precision, device: torch.device) -> str:
    """'auto' as train.py resolves it (``resolve_precision``) and aliases to Lightning's names."""
    precision = resolve_precision(precision, "gpu" if device.type == "cuda" else "cpu")
    precision = ALIASES.get(precision, precision)
    if precision not in PRECISIONS:
        raise ValueError(f"precision should be one of {', '.join([*PRECISIONS, 'auto', *ALIASES])}, "
                         f"got {precision!r}")
    return precision


def autocast(precision: str, device: torch.device) -> AbstractContextManager:
    """What Lightning's mixed-precision plugin enters around the forward pass (none for 32-true)."""
    dtype = PRECISIONS[precision]
    return nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


def instantiate_list(group: DictConfig | None, **extra) -> list:
    """Instantiate every entry of a config group holding named objects (callbacks, loggers);
    an ``extra`` keyword argument goes to the entries whose config has that key."""
    if not group:
        return []
    objects = []
    for name, node in group.items():
        if node is None or "_target_" not in node:
            continue
        wanted = {k: v for k, v in extra.items() if k in node}
        objects.append(hydra.utils.instantiate(node, **wanted))
    return objects


def model_hparams(cfg: DictConfig, report) -> dict:
    """The run's key facts for TensorBoard's HParams tab and the leaderboard."""
    return {
        "model": cfg.model.get("name", "?"), "data": cfg.data._target_.rsplit(".", 1)[-1],
        "params": report.total_params, "macs": report.total_macs,
        "batch_size": cfg.data.get("batch_size"), "lr": cfg.optimizer.get("lr"),
        "optimizer": cfg.optimizer._target_.rsplit(".", 1)[-1], "epochs": cfg.trainer.get("max_epochs"),
        "precision": str(cfg.trainer.get("precision")), "seed": cfg.seed,
    }


def find_last_checkpoint(cfg: DictConfig) -> str:
    """``ckpt_path``: a file, or ``last``: the newest ``checkpoints/last.ckpt`` under
    ``paths.log_dir`` written by a run of the same model on the same data set."""
    wanted = str(cfg.ckpt_path)
    if wanted != "last":
        if not Path(wanted).is_file():
            raise FileNotFoundError(f"ckpt_path={wanted} does not exist; give a checkpoint file or 'last'")
        return wanted
    root = Path(cfg.paths.log_dir)
    model = cfg.model.get("name")
    candidates = []
    for ckpt in root.glob("**/checkpoints/last.ckpt"):
        run_cfg = ckpt.parent.parent / "config.yaml"
        saved = OmegaConf.load(run_cfg) if run_cfg.is_file() else None
        if saved is not None and saved.model.get("name") == model and \
                saved.data.get("_target_") == cfg.data.get("_target_"):
            candidates.append(ckpt)
    if not candidates:
        raise FileNotFoundError(f"ckpt_path=last: no checkpoints/last.ckpt of model {model!r} on "
                                f"{cfg.data.get('_target_')} under "
                                f"{root.resolve()}; give the checkpoint file instead")
    return str(max(candidates, key=lambda p: p.stat().st_mtime))
