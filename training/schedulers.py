"""Learning-rate schedules, stepped every optimizer step.

Each is called by the module as ``schedule(optimizer, total_steps=..., steps_per_epoch=...)``
(configs give the other arguments with ``_partial_: true``), so a schedule written in epochs
still works for any data set size and batch size.
"""
from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, OneCycleLR


def _check(total_steps: int, warmup_steps: int) -> None:
    if warmup_steps >= total_steps:
        raise ValueError(f"warm-up ({warmup_steps} steps) should be shorter than training "
                         f"({total_steps} steps); lower warmup_epochs or raise trainer.max_epochs")


def cosine(optimizer: Optimizer, *, total_steps: int, steps_per_epoch: int, warmup_epochs: float = 1.0,
           min_lr_ratio: float = 0.0) -> LRScheduler:
    """Linear warm-up from 0 over ``warmup_epochs``, then half a cosine down to
    ``min_lr_ratio * lr`` (Loshchilov & Hutter 2017, SGDR without restarts; Goyal et al. 2017 warm-up)."""
    warmup = int(round(warmup_epochs * steps_per_epoch))
    _check(total_steps, warmup)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = (step - warmup) / max(1, total_steps - warmup)
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))

    return LambdaLR(optimizer, factor)


def linear(optimizer: Optimizer, *, total_steps: int, steps_per_epoch: int, warmup_epochs: float = 1.0,
           min_lr_ratio: float = 0.0) -> LRScheduler:
    """Linear warm-up, then linear decay to ``min_lr_ratio * lr`` (the airbench-style schedule)."""
    warmup = int(round(warmup_epochs * steps_per_epoch))
    _check(total_steps, warmup)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
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
    warmup = int(round(warmup_epochs * steps_per_epoch))

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
