"""Checkpoints in, networks out: reading files safely (``torch.load(weights_only=True)`` only, never
arbitrary unpickling), checking that a saved config names only this package's classes, and loading
weights with errors that say what does not fit. Every caller that turns a checkpoint or a saved
config into a network (evaluate, create_model, the studies' reports) uses this module."""
from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch


def safe_torch_load(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``: tensors and plain containers only, so a file that
    carries code is refused without running it. Errors name the file and the cause."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if not path.is_file():
        raise ValueError(f"checkpoint {path} is not a file (give a .ckpt file, e.g. <run>/checkpoints/last.ckpt)")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        # weights_only refuses any pickled global that is not a tensor or plain container
        found = re.search(r"Unsupported global: [^\n]*", str(err))
        what = f" ({found.group(0).strip()})" if found else ""
        raise ValueError(f"{path} is not a safe, valid checkpoint: torch.load(weights_only=True) refused it{what}; "
                         "it was not unpickled (a checkpoint should hold only tensors and plain data)") from None
    except Exception as err:  # zip or EOF errors: truncated, corrupt, or not a torch file at all
        first = str(err).splitlines()[0] if str(err) else ""
        raise ValueError(f"{path} is not a valid checkpoint (truncated, corrupt or not written by torch.save): "
                         f"{type(err).__name__}: {first}") from None


# ---- turning a checkpoint into a network: the one implementation that every caller uses ----------

# Dotted names only, no private or dunder parts: ``convzoo.models.Net``, ``convzoo.models.net.Net``.
_TARGET = re.compile(r"[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)+")
MODELS_PACKAGE = "convzoo.models"


def load_checkpoint(path: str | os.PathLike) -> dict:
    """A ``train.py`` checkpoint dict, loaded with ``weights_only=True``; clear errors for a missing,
    truncated, unsafe or foreign file, or one the net cannot be rebuilt from."""
    path = Path(path)
    ckpt = safe_torch_load(path)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise ValueError(f"{path} is not a Lightning checkpoint: it has no state_dict")
    hparams = ckpt.get("hyper_parameters")
    if not isinstance(hparams, dict) or not isinstance(hparams.get("model_cfg"), dict):
        raise ValueError(f"{path} has no hyper_parameters.model_cfg: it was not written by train.py's "
                         f"task module, so the net cannot be rebuilt from it")
    return ckpt


def check_targets(cfg, package: str = MODELS_PACKAGE, where: str = "model_cfg") -> None:
    """Every ``_target_`` anywhere in ``cfg`` must resolve to a callable defined in ``package``.

    The resolved object's own ``__module__`` is checked, not just the name's prefix: a name such
    as ``convzoo.models.net.torch.load`` starts with the package but reaches torch through an import."""
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
    import hydra.utils

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


def build_from_config(model_cfg: dict, where: str = "model_cfg") -> torch.nn.Module:
    """The net a saved model config describes (a run's config.yaml or a checkpoint's ``model_cfg``),
    built only from this package's own classes (``check_targets``)."""
    import copy

    import hydra.utils

    model_cfg = copy.deepcopy(model_cfg)
    check_targets(model_cfg, where=where)
    if model_cfg.get("pretrained"):  # the saved weights replace those it started from: do not fetch them
        model_cfg["pretrained"] = None
    net = hydra.utils.instantiate(model_cfg)
    if not isinstance(net, torch.nn.Module):
        raise ValueError(f"{where} built a {type(net).__name__}, not an nn.Module")
    return net


def net_state(ckpt, path: str | os.PathLike = "checkpoint") -> dict[str, torch.Tensor]:
    """The net's weights in a loaded file: a ``train.py`` checkpoint (``state_dict`` entries under
    ``net.``) or a plain state_dict."""
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} holds no state_dict (a dict of tensors), so it has no weights to load")
    if any(str(k).startswith("net.") for k in state):  # a Lightning checkpoint: the net's weights only
        state = {k[len("net."):]: v for k, v in state.items() if str(k).startswith("net.")}
    return state


def load_weights(net: torch.nn.Module, state: dict[str, torch.Tensor], *, name: str = "the model",
                 source: str | os.PathLike = "checkpoint") -> torch.nn.Module:
    """``net.load_state_dict(state, strict=True)``, with an error that says what does not fit: the
    class count (and the ``num_classes`` to pass), missing or extra weights, differing shapes."""
    own = net.state_dict()
    missing, unexpected = sorted(own.keys() - state.keys()), sorted(state.keys() - own.keys())
    wrong = [k for k in own.keys() & state.keys() if own[k].shape != state[k].shape]
    problems = []
    fc_w = getattr(getattr(net, "fc", None), "weight", None)
    if "fc.weight" in wrong and fc_w is not None and state["fc.weight"].shape[1:] == fc_w.shape[1:]:
        problems.append(f"checkpoint has {state['fc.weight'].shape[0]} classes, model {name} was built for "
                        f"{fc_w.shape[0]} (pass num_classes={state['fc.weight'].shape[0]})")
        wrong = [k for k in wrong if k not in ("fc.weight", "fc.bias")]

    def few(keys):
        return ", ".join(keys[:5]) + (f" (+{len(keys) - 5} more)" if len(keys) > 5 else "")

    if missing:
        problems.append(f"{len(missing)} weights of {name} are missing from it: {few(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} weights in it are not in {name}: {few(unexpected)}")
    if wrong:
        problems.append("shapes differ: " + few([f"{k} {tuple(state[k].shape)} in the checkpoint vs "
                                                 f"{tuple(own[k].shape)} in the model" for k in sorted(wrong)]))
    if (missing or unexpected or wrong) and not problems[0].startswith("checkpoint has"):
        problems.append("it was probably saved from another architecture")
    if problems:
        raise ValueError(f"the weights in {source} do not fit model {name}: " + "; ".join(problems))
    net.load_state_dict(state, strict=True)
    return net


def net_from_checkpoint(ckpt: dict | str | os.PathLike, path: str | os.PathLike | None = None) -> torch.nn.Module:
    """A ``train.py`` checkpoint (a file, or its loaded dict) as its network: rebuilt from the saved
    ``model_cfg`` (this package's classes only), weights loaded strictly; eval mode, fp32, on the CPU."""
    if not isinstance(ckpt, dict):
        path, ckpt = ckpt, load_checkpoint(ckpt)
    source = path if path is not None else "checkpoint"
    model_cfg = ckpt["hyper_parameters"]["model_cfg"]
    net = build_from_config(model_cfg, where=f"model_cfg of {source}" if path is not None else "model_cfg")
    state = net_state(ckpt, source)
    if not state:
        raise ValueError(f"{source} has no 'net.'-prefixed weights in its state_dict")
    return load_weights(net, state, name=str(model_cfg.get("name", "model")), source=source).float().eval()
