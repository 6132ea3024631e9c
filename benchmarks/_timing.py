"""What every benchmark table shares: timing, precisions, the matmul peak, the machine, markdown.

A measured ``Case`` is a zero-argument ``step`` and the work one step does (images, or FLOPs
for the matmul). ``interleave`` first runs each case's warm-up steps (allocation, oneDNN
primitive creation, lazy initialisation), times one more step to pick how many steps make a
repeat last at least ``min_seconds`` (so a small and a large model are timed with similar
precision), then runs the repeats round-robin, A B C A B C ..., so a burst of machine noise
hits every case, not one. Rates are ``work * steps / seconds``; tables report their median.
"""
from __future__ import annotations

import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch

from convzoo.training.setup import ALIASES, PRECISIONS, autocast, canonical_precision  # noqa: F401 (re-exported)


@dataclass
class Case:
    step: Callable[[], object]
    work: float                                   # images (or FLOPs) per step
    context: Callable[[], AbstractContextManager] = nullcontext  # entered around every timed call
    warmup: int | None = None                     # untimed steps first (None: interleave's)
    probe: int = 1                                # steps timed to calibrate (more for prefetching loaders)
    min_seconds: float | None = None              # per repeat, instead of interleave's
    steps: int = field(default=0, init=False)     # steps per repeat, set by calibration


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_steps(case: Case, n: int, device: torch.device) -> float:
    """Seconds for ``n`` calls of ``case.step`` (the device is synchronised at both ends)."""
    with case.context():
        sync(device)
        start = time.perf_counter()
        for _ in range(n):
            case.step()
        sync(device)
        return time.perf_counter() - start


def calibrate(case: Case, min_seconds: float, device: torch.device, warmup: int = 2,
              max_steps: int = 100_000) -> None:
    run_steps(case, warmup if case.warmup is None else case.warmup, device)
    if case.min_seconds is not None:
        min_seconds = min(min_seconds, case.min_seconds)
    if min_seconds <= 0:  # smoke tests: one step per repeat, no probe
        case.steps = 1
        return
    once = run_steps(case, case.probe, device) / case.probe
    case.steps = max(1, min(max_steps, math.ceil(min_seconds / max(once, 1e-9))))


def interleave(cases: dict[str, Case], repeats: int, min_seconds: float, device: torch.device,
               warmup: int = 2) -> dict[str, list[float]]:
    """Rates (work / s) per case, one per repeat, measured round-robin after calibration."""
    for case in cases.values():
        calibrate(case, min_seconds, device, warmup)
    rates: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, case in cases.items():
            rates[name].append(case.work * case.steps / run_steps(case, case.steps, device))
    return rates


def median(values) -> float:
    return statistics.median(values)


def matmul_peak(dtype: torch.dtype, device: torch.device, n: int, repeats: int, min_seconds: float,
                warmup: int = 2) -> float:
    """FLOP/s of an n x n x n matmul (2 n^3 FLOPs) in ``dtype``: the reference for MFU."""
    a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))
    out = torch.empty(n, n, device=device, dtype=dtype)
    case = Case(lambda: torch.mm(a, b, out=out), work=2.0 * n ** 3)
    return median(interleave({"mm": case}, repeats, min_seconds, device, warmup)["mm"])


# --- the machine -----------------------------------------------------------------------------

def cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    return set(line.split(":", 1)[-1].split())


def cpu_name() -> str:
    """'model name (family F, model M)' from /proc/cpuinfo: a VM's name is often generic."""
    try:
        info = {}
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            info.setdefault(key.strip(), value.strip())
        return f"{info['model name']} (family {info.get('cpu family', '?')}, model {info.get('model', '?')})"
    except (OSError, KeyError):
        return platform.processor() or platform.machine()


def machine_rows(device: torch.device, default_precision: str) -> list[dict]:
    import lightning
    import torchvision

    flags = cpu_flags()
    has = [f for f in ("amx_bf16", "amx_tile", "avx512_bf16", "avx512f") if f in flags]
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    rows = {
        "CPU": cpu_name(),
        "cores (usable / all)": f"{affinity} / {os.cpu_count()}",
        "bf16 CPU flags": (", ".join(f for f in has if f != "avx512f") or "none (no AMX, no AVX512-BF16)"),
        "torch CPU capability": torch.backends.cpu.get_cpu_capability(),
        "torch.get_num_threads()": str(torch.get_num_threads()),
        "versions": f"torch {torch.__version__}, torchvision {torchvision.__version__}, "
                    f"lightning {lightning.__version__}, python {platform.python_version()}",
        "GPU": torch.cuda.get_device_name(device) if device.type == "cuda" else "none (benchmarks run on the CPU)",
        "device": str(device),
        "default precision (trainer.precision=auto)": default_precision,
    }
    return [{"": k, "value": v} for k, v in rows.items()]


# --- markdown --------------------------------------------------------------------------------

def fmt(value) -> str:
    if isinstance(value, bool) or value is None:
        return "-" if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}" if abs(value) >= 1 else f"{value:.3f}"  # ratios near a 0.95 goal need 3 digits
    return str(value)


def markdown(rows: list[dict]) -> str:
    """A markdown table of dicts sharing their keys; numbers right-aligned."""
    if not rows:
        return "(no rows)"
    keys = list(rows[0])
    cells = [[fmt(r.get(k)) for k in keys] for r in rows]
    numeric = [all(isinstance(r.get(k), (int, float)) and not isinstance(r.get(k), bool) or r.get(k) is None
                   for r in rows) for k in keys]
    widths = [max(len(k), *(len(c[i]) for c in cells), 3) for i, k in enumerate(keys)]

    def line(values):
        return "| " + " | ".join(v.rjust(w) if n else v.ljust(w) for v, w, n in zip(values, widths, numeric)) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if n else ("-" * (w + 2)) for w, n in zip(widths, numeric)) + "|"
    return "\n".join([line(keys), rule, *map(line, cells)])
