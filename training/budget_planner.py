"""``BudgetPlanner``: the callback that holds a budgeted run to its budget (``training/budget.py``).

A FLOP budget fixes the step count before the first step. A time budget starts from an estimate
(the calibration's measured speed, or ten epochs when there is none) and re-plans from what the
run itself measures: the seconds per training step once ``warmup_steps`` (compilation, first-call
set-up) are past, averaged over the last ``recent_steps``, and the seconds each epoch spends
outside its steps (validation, checkpoints).
It re-plans after ``probe_steps`` measured steps, after every validation, every ``replan_every``
steps (a tenth of a shorter plan) and at the planned last step; each time the trainer's
``max_steps`` and the learning-rate schedule are set to the new total, so the schedule always ends at the last step. At that step the run stops with
``should_stop``, so Lightning still validates (and checkpoints) it when it falls inside an epoch.
A time budget skips an epoch end's validation when the run ends less than one validation's time of
training after it: the last step's validation comes as soon, and the time buys steps. Without the
skip, a plan that would end just past an epoch end had to pay two validations, so it stopped before
the epoch end instead, short of the budget by up to a validation's time (docs: README, the leaderboard).
With ``trainer.check_val_every_n_epoch=n`` the plan counts a validation at every n-th epoch end only
(the others cost what an epoch boundary costs, measured apart), and the last step is validated
whatever its epoch: the run's final model is what it is for.

The plan (budget, total, seconds used) is saved in checkpoints: a resumed run keeps its total and
schedule, and a time budget charges the seconds used before the interruption. In DDP every rank
takes rank 0's plan.
"""
from __future__ import annotations

import logging
import math
import time
import warnings
from collections import deque
from datetime import datetime, timedelta

import lightning as L

from .budget import Budget, Progress, steps_for_flops, total_steps_within
from .metrics import is_last_validation

log = logging.getLogger(__name__)


class BudgetPlanner(L.Callback):
    def __init__(self, budget: Budget, total_steps: int, *, started: float, images_per_step: int,
                 step_seconds: float | None = None, steps_cap: int | None = None,
                 warmup_steps: int = 2, probe_steps: int = 8, replan_every: int = 50, recent_steps: int = 25,
                 eval_end_passes: float = 0.0, final_eval_cost: float = 1.0, end_fixed_seconds: float = 5.0,
                 macs_per_image: float | None = None) -> None:
        """``started``: ``time.monotonic()`` when the run began (charged to the budget); ``recent_steps``:
        the step time is the mean of the last this many steps (the speed of a shared machine
        drifts: a run planned on its mean so far ended 14% early once a neighbour stopped); ``steps_cap``:
        ``trainer.max_steps`` when the user set it too (the run stops at whichever comes first);
        ``eval_end_passes``: validation-sized passes after the last step's validation (the test;
        the figures reuse the validation's predictions); ``final_eval_cost``: the final evaluations'
        passes over a validation's (3 when they add translated views, ``metrics.final_eval_cost``),
        which scales the last validation and the test; ``end_fixed_seconds``: the rest of the end
        (drawing figures, writing hparams, exiting), a few seconds on a 2-core CPU."""
        self.budget, self.total, self.started = budget, int(total_steps), started
        self.images_per_step = images_per_step
        self.steps_cap, self.warmup_steps, self.probe_steps = steps_cap, warmup_steps, probe_steps
        self.replan_every, self.eval_end_passes, self.end_fixed_seconds = replan_every, eval_end_passes, end_fixed_seconds
        self.final_eval_cost = final_eval_cost
        self.used_before = 0.0           # seconds charged by earlier sessions of a resumed run
        self.loaded: dict | None = None  # the plan a checkpoint brought back
        self.step_seconds = step_seconds  # estimate until measured
        self._recent: deque[float] = deque(maxlen=recent_steps)
        self._train_steps, self._seen_steps = 0, 0
        self._last_end: float | None = None
        self._crossed = False            # an interval that holds a validation or an epoch boundary
        self._validated = False          # ... and it holds a validation
        self._overhead: float | None = None  # an epoch end with its validation, beyond a step
        self._boundary: float | None = None  # an epoch end without one (check_val_every_n_epoch > 1)
        self._eval_pass: float | None = None
        self._val_cost = 1.0              # this validation's passes over a validation's
        self._eval_source = "estimated from the step time"
        self._sanity_start, self._sanity_ends = 0.0, []
        self.macs_per_image = macs_per_image  # a FLOP budget's step cost, re-priced by set_phases
        self.later_from, self.later_ratio = 0.0, 1.0  # two phases: Progress.later_from / later_ratio
        self._calibrated_step = step_seconds  # a whole step's time as calibration measured it, if it did

    # -- what is charged ------------------------------------------------------------------------
    def seconds_used(self) -> float:
        return self.used_before + time.monotonic() - self.started

    def state_dict(self) -> dict:
        return {"kind": self.budget.kind, "amount": self.budget.amount, "text": self.budget.text,
                "total_steps": self.total, "seconds_used": self.seconds_used()}

    def load_state_dict(self, state_dict: dict) -> None:
        self.loaded = dict(state_dict)

    def setup(self, trainer, pl_module, stage: str) -> None:
        # Before configure_optimizers: the budget, not max_epochs, bounds the run, and the schedule
        # is built over the planned total.
        if stage == "fit":
            trainer.fit_loop.max_epochs = -1
            trainer.fit_loop.epoch_loop.max_steps = min(self.total, self.steps_cap) if self.steps_cap else self.total

    # -- two-phase runs (training/progressive.py) -----------------------------------------------
    def set_phases(self, trainer, later_from: float, later_ratio: float, macs_ratio: float) -> None:
        """The run's steps before ``round(later_from * total)`` make ``macs_ratio`` of the later ones'
        MACs and cost about ``1 / later_ratio`` of their time. A time budget plans with both speeds: the
        later one is the calibration's measure of a step (made on the later phase's inputs) where there
        is one, else ``later_ratio`` times the measured speed, until it is measured itself. A FLOP
        budget pays for the steps' mean MACs."""
        self.later_from, self.later_ratio = float(later_from), float(later_ratio)
        if self.budget.kind == "flop" and self.macs_per_image and self.loaded is None:
            mean = self.macs_per_image * (self.later_from * macs_ratio + 1.0 - self.later_from)
            total = steps_for_flops(self.budget, mean, self.images_per_step)
            self.total = min(total, self.steps_cap) if self.steps_cap else total
            trainer.fit_loop.epoch_loop.max_steps = self.total

    def start_later_phase(self) -> None:
        """The later phase has begun: measure its speed afresh (its first steps warm up again)."""
        if self.later_ratio != 1.0 or self.later_from:
            self.later_from, self.later_ratio = 0.0, 1.0
            self._recent.clear()
            self._seen_steps, self._train_steps = 0, 0

    # -- measuring ------------------------------------------------------------------------------
    def on_sanity_check_start(self, trainer, pl_module) -> None:
        self._sanity_start, self._sanity_ends = time.perf_counter(), []

    def on_validation_batch_end(self, trainer, *args) -> None:
        if trainer.sanity_checking:
            self._sanity_ends.append(time.perf_counter())

    def on_sanity_check_end(self, trainer, pl_module) -> None:
        ends, total = self._sanity_ends, sum(trainer.num_val_batches) if trainer.num_val_batches else 0
        if len(ends) >= 2:  # the batches after the first: the first pays one-off set-up
            self._eval_pass = (ends[-1] - ends[0]) / (len(ends) - 1) * total
            self._eval_source = "sanity check"
        elif ends:  # one batch, set-up included: an upper estimate, replaced after the first validation
            self._eval_pass = (ends[0] - self._sanity_start) * total
            self._eval_source = "sanity check"

    def on_validation_start(self, trainer, pl_module) -> None:
        self._crossed = True
        self._validated = self._validated or not trainer.sanity_checking
        self._val_start = time.perf_counter()
        self._val_cost = self.final_eval_cost if is_last_validation(trainer) else 1.0

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            took = time.perf_counter() - self._val_start
            planned, self._eval_pass = self._eval_pass, took / self._val_cost
            if trainer.is_global_zero:
                log.info("budget %s: a validation took %.0f s (planned: %s)", self.budget.describe(), took,
                         f"{planned * self._val_cost:.0f} s, {self._eval_source}" if planned is not None
                         else "from the step time")
            self._eval_source = "measured"

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._crossed = self._crossed or self._last_end is not None

    def on_train_start(self, trainer, pl_module) -> None:
        if self.loaded is not None:  # resumed: the saved plan, and the seconds it had used
            if self.loaded.get("text") != self.budget.text:
                warnings.warn(f"budget={self.budget.text} given, but the checkpoint was planned for "
                              f"budget={self.loaded.get('text')}: the checkpoint's plan is kept", stacklevel=2)
                self.budget = Budget(self.loaded["kind"], float(self.loaded["amount"]), self.loaded["text"])
            self.used_before = float(self.loaded.get("seconds_used", 0.0))
            self._apply(trainer, pl_module, int(self.loaded["total_steps"]), "resumed with the saved plan")
        else:
            used = self.seconds_used()
            if self.budget.kind == "time" and used >= self.budget.amount:
                raise ValueError(f"budget={self.budget.text} is too small for one optimizer step here ({used:.0f} s "
                                 "used before the first step: start-up, data loading, calibration); give a longer budget")
            self._apply(trainer, pl_module, self.total, "first estimate")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now = time.perf_counter()
        self._seen_steps += 1
        if self._last_end is not None and self._seen_steps > self.warmup_steps:
            interval = now - self._last_end
            if not self._crossed:
                self._recent.append(interval)
                self._train_steps += 1
                # the recent steps predict the next ones best: the speed of a shared machine changes
                self.step_seconds = sum(self._recent) / len(self._recent)
            elif self._train_steps and self._validated:  # the epoch's time outside its steps
                self._overhead = max(0.0, interval - self.step_seconds)
            elif self._train_steps:  # an epoch end passed without validating
                self._boundary = max(0.0, interval - self.step_seconds)
        crossed, self._crossed, self._last_end = self._crossed, False, now
        self._validated = False
        step = trainer.global_step
        if self.budget.kind == "time" and self._train_steps and (
                self._train_steps == self.probe_steps or crossed or step % self.replan_interval() == 0
                or step >= self.total):
            self._replan(trainer, pl_module, step)  # at the planned end too: time left buys more steps
        pl_module.log("budget/planned_steps", float(self.total), on_step=True, on_epoch=False, prog_bar=True)
        pl_module.log("budget/seconds_used", self.seconds_used(), on_step=True, on_epoch=False)
        if step >= self.total:
            trainer.should_stop = True  # Lightning validates a step inside an epoch only when told to stop
            if not self._validates(trainer, trainer.current_epoch):
                # ... and only in an epoch that check_val_every_n_epoch validates: the last step's model
                # is what the run is for, so its validation (and checkpoint) must come whatever the epoch
                trainer.check_val_every_n_epoch = 1
        elif self.budget.kind == "time" and self._skip_epoch_end(trainer, step):
            trainer.fit_loop.epoch_loop._skip_next_val = True  # Lightning's own flag (resuming on an epoch end)
            if trainer.is_global_zero:
                log.info("budget %s: no validation at the end of epoch %d, the run ends %d steps later and its "
                         "last step is validated", self.budget.describe(), trainer.current_epoch, self.total - step)

    def replan_interval(self) -> int:
        """Steps between re-plans: ``replan_every``, or a tenth of a short plan. A plan of a few
        slow steps made while the machine was busy would otherwise end long before the budget,
        never measuring the speed that returned."""
        return max(1, min(self.replan_every, self.total // 10))

    # -- planning -------------------------------------------------------------------------------
    def _skip_within(self, trainer) -> int:
        """Steps after an epoch end within which the run's end makes that epoch's validation redundant:
        as many as one validation's time buys; none on a Lightning without the flag that skips one, and
        none in DDP (each rank measures its own times, and every rank must validate alike)."""
        if (not hasattr(trainer.fit_loop.epoch_loop, "_skip_next_val") or not self.step_seconds
                or trainer.world_size != 1):
            return 0
        return int(self._eval_seconds(trainer) / self.step_seconds)

    def _skip_epoch_end(self, trainer, step: int) -> bool:
        """Whether this step ends an epoch whose validation the plan has made redundant (not when
        another callback stops the run here: this validation is then its last)."""
        return (trainer.fit_loop.epoch_loop.batch_progress.is_last_batch and not trainer.should_stop
                and self._validates(trainer, trainer.current_epoch)
                and step < self.total <= step + self._skip_within(trainer))

    @staticmethod
    def _val_every(trainer) -> int:
        """Epochs per validation: ``check_val_every_n_epoch`` (None, validation every so many steps
        instead, is planned as once an epoch)."""
        return max(1, int(trainer.check_val_every_n_epoch or 1))

    def _validates(self, trainer, epoch: int) -> bool:
        """Whether Lightning validates at the end of ``epoch`` (from 0)."""
        return (epoch + 1) % self._val_every(trainer) == 0

    def _eval_seconds(self, trainer) -> float:
        if self._eval_pass is not None:
            return self._eval_pass
        # No validation timed yet: a forward pass costs about a third of a training step per image.
        images = sum(trainer.num_val_batches) * (trainer.datamodule.eval_batch_size
                                                  if trainer.datamodule is not None else self.images_per_step)
        return images * self.step_seconds / self.images_per_step / 3

    def _end_passes(self) -> float:
        """Validation-sized passes the run makes after its last step, beyond one validation's (which
        the plan counts as any other): the last validation's extra views and the test."""
        return self.final_eval_cost * (1 + self.eval_end_passes) - 1

    @staticmethod
    def _per_epoch(trainer) -> int:
        return max(1, math.ceil(trainer.num_training_batches / max(1, trainer.accumulate_grad_batches)))

    def _replan(self, trainer, pl_module, step: int) -> None:
        per_epoch = self._per_epoch(trainer)
        if self.later_from and self._calibrated_step and self.step_seconds:  # steps on whole images still to come
            self.later_ratio = self._calibrated_step / self.step_seconds
        eval_pass = self._eval_seconds(trainer)
        progress = Progress(elapsed=self.seconds_used(), step=step, step_seconds=self.step_seconds,
                            steps_per_epoch=per_epoch,
                            epoch_overhead=self._overhead if self._overhead is not None else eval_pass,
                            end_seconds=self._end_passes() * eval_pass + self.end_fixed_seconds,
                            skip_within=self._skip_within(trainer), val_every=self._val_every(trainer),
                            boundary_overhead=self._boundary or 0.0,
                            later_from=self.later_from, later_ratio=self.later_ratio)
        total = total_steps_within(self.budget.amount, progress)
        total = int(trainer.strategy.broadcast(total, src=0))  # every rank keeps rank 0's plan
        if total != self.total:
            self._apply(trainer, pl_module, total, f"{self.step_seconds:.3f} s/step measured, a validation "
                        f"{eval_pass:.0f} s ({self._eval_source})")

    def _apply(self, trainer, pl_module, total: int, why: str) -> None:
        total = min(total, self.steps_cap) if self.steps_cap else total
        self.total = max(total, trainer.global_step)
        trainer.fit_loop.epoch_loop.max_steps = self.total
        rebuild = getattr(pl_module, "rebuild_schedules", None)
        if callable(rebuild):
            rebuild(self.total, trainer.global_step)
        if self.step_seconds:
            left = Progress(0.0, trainer.global_step, self.step_seconds, 1, 0.0, 0.0, later_from=self.later_from,
                            later_ratio=self.later_ratio).steps_seconds(self.total - trainer.global_step)
            end = f"expected end of training {(datetime.now() + timedelta(seconds=left)).strftime('%H:%M:%S')}"
        else:  # nothing timed yet (no calibration): no end time to promise
            end = f"the end time follows once {self.probe_steps} steps are timed"
        if trainer.is_global_zero:
            log.info("budget %s: %d steps planned (%s), %.0f s used, %s",
                     self.budget.describe(), self.total, why, self.seconds_used(), end)


def make_planner(budget: Budget, *, macs_per_image: float, batch_size: int, accumulate: int, world_size: int,
                 steps_per_epoch: int, images_per_second: float | None, started: float,
                 steps_cap: int | None, end_passes: float, model: str, final_eval_cost: float = 1.0) -> BudgetPlanner:
    """The planner of a run: a FLOP budget's exact step count, or a time budget's first estimate
    (from the calibration's measured speed when there is one, else ten epochs, re-planned after
    the first few steps)."""
    images_per_step = batch_size * accumulate * world_size
    step_seconds = images_per_step / images_per_second if images_per_second else None
    if budget.kind == "flop":
        total = steps_for_flops(budget, macs_per_image, images_per_step, model)
    elif step_seconds:
        total = max(1, int((budget.amount - (time.monotonic() - started)) / step_seconds))
    else:
        total = 10 * steps_per_epoch
    if steps_cap:
        warnings.warn(f"budget={budget.text} and trainer.max_steps={steps_cap} are both set: the run stops at "
                      "whichever comes first, and its schedule ends there", stacklevel=2)
    return BudgetPlanner(budget, total, started=started, images_per_step=images_per_step,
                         step_seconds=step_seconds, steps_cap=steps_cap, eval_end_passes=end_passes,
                         final_eval_cost=final_eval_cost, macs_per_image=macs_per_image)
