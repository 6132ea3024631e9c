"""Learning-rate schedules, stepped every optimizer step.

Each is called by the module as ``schedule(optimizer, total_steps=..., steps_per_epoch=...)``
(configs give the other arguments with ``_partial_: true``), so a schedule written in epochs
still works for any data set size and batch size.
"""
from __future__ import annotations

import math
import warnings

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, OneCycleLR


def _warmup_steps(warmup_epochs: float, steps_per_epoch: int, total_steps: int,
                  warmup_fraction: float | None = None) -> int:
    """Warm-up length in steps: ``warmup_fraction`` of the run when given (a budgeted run's epoch
    count depends on the machine, its fraction does not), else ``warmup_epochs``. In a run too short
    for it (a smoke run of one epoch), at most half the run, with a warning, so the schedule still decays."""
    if warmup_epochs < 0:
        raise ValueError(f"warmup_epochs should be >= 0, got {warmup_epochs}")
    if warmup_fraction is not None:
        if not 0.0 <= warmup_fraction < 1.0:
            raise ValueError(f"warmup_fraction should be in [0, 1), got {warmup_fraction}")
        return int(round(warmup_fraction * total_steps))
    warmup = int(round(warmup_epochs * steps_per_epoch))
    if warmup >= total_steps:
        warnings.warn(f"warm-up of {warmup} steps does not fit in a run of {total_steps} steps; "
                      f"warming up for {total_steps // 2} steps instead", stacklevel=3)
        warmup = total_steps // 2
    return warmup


def cosine(optimizer: Optimizer, *, total_steps: int, steps_per_epoch: int, warmup_epochs: float = 1.0,
           min_lr_ratio: float = 0.0, warmup_fraction: float | None = None) -> LRScheduler:
    """Linear warm-up from 0 over ``warmup_epochs`` (or ``warmup_fraction`` of the run), then half a
    cosine down to ``min_lr_ratio * lr`` (Loshchilov & Hutter 2017, SGDR without restarts; Goyal et
    al. 2017 warm-up)."""
    warmup = _warmup_steps(warmup_epochs, steps_per_epoch, total_steps, warmup_fraction)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = (step - warmup) / max(1, total_steps - warmup)
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))

    return LambdaLR(optimizer, factor)


def linear(optimizer: Optimizer, *, total_steps: int, steps_per_epoch: int, warmup_epochs: float = 1.0,
           min_lr_ratio: float = 0.0, start_lr_ratio: float = 0.0,
           warmup_fraction: float | None = None) -> LRScheduler:
    """Linear warm-up from ``start_lr_ratio * lr`` over ``warmup_epochs`` (or ``warmup_fraction`` of
    the run), then linear decay to ``min_lr_ratio * lr`` (airbench's triangle: 0.2 -> 1 -> 0.07)."""
    warmup = _warmup_steps(warmup_epochs, steps_per_epoch, total_steps, warmup_fraction)
    if not 0.0 <= start_lr_ratio <= 1.0:
        raise ValueError(f"start_lr_ratio should be in [0, 1], got {start_lr_ratio}")

    def factor(step: int) -> float:
        if step < warmup:
            return start_lr_ratio + (1 - start_lr_ratio) * (step + 1) / warmup
        t = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return 1 - (1 - min_lr_ratio) * t

    return LambdaLR(optimizer, factor)


def multistep(optimizer: Optimizer, *, total_steps: int, steps_per_epoch: int,
              milestones: list[float], gamma: float = 0.1, unit: str = "epoch",
              warmup_epochs: float = 0.0) -> LRScheduler:
    """Multiply the lr by ``gamma`` at each milestone, given in epochs or in iterations
    (``unit: step``; He et al. 2016 divide by 10 at 32k and 48k iterations)."""
    if unit not in ("epoch", "step"):
        raise ValueError(f"unit should be 'epoch' or 'step', got {unit!r}")
    steps = sorted(int(m * (steps_per_epoch if unit == "epoch" else 1)) for m in milestones)
    warmup = _warmup_steps(warmup_epochs, steps_per_epoch, total_steps)

    def factor(step: int) -> float:
        ramp = (step + 1) / warmup if step < warmup else 1.0
        return ramp * gamma ** sum(step >= m for m in steps)

    return LambdaLR(optimizer, factor)


def onecycle(optimizer: Optimizer, *, total_steps: int, steps_per_epoch: int, max_lr: float,
             pct_start: float = 0.25, div_factor: float = 25.0, final_div_factor: float = 1e4) -> LRScheduler:
    """Smith & Topin 2019's one-cycle policy (torch's OneCycleLR over the whole run)."""
    return OneCycleLR(optimizer, max_lr=max_lr, total_steps=total_steps, pct_start=pct_start,
                      div_factor=div_factor, final_div_factor=final_div_factor)


def constant(optimizer: Optimizer, *, total_steps: int, steps_per_epoch: int) -> LRScheduler:
    """No schedule: the optimizer's lr throughout."""
    return LambdaLR(optimizer, lambda step: 1.0)
