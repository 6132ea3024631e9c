"""What ``train(cfg)`` needs before the first step: checks, precision, callbacks, resume path."""
from __future__ import annotations

from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf


def validate_config(cfg: DictConfig) -> None:
    """Fail in seconds, before any data is read, on values that would fail hours later."""
    lr = cfg.optimizer.get("lr")
    if lr is not None and not lr > 0:
        raise ValueError(f"optimizer.lr should be > 0, got {lr}")
    for key in ("batch_size", "eval_batch_size"):
        value = cfg.data.get(key)
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ValueError(f"data.{key} should be an integer >= 1, got {value!r}")
    epochs = cfg.trainer.get("max_epochs")
    if epochs is not None and epochs < 0 and epochs != -1:
        raise ValueError(f"trainer.max_epochs should be >= 0 (or -1 for no limit), got {epochs}")


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
