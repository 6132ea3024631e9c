"""convzoo: convolution building blocks, CIFAR-sized architectures built from Hydra configs, and a
Lightning pipeline that trains, evaluates and compares them.

    import convzoo
    convzoo.list_models("resnet*")
    net = convzoo.create_model("resnet20", num_classes=100)
    convzoo.list_pretrained()                       # "resnet20.cifar10.akamaster", ...
    net = convzoo.create_model("resnet20", pretrained=True)
    from convzoo.models.layers import InceptionBlock

``convzoo.models`` is pure PyTorch (importing it never imports Lightning); ``convzoo.data`` (the
datamodules) and ``convzoo.training`` (the Lightning core) load on first use.
"""
from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version

from .models import create_model, list_blocks, list_models, list_pretrained

try:
    __version__ = version("convzoo")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__", "create_model", "list_models", "list_blocks", "list_pretrained", "models", "data",
           "training"]


def __getattr__(name: str):
    # ``convzoo.data`` / ``convzoo.training`` import Lightning: load them only when asked for.
    if name in ("data", "training"):
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'convzoo' has no attribute {name!r}")
