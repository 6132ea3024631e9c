"""Weight files in and out: fetching published files (a weights folder, torch.hub's cache, a download,
the SHA-256 checked every time), safetensors, and the self-describing folder that ``convzoo export``
writes and ``create_model(pretrained=...)`` reads (the layout timm uses on the Hugging Face Hub).

Where a registered file is looked for, in order:

1. ``$CONVZOO_WEIGHTS_DIR/<file name>``: for machines without internet (copy the files there);
2. torch.hub's cache, ``<torch.hub.get_dir()>/checkpoints/<file name>`` (``$TORCH_HOME``);
3. the file's URL, downloaded into that cache with ``torch.hub.download_url_to_file``.

A hash known only by its first hex digits (torch.hub's ``check_hash`` convention: the digits in a
file name such as ``resnet56-4bfd9763.th``) is checked as a prefix: it catches a truncated or
corrupt file, but 8 digits are 32 bits, not a guarantee that the file is the published one.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from urllib.error import URLError
from urllib.parse import unquote, urlparse

import torch

log = logging.getLogger(__name__)

WEIGHTS_DIR_ENV = "CONVZOO_WEIGHTS_DIR"
WEIGHTS_FILE, CONFIG_JSON, CONFIG_YAML, CARD = "model.safetensors", "config.json", "config.yaml", "README.md"
HF_PREFIX = "hf-hub:"


def sha256_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_sha256(path: str | os.PathLike, expected: str) -> None:
    """The file's SHA-256 must be ``expected`` (64 hex digits) or start with it (a known prefix)."""
    actual = sha256_of(path)
    if not actual.startswith(expected.lower()):
        what = "" if len(expected) == 64 else f" (only its first {len(expected)} hex digits are known)"
        raise ValueError(f"{path} has SHA-256 {actual}, expected {expected}{what}: the file is corrupt or not "
                         f"the published one; delete it and fetch it again")


def cache_dir() -> Path:
    """Where downloaded weights are kept: torch.hub's own cache, shared with torchvision and timm."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def fetch(url: str, sha256: str, file_name: str | None = None, progress: bool = False) -> Path:
    """A local copy of ``url`` whose hash is checked: from ``$CONVZOO_WEIGHTS_DIR``, the cache, or
    downloaded into the cache (``file://`` URLs too). Errors say where the file can be put by hand."""
    file_name = file_name or Path(urlparse(url).path).name
    folder = os.environ.get(WEIGHTS_DIR_ENV)
    candidates = ([Path(folder) / file_name] if folder else []) + [cache_dir() / file_name]
    for path in candidates:
        if path.is_file():
            check_sha256(path, sha256)
            return path
    target = cache_dir() / file_name
    target.parent.mkdir(parents=True, exist_ok=True)
    try:  # writes to a temporary file and renames it: an interrupted download leaves nothing behind
        torch.hub.download_url_to_file(url, str(target), hash_prefix=None, progress=progress)
    except (URLError, OSError) as err:
        where = f"${WEIGHTS_DIR_ENV} ({folder})" if folder else f"a folder named by ${WEIGHTS_DIR_ENV}"
        raise FileNotFoundError(f"cannot download {url} ({getattr(err, 'reason', err)}); without internet, put "
                                f"{file_name} into {where} or into torch.hub's cache {target.parent}") from None
    try:
        check_sha256(target, sha256)
    except ValueError:
        target.unlink(missing_ok=True)  # never leave a bad file where the next call would trust it
        raise
    return target


def local_path(location: str) -> Path:
    """A path given as such or as a ``file://`` URL."""
    if location.startswith("file://"):
        return Path(unquote(urlparse(location).path))
    return Path(location).expanduser()


# ---- safetensors and the exported folder ----------------------------------------------------------

def _safetensors():
    try:
        import safetensors.torch
    except ImportError:
        raise ImportError("safetensors files need the safetensors package: pip install 'convzoo[export]'") from None
    return safetensors.torch


def save_safetensors(state: dict[str, torch.Tensor], path: str | os.PathLike, metadata: dict | None = None) -> None:
    # safetensors refuses tensors that share memory or are not contiguous: plain copies are stored
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}
    _safetensors().save_file(tensors, str(path), metadata={k: str(v) for k, v in (metadata or {}).items()})


def load_safetensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors only: a safetensors file cannot carry code, so it is safe from any source."""
    try:
        return _safetensors().load_file(str(path), device="cpu")
    except ImportError:
        raise
    except Exception as err:
        raise ValueError(f"{path} is not a valid safetensors file: {type(err).__name__}: {err}") from None


def write_folder(folder: str | os.PathLike, state: dict[str, torch.Tensor], model_cfg: dict,
                 pretrained_cfg: dict, card: str) -> Path:
    """``folder`` with model.safetensors (the weights), config.json (``architecture``, ``num_classes``,
    ``model_cfg``: the composed spec, ``pretrained_cfg``: input size and normalisation), config.yaml
    (the spec alone, a Hydra model node) and README.md (the model card)."""
    from omegaconf import OmegaConf

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    name = str(model_cfg.get("name", "model"))
    save_safetensors(state, folder / WEIGHTS_FILE, {"format": "pt", "architecture": name})
    config = {"architecture": name, "num_classes": model_cfg.get("num_classes"), "model_cfg": model_cfg,
              "pretrained_cfg": pretrained_cfg}
    (folder / CONFIG_JSON).write_text(json.dumps(config, indent=2) + "\n")
    (folder / CONFIG_YAML).write_text(OmegaConf.to_yaml(OmegaConf.create(model_cfg)))
    (folder / CARD).write_text(card)
    return folder


def read_folder(folder: str | os.PathLike) -> tuple[dict, dict[str, torch.Tensor]]:
    """(config.json, weights) of a folder that ``write_folder`` wrote."""
    folder = Path(folder)
    missing = [n for n in (CONFIG_JSON, WEIGHTS_FILE) if not (folder / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder} is not an exported model folder: it lacks {' and '.join(missing)} "
                                f"(write one with 'convzoo export <checkpoint> --out {folder}')")
    try:
        config = json.loads((folder / CONFIG_JSON).read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{folder / CONFIG_JSON} is not valid JSON: {err}") from None
    if not isinstance(config, dict) or not isinstance(config.get("model_cfg"), dict):
        raise ValueError(f"{folder / CONFIG_JSON} has no model_cfg, so the net cannot be rebuilt from it")
    return config, load_safetensors(folder / WEIGHTS_FILE)


def hub_folder(location: str) -> Path:
    """``hf-hub:owner/name[@revision]`` as a local folder (huggingface_hub's cache)."""
    repo = location[len(HF_PREFIX):]
    repo, _, revision = repo.partition("@")
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise ImportError(f"{location} needs the huggingface_hub package (pip install huggingface_hub); or "
                          f"download the folder and pass its path") from None
    try:
        return Path(snapshot_download(repo, revision=revision or None,
                                      allow_patterns=[CONFIG_JSON, CONFIG_YAML, WEIGHTS_FILE, CARD]))
    except Exception as err:  # offline, unknown repository, no access: huggingface_hub's own error types
        raise FileNotFoundError(f"cannot fetch {location} from the Hugging Face Hub ({type(err).__name__}: "
                                f"{str(err).splitlines()[0] if str(err) else ''}); download the folder and "
                                f"pass its path, or set HF_HUB_OFFLINE=1 to use huggingface_hub's cache") from None
