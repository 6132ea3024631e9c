"""Evaluate one checkpoint written by ``train.py``: rebuild the net from the checkpoint's own
config, run it on the test split (or the validation split), and time it.

A checkpoint is read with ``torch.load(weights_only=True)``, so it can hold tensors and plain
data only: loading never runs code. The net is rebuilt from ``hyper_parameters.model_cfg`` by
Hydra, and every ``_target_`` in that config must name a callable defined in this project's
``models`` package; anything else (``os.system``, ``models.net.torch.load``, ...) is refused.
"""
from __future__ import annotations

import copy
import inspect
import re
import statistics
import time
from pathlib import Path

import hydra
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import nn

from convzoo.models.serialization import safe_torch_load

from .reporting import confusion_matrix, per_class_accuracy
from .setup import instantiate_checked

# Dotted names only, no private or dunder parts: ``convzoo.models.Net``, ``convzoo.models.net.Net``.
_TARGET = re.compile(r"[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)+")


# ---- reading a checkpoint safely --------------------------------------------------------------

def load_checkpoint(path: str | Path) -> dict:
    """The checkpoint dict, loaded with ``weights_only=True``; clear errors for a missing,
    truncated, unsafe or foreign file."""
    path = Path(path)
    ckpt = safe_torch_load(path)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise ValueError(f"{path} is not a Lightning checkpoint: it has no state_dict")
    hparams = ckpt.get("hyper_parameters")
    if not isinstance(hparams, dict) or not isinstance(hparams.get("model_cfg"), dict):
        raise ValueError(f"{path} has no hyper_parameters.model_cfg: it was not written by train.py's "
                         f"ClassificationModule, so the net cannot be rebuilt from it")
    return ckpt


def check_targets(cfg, package: str = "convzoo.models", where: str = "model_cfg") -> None:
    """Every ``_target_`` anywhere in ``cfg`` must resolve to a callable defined in ``package``.

    The resolved object's own ``__module__`` is checked, not just the name's prefix: a name such
    as ``models.net.torch.load`` starts with ``models.`` but reaches torch through an import."""
    if isinstance(cfg, dict):
        for key, value in cfg.items():
            if key == "_target_":
                _check_target(value, package, where)
            else:
                check_targets(value, package, f"{where}.{key}")
    elif isinstance(cfg, (list, tuple)):
        for i, value in enumerate(cfg):
            check_targets(value, package, f"{where}[{i}]")


def _check_target(target, package: str, where: str) -> None:
    refuse = (f"refusing to instantiate {where}._target_={target!r}: only callables defined in this "
              f"project's {package!r} package are built from a checkpoint (e.g. convzoo.models.Net)")
    if not isinstance(target, str) or not _TARGET.fullmatch(target) or not target.startswith(package + "."):
        raise ValueError(refuse)
    try:
        obj = hydra.utils.get_object(target)
    except Exception:
        raise ValueError(f"{refuse}; {target!r} does not name anything in it") from None
    module = getattr(obj, "__module__", None) or ""
    if not callable(obj) or not (module == package or module.startswith(package + ".")):
        raise ValueError(refuse)


def build_net(ckpt: dict, path: str | Path = "checkpoint") -> nn.Module:
    """The checkpoint's net (eval mode, fp32, on the CPU) with its ``net.`` weights loaded strictly."""
    model_cfg = copy.deepcopy(ckpt["hyper_parameters"]["model_cfg"])
    check_targets(model_cfg)
    net = hydra.utils.instantiate(model_cfg)
    if not isinstance(net, nn.Module):
        raise ValueError(f"model_cfg of {path} built a {type(net).__name__}, not an nn.Module")
    state = {k[len("net."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}
    if not state:
        raise ValueError(f"{path} has no 'net.'-prefixed weights in its state_dict")
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(f"the weights in {path} do not fit the model its model_cfg describes: {err}") from None
    return net.float().eval()


def model_name(ckpt: dict) -> str:
    return str(ckpt["hyper_parameters"]["model_cfg"].get("name", "model"))


def run_dir_of(ckpt_path: str | Path) -> Path:
    """``<run>/checkpoints/x.ckpt`` -> ``<run>``; a checkpoint elsewhere -> its own folder."""
    parent = Path(ckpt_path).resolve().parent
    return parent.parent if parent.name == "checkpoints" else parent


# ---- the data to evaluate on ------------------------------------------------------------------

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
    hp, name = ckpt["hyper_parameters"], model_name(ckpt)
    classes = hp["model_cfg"].get("num_classes", hp.get("num_classes"))
    chans = hp["model_cfg"].get("in_chans")
    data = getattr(dm, "name", None) or type(dm).__name__
    if dm.num_classes is not None and classes is not None and dm.num_classes != classes:
        raise ValueError(f"checkpoint is {name} for {classes} classes but data {data} has {dm.num_classes}")
    if dm.in_chans is not None and chans is not None and dm.in_chans != chans:
        raise ValueError(f"checkpoint is {name} for {chans}-channel images but data {data} has {dm.in_chans}")


# ---- accuracy and speed -----------------------------------------------------------------------

@torch.inference_mode()
def predict(net: nn.Module, loader, device: torch.device, tta_flip: bool = False
            ) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(predictions, targets, summed cross-entropy) over a loader, in fp32; ``tta_flip`` averages
    the logits of each image and its mirror image, as training's validation did."""
    preds, targets, loss = [], [], 0.0
    for x, y in loader:
        x = x.to(device, torch.float32)
        logits = net(x).float()  # (N, num_classes)
        if tta_flip:
            logits = (logits + net(x.flip(3)).float()) / 2
        y = y.to(device)
        loss += F.cross_entropy(logits, y, reduction="sum").item()
        preds.append(logits.argmax(1).cpu())
        targets.append(y.cpu())
    return torch.cat(preds), torch.cat(targets), loss


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def measure_speed(net: nn.Module, input_shape, device: torch.device, *, batch_size: int = 256,
                  repeats: int = 5, warmup: int = 2, latency_iters: int = 10) -> dict:
    """Throughput (images/s) at ``batch_size`` and latency (ms) at batch 1, fp32: the median of
    ``repeats`` timings after ``warmup`` untimed passes (first passes pay for allocation)."""
    batch = torch.randn(batch_size, *input_shape, device=device)
    single = batch[:1].clone()

    def seconds(x: torch.Tensor, iters: int) -> float:
        _sync(device)
        start = time.perf_counter()
        for _ in range(iters):
            net(x)
        _sync(device)
        return (time.perf_counter() - start) / iters

    for _ in range(warmup):
        net(batch), net(single)
    batch_s = statistics.median(seconds(batch, 1) for _ in range(repeats))
    single_s = statistics.median(seconds(single, latency_iters) for _ in range(repeats))
    return {"images_per_sec": batch_size / batch_s, "throughput_batch_size": batch_size,
            "latency_ms": single_s * 1e3, "repeats": repeats, "precision": "fp32",
            "threads": torch.get_num_threads()}


def resolve_device(name: str) -> torch.device:
    if str(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(str(name))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={name} but no CUDA GPU is available; use device=cpu or device=auto")
    return device


def accuracy_report(preds: torch.Tensor, targets: torch.Tensor, loss_sum: float, class_names) -> dict:
    """Accuracy, mean loss, per-class accuracy (None for a class with no samples) and the confusion matrix."""
    cm = confusion_matrix(preds, targets, len(class_names))
    per_class = per_class_accuracy(cm).tolist()
    return {
        "num_samples": int(targets.numel()),
        "acc": float((preds == targets).double().mean()) if targets.numel() else float("nan"),
        "loss": loss_sum / max(1, targets.numel()),
        "per_class_acc": {str(n): (None if a != a else a) for n, a in zip(class_names, per_class)},
        "confusion_matrix": cm.tolist(),
    }
