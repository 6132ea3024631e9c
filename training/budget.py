"""Budgets: a run sized in wall time (``budget=10min``) or in training FLOPs (``budget=2e15flop``)
instead of epochs, and the arithmetic that turns one into a number of optimizer steps.

Budgeted training (Li, Yumer & Ramanan, ICLR 2020) finds that what matters under a fixed budget
is a schedule that decays to its end exactly when the budget runs out, so a budgeted run fixes its
total number of steps first and defines its schedule over that total.

- Compute: one training image costs ``6 x MACs`` FLOPs (forward ``2 x MACs``, backward about twice
  the forward: Kaplan et al. 2020's ``6N`` per token, per image here). The step count follows from
  the model alone, so it is the same on every machine: reproducible comparisons.
- Time: the step count follows from the run's own measured speed (``training/budget_planner.py``),
  so the run, data loading, validation and the final test included, ends by the deadline.

This file is plain Python (no Lightning): parsing, the arithmetic, and when a run began; the
callback that measures and re-plans is in ``budget_planner.py``.
"""
from __future__ import annotations

import math
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

SECONDS = {"s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
           "min": 60, "mins": 60, "minute": 60, "minutes": 60,
           "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600}
FLOP_PREFIX = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12, "p": 1e15, "e": 1e18}
_BUDGET = re.compile(r"^\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?)\s*([a-z]*)\s*$", re.IGNORECASE)
EXAMPLES = "a time (budget=10min, budget=90s, budget=1.5h) or training FLOPs (budget=2e15flop, budget=2PFLOP)"


@dataclass(frozen=True)
class Budget:
    kind: str      # "time" (amount in seconds) or "flop" (amount in training FLOPs)
    amount: float
    text: str      # as the user wrote it

    def describe(self) -> str:
        if self.kind == "time":
            return f"{self.text} ({self.amount:,.0f} s)"
        return f"{self.text} ({self.amount:.3g} training FLOPs)"


def parse_budget(value) -> Budget | None:
    """``None`` (no budget) or a ``Budget``; anything else is a ValueError naming the value and the forms."""
    if value is None:
        return None
    text = str(value)
    match = _BUDGET.match(text) if isinstance(value, str) else None
    if match is None:
        hint = (f"; {text} has no unit: write budget={text}s or budget={text}flop"
                if isinstance(value, (int, float)) and not isinstance(value, bool) else "")
        raise ValueError(f"budget={text!r} is not a budget; give {EXAMPLES}{hint}")
    number, unit = float(match.group(1)), match.group(2)
    low = unit.lower()
    if low in SECONDS:
        budget = Budget("time", number * SECONDS[low], text.strip())
    elif low.endswith(("flop", "flops")) and low.rsplit("flop", 1)[0] in FLOP_PREFIX:
        budget = Budget("flop", number * FLOP_PREFIX[low.rsplit("flop", 1)[0]], text.strip())
    else:
        raise ValueError(f"budget={text!r} has an unknown unit {unit!r}; give {EXAMPLES}")
    if not math.isfinite(budget.amount) or budget.amount <= 0:
        raise ValueError(f"budget={text!r} should be more than zero; give {EXAMPLES}")
    return budget


def train_flops_per_image(macs_per_image: float) -> float:
    """Training FLOPs of one image: forward 2 x MACs plus a backward of about twice that."""
    return 6.0 * float(macs_per_image)


def steps_for_flops(budget: Budget, macs_per_image: float, images_per_step: int, model: str = "the model") -> int:
    """Optimizer steps a FLOP budget pays for; an error when it pays for none."""
    step_flops = train_flops_per_image(macs_per_image) * images_per_step
    steps = int(budget.amount // step_flops)
    if steps < 1:
        raise ValueError(f"budget={budget.text} is smaller than one optimizer step of {model} "
                         f"(6 x {macs_per_image / 1e6:.1f}M MACs x {images_per_step} images = {step_flops:.3g} FLOPs); "
                         f"give at least budget={step_flops:.3g}flop")
    return steps


@dataclass
class Progress:
    """What a time-budgeted run knows at a moment: seconds are wall time charged to the budget."""
    elapsed: float          # used so far: start-up, data loading, calibration, steps, validations
    step: int               # optimizer steps done
    step_seconds: float     # one training step (data included), as measured
    steps_per_epoch: int
    epoch_overhead: float   # per epoch beyond its steps: validation, checkpoints, epoch hooks
    end_seconds: float      # after the last step's validation: final figures, test, report
    skip_within: int = 0    # an epoch end's validation is skipped when the run ends at most this many steps later
    val_every: int = 1      # trainer.check_val_every_n_epoch: epochs validated at their end (the last step always is)
    boundary_overhead: float = 0.0  # an epoch end that is not validated (epoch hooks, reshuffling)
    # Two-phase runs (progressive crops, training/progressive.py): from step round(later_from * total)
    # on, a step costs later_ratio x step_seconds (step_seconds being this phase's measured speed).
    later_from: float = 0.0
    later_ratio: float = 1.0

    def later_start(self, total: int) -> int:
        """The first step of the later phase in a run of ``total`` steps."""
        return round(self.later_from * total)

    def steps_seconds(self, more: int) -> float:
        """Seconds of the next ``more`` steps: this phase's at the measured speed, the later phase's
        at ``later_ratio`` times it."""
        now = max(0, min(self.step + more, self.later_start(self.step + more)) - self.step)
        return (now + (more - now) * self.later_ratio) * self.step_seconds


def epoch_ends(step: int, total: int, steps_per_epoch: int, skip_within: int = 0,
               val_every: int = 1) -> tuple[int, int]:
    """Validation passes, and epoch ends passed without one, still to come, seen from the end of step
    ``step`` (an epoch's last step is validated after it) to the run's end at ``total``. Epoch ``k``
    (from 1) is validated at its end when ``k`` is a multiple of ``val_every``; the last step always is
    (inside an epoch or at its end); but no epoch end is validated when the run ends at most
    ``skip_within`` steps after it, since the last step's validation follows as soon."""
    first = max(0, step - 1) // steps_per_epoch + 1  # the first epoch whose end is still to come
    last = (total - 1) // steps_per_epoch if total > 0 else 0  # the last epoch ending before the last step
    if last < first:
        return (1, 0) if total >= step else (0, 0)

    def multiples(a: int, b: int) -> int:  # epochs a..b validated by check_val_every_n_epoch
        return max(0, b // val_every - (a - 1) // val_every) if b >= a else 0

    skipped_from = max(first, -((skip_within - total) // steps_per_epoch))  # ends within skip_within of the last step
    validated = multiples(first, last) - multiples(skipped_from, last)
    return validated + 1, (last - first + 1) - validated


def total_steps_within(seconds: float, p: Progress, safety: float = 0.01) -> int:
    """The largest total step count (>= the steps done) whose remaining steps, validations and end
    fit in ``seconds`` less a ``safety`` fraction: the run stops there, the schedule ending with it."""
    left = seconds * (1.0 - safety) - p.elapsed - p.end_seconds
    step_s = max(p.step_seconds, 1e-9) * min(1.0, p.later_ratio)  # the cheapest step

    def cost(more: int) -> float:
        validated, passed = epoch_ends(p.step, p.step + more, p.steps_per_epoch, p.skip_within, p.val_every)
        return p.steps_seconds(more) + validated * p.epoch_overhead + passed * p.boundary_overhead

    lo, hi = 0, max(0, int(left / step_s)) + 1  # cost(lo) <= left (or lo = 0); cost(hi) > left
    if cost(0) > left:
        return p.step
    while hi - lo > 1:  # cost grows with the steps added: bisect for the last that fits
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if cost(mid) <= left else (lo, mid)
    return p.step + lo


_launch: float | None = None


def mark_launch() -> None:
    """Called when the command line starts (``training/entry.py``): the first run of the process
    charges its budget from the process's start, since interpreter start-up and imports are part
    of what a user waits for. Seconds are on the monotonic clock: a virtual machine's wall clock can
    jump forward within a run (README, "Targets of the budget issue"), and a run planned on it would
    stop early by every steady clock."""
    global _launch
    now = time.monotonic()
    try:  # Linux: field 22 of /proc/self/stat is the start in clock ticks after boot
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        age = uptime - ticks / os.sysconf("SC_CLK_TCK")
        _launch = now - age if 0 <= age < 600 else now
    except (OSError, ValueError, IndexError):
        _launch = now


def run_start_time() -> float:
    """``time.monotonic()`` when a run began, as its budget counts it: the launch for the first run of a
    command, the call itself for a later run of a multirun (each job has its own budget) or a run
    started from Python."""
    global _launch
    start, _launch = (_launch if _launch is not None else time.monotonic()), None
    return start
