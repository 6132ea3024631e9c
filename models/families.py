"""Which family each zoo model belongs to, for tables and plots that group models."""
from __future__ import annotations

import yaml

from .registry import _model_dir, list_models


def model_family(name: str) -> str:
    """The base a model pulls in (``defaults: [family/<family>@_here_]``), followed through variants
    that build on another model (fastnet_wide on fastnet). A model written directly on the generic
    base (``family/net``: googlenet, mobilenet_v1, ...) is its own family."""
    known = list_models()
    if name not in known:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(known)}")
    seen = name
    while True:
        spec = yaml.safe_load((_model_dir() / f"{seen}.yaml").read_text()) or {}
        entries = [d.split("@")[0] for d in spec.get("defaults", []) if isinstance(d, str) and d != "_self_"]
        base = next((d for d in entries if d.startswith("family/")), None)
        if base is not None:
            family = base.split("/", 1)[1]
            return seen if family == "net" else family
        parents = [d for d in entries if d in known]
        if not parents:
            return seen
        seen = parents[0]
