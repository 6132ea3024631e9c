"""``cpu_allocator``: how the C allocator under PyTorch's CPU tensors treats memory a step frees.

glibc's malloc serves a block above its mmap threshold (128 KiB at start, rising as such blocks are
freed, to at most 32 MiB) with fresh pages from the kernel and unmaps them when the block is freed,
and gives the top of its heap back once more than twice the threshold lies free there. A training
step allocates and frees its activations, many of them tens of MiB, every step; so every step
faults zeroed pages in again, and an evaluation pass before any training (Lightning's sanity check)
runs at about half the speed of one after it. ``retain`` raises the threshold above any tensor of
these networks and turns trimming off: the pages the first steps faulted in stay with the process
and are reused. PyTorch's CPU performance guide gets the same from jemalloc or tcmalloc through
LD_PRELOAD; ``mallopt`` needs neither a library nor a restart. The cost is memory: the process keeps
its peak heap until it exits. Measured by ``benchmarks/allocator.py`` (docs/allocator.md).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
from typing import NamedTuple

log = logging.getLogger(__name__)

CHOICES = ("retain", "default")
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
MMAP_THRESHOLDS = (1 << 30, 32 << 20)        # 1 GiB; 32 MiB, the most that glibc older than 2.35 accepts


class Allocation(NamedTuple):
    """What holds in the process: ``choice`` (retain or default) and ``detail`` (how, or why not)."""
    choice: str
    detail: str


_applied: Allocation | None = None


def check_choice(value) -> str:
    if value not in CHOICES:
        raise ValueError(f"cpu_allocator={value!r} should be one of {', '.join(CHOICES)} (retain: keep freed "
                         "memory in the process, faster steps on a CPU; default: the C library's own behaviour)")
    return value


def _glibc():
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "gnu_get_libc_version") else None
    except OSError:
        return None


def set_cpu_allocator(choice: str) -> Allocation:
    """Apply ``choice`` to this process (once: glibc cannot go back to its dynamic threshold, so a
    later ``default`` in the same process leaves ``retain`` in place). Returns what holds now."""
    global _applied
    check_choice(choice)
    if _applied is not None:
        return _applied
    if choice == "default":
        return Allocation("default", "the C library's allocator as it is")
    libc = _glibc()
    if libc is None:
        return Allocation("default", "no glibc: mallopt is not available, the C library's allocator is used as it is")
    for threshold in MMAP_THRESHOLDS:
        if libc.mallopt(M_MMAP_THRESHOLD, threshold) == 1:
            libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1)  # the largest an int takes: never trim
            _applied = Allocation("retain", f"mmap threshold {threshold >> 20} MiB, no trim")
            log.info("cpu_allocator: retain (%s)", _applied.detail)
            return _applied
    return Allocation("default", "mallopt refused every threshold")
