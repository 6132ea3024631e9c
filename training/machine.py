"""The machine a measurement ran on: processor, its bf16 support, cores, threads and versions.

Speed numbers mean little without the machine beside them, and the CPU changes between sessions
(AMD with AVX512-BF16, Intel with AMX, Intel without either), so every speed table and the
default training precision read the processor from here. Importing this module imports torch
only; the versions of torchvision and lightning are read when the description is asked for.
"""
from __future__ import annotations

import os
import platform
from pathlib import Path

import torch

CPUINFO = Path("/proc/cpuinfo")
BF16_FLAGS = ("amx_bf16", "avx512_bf16")  # CPU flags of a native bf16 matmul


def _cpuinfo() -> str:
    try:
        return CPUINFO.read_text()
    except OSError:  # not Linux, or a sandbox without /proc
        return ""


def cpu_flags() -> set[str]:
    """The first processor's feature flags from /proc/cpuinfo (empty where there is none)."""
    line = next((ln for ln in _cpuinfo().splitlines() if ln.startswith("flags")), "")
    return set(line.split(":", 1)[-1].split())


def has_native_bf16() -> bool:
    """True where the CPU multiplies bf16 natively (AMX or AVX512-BF16): there bf16 autocast
    trains faster than fp32; elsewhere it is emulated and slower."""
    return bool(cpu_flags() & set(BF16_FLAGS))


def cpu_name() -> str:
    """'model name (family F, model M)' from /proc/cpuinfo: a VM's model name is often generic,
    the family and model numbers tell the generation apart."""
    info: dict[str, str] = {}
    for line in _cpuinfo().splitlines():
        key, _, value = line.partition(":")
        info.setdefault(key.strip(), value.strip())
    if "model name" not in info:
        return platform.processor() or platform.machine()
    return f"{info['model name']} (family {info.get('cpu family', '?')}, model {info.get('model', '?')})"


def usable_cores() -> int:
    """Cores this process may run on (a container's CPU set), not the host's count."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def summary() -> str:
    """One line for a log or a table's caption: processor, threads, torch version."""
    return f"{cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}"


def versions() -> str:
    import lightning
    import torchvision

    return (f"torch {torch.__version__}, torchvision {torchvision.__version__}, "
            f"lightning {lightning.__version__}, python {platform.python_version()}")


def machine_rows(device: torch.device, default_precision: str) -> list[dict]:
    """The machine table of a benchmark: one ``{"": what, "value": value}`` row per fact."""
    flags = cpu_flags()
    bf16 = [f for f in ("amx_bf16", "amx_tile", "avx512_bf16") if f in flags]
    rows = {
        "CPU": cpu_name(),
        "cores (usable / all)": f"{usable_cores()} / {os.cpu_count()}",
        "bf16 CPU flags": ", ".join(bf16) or "none (no AMX, no AVX512-BF16)",
        "torch CPU capability": torch.backends.cpu.get_cpu_capability(),
        "torch.get_num_threads()": str(torch.get_num_threads()),
        "versions": versions(),
        "GPU": torch.cuda.get_device_name(device) if device.type == "cuda" else "none (benchmarks run on the CPU)",
        "device": str(device),
        "default precision (trainer.precision=auto)": default_precision,
    }
    return [{"": k, "value": v} for k, v in rows.items()]
