"""What the benchmark scripts' command lines share: the run options, ``--quick``, and model patterns."""
from __future__ import annotations

import argparse

import torch


def run_options(p: argparse.ArgumentParser, quick: dict) -> None:
    """``--device``, ``--quick`` (which sets ``quick``'s values) and ``--out``."""
    p.add_argument("--device", default="auto", help="cpu, cuda or auto")
    p.add_argument("--quick", action="store_true", help="smoke test: " + ", ".join(f"{k}={v}" for k, v in quick.items()))
    p.add_argument("--out", default=None, help="also write the markdown to this file")


def parse(p: argparse.ArgumentParser, argv, quick: dict, positive=("repeats", "batch_size", "warmup")):
    """Parse, apply ``--quick``, check the counts are >= 1, resolve ``--device``."""
    opts = p.parse_args(argv)
    if opts.quick:
        for key, value in quick.items():
            setattr(opts, key, value)
    for key in positive:
        if getattr(opts, key) < 1:
            p.error(f"--{key.replace('_', '-')} should be >= 1, got {getattr(opts, key)}")
    opts.device = torch.device("cuda" if opts.device == "auto" and torch.cuda.is_available()
                               else "cpu" if opts.device == "auto" else opts.device)
    return opts


def zoo_names(p: argparse.ArgumentParser, spec: str, option: str = "--models") -> list[str]:
    """Zoo model names from comma-separated names or patterns, in order, each once."""
    from convzoo.models import list_models

    names = []
    for part in (s.strip() for s in spec.split(",") if s.strip()):
        found = list_models(part)
        if not found:
            p.error(f"{option}: no zoo model matches {part!r}; known: {', '.join(list_models())}")
        names += [n for n in found if n not in names]
    return names
