"""``profile=true``: a torch.profiler trace of a few training steps, written into the run's TensorBoard
folder, for the question "where does the time go" (docs/tensorboard.md says how to open it)."""
from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import torch
from torch.profiler import ProfilerActivity, profile, schedule, tensorboard_trace_handler

log = logging.getLogger(__name__)


class StepProfiler(L.Callback):
    """Traces training steps ``skip + warmup + 1`` to ``skip + warmup + steps`` (the first steps pay for
    allocation and lazy initialisation; the warm-up steps are profiled but thrown away) into
    ``dirpath`` as ``<host>_<pid>.<time>.pt.trace.json`` (Chrome trace format), on the first process
    only. A run shorter than that keeps what it recorded. Off unless ``enabled``."""

    def __init__(self, enabled: bool = False, dirpath: str = "profile", skip: int = 2, warmup: int = 1,
                 steps: int = 3) -> None:
        if min(skip, warmup) < 0 or steps < 1:
            raise ValueError(f"profile: skip and warmup should be >= 0 and steps >= 1, got skip={skip}, "
                             f"warmup={warmup}, steps={steps}")
        self.enabled, self.dirpath = enabled, Path(dirpath)
        self.skip, self.warmup, self.steps = skip, warmup, steps
        self._profiler: profile | None = None

    def on_train_start(self, trainer, pl_module) -> None:
        if not self.enabled or not trainer.is_global_zero:
            return
        activities = [ProfilerActivity.CPU]
        if pl_module.device.type == "cuda":
            activities.append(ProfilerActivity.CUDA)
        self._profiler = profile(activities=activities, record_shapes=True,
                                 schedule=schedule(wait=self.skip, warmup=self.warmup, active=self.steps, repeat=1),
                                 on_trace_ready=tensorboard_trace_handler(str(self.dirpath)))
        self._profiler.start()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._profiler is None:
            return
        self._profiler.step()
        if self._profiler.step_num >= self.skip + self.warmup + self.steps:
            self._finish()

    def on_train_end(self, trainer, pl_module) -> None:
        self._finish()

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._finish()

    def _finish(self) -> None:
        if self._profiler is None:
            return
        profiler, self._profiler = self._profiler, None
        recorded = min(self.steps, profiler.step_num - self.skip - self.warmup)
        profiler.stop()  # writes the trace when recording was under way
        traces = sorted(self.dirpath.glob("*.pt.trace.json"))
        if recorded > 0 and traces:
            log.info("profile: %d training steps traced to %s (open it in https://ui.perfetto.dev or "
                     "chrome://tracing)", recorded, traces[-1])
        else:
            log.info("profile: the run ended before step %d, the first one traced", self.skip + self.warmup + 1)
