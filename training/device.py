"""Which device and numeric precision a run, an evaluation or a benchmark uses: ``auto`` resolved
for the hardware at hand, Lightning's precision names and their aliases, and the autocast context
that matches Lightning's mixed-precision plugin."""
from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch

from .machine import has_native_bf16


def resolve_device(name: str) -> torch.device:
    if str(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(str(name))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={name} but no CUDA GPU is available; use device=cpu or device=auto")
    return device


def resolve_precision(precision, accelerator: str = "auto") -> str:
    """``auto``: bf16 mixed precision where the hardware the trainer runs on does it natively
    (GPUs with bf16, CPUs with AMX or AVX512-BF16), full fp32 elsewhere. Any other value is
    passed to Lightning as is."""
    if str(precision) != "auto":
        return str(precision)
    if str(accelerator) in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "bf16-mixed" if has_native_bf16() else "32-true"


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
