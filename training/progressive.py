"""Progressive training: small crops early in the run, whole images at the end.

A convolution's cost grows with the pixels it sees, so on a CPU (where time follows FLOPs more
closely than on a GPU) a step on 24x24 crops of CIFAR's 32x32 images is cheaper: for fastnet, whose
maps are 23x23 instead of 31x31 after its 2x2 whitening, about 0.55 of the MACs. Early in training a network learns coarse features that small crops show as well as whole
images (fast.ai's progressive resizing for DAWNBench, Howard 2018; FixRes, Touvron et al. 2019,
on why train and test resolutions may differ). Here the early images are *crops*, not downscaled
images, so objects keep the size they have at test time; the last part of the run trains on the
test size, so BatchNorm's statistics and the global pooling end on what evaluation sees.

The switch is a fraction of the run's planned steps, so a budgeted run switches at the same
point of its schedule on any machine; the budget planner is told the two step costs
(``BudgetPlanner.set_phases``) and plans the total with both.
"""
from __future__ import annotations

import lightning as L

from convzoo.models.complexity import flop_counter_macs

from .budget_planner import BudgetPlanner


def _planners(trainer) -> list[BudgetPlanner]:
    """The run's budget planner, if it has one (a list: none without a budget)."""
    return [c for c in trainer.callbacks if isinstance(c, BudgetPlanner)]


class ProgressiveCrop(L.Callback):
    """Random crops of ``size`` x ``size`` pixels for the first ``until_fraction`` of the run's
    optimizer steps, then crops of the whole image size (the data's ``crop_padding`` as before);
    ``size=None`` (the default config's) leaves the run alone.
    Needs the in-memory loader (``data.loader=memory``): it sets the loader's ``crop_size``.
    A budgeted run's planner learns both phases' costs (``BudgetPlanner.set_phases``);
    ``train_flops`` counts the small steps' MACs."""

    def __init__(self, size: int | None = None, until_fraction: float = 0.5) -> None:
        if size is not None and not (isinstance(size, int) and not isinstance(size, bool) and size >= 1):
            raise ValueError(f"size should be a positive number of pixels (or null: off), got {size!r}")
        if not 0.0 <= until_fraction <= 1.0:
            raise ValueError(f"until_fraction should be in [0, 1], got {until_fraction}")
        self.size, self.until_fraction = size, until_fraction
        self.macs_ratio = 1.0        # MACs of a small crop over a whole image's
        self.small_steps = 0         # optimizer steps taken on small crops
        self._small: bool | None = None

    def small_until(self, total_steps: int) -> int:
        """Steps (from the first) that see small crops in a run of ``total_steps``."""
        return round(self.until_fraction * total_steps)

    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage != "fit" or self.size is None:
            return
        datamodule = trainer.datamodule
        datamodule.setup("fit")
        height, width = datamodule.image_size
        if self.size > height or self.size > width:
            raise ValueError(f"callbacks.progressive.size={self.size} is larger than the images "
                             f"({height}x{width}); give a size of at most {min(height, width)}")
        channels = datamodule.in_chans
        full = flop_counter_macs(pl_module.net, (channels, height, width))
        small = flop_counter_macs(pl_module.net, (channels, self.size, self.size))
        self.macs_ratio = small / full if full else 1.0
        for planner in _planners(trainer):
            planner.set_phases(trainer, self.until_fraction, 1.0 / max(self.macs_ratio, 1e-9), self.macs_ratio)

    def on_train_start(self, trainer, pl_module) -> None:
        if self.size is None:
            return
        if not hasattr(trainer.train_dataloader, "crop_size"):
            raise ValueError(f"callbacks.progressive needs the in-memory loader (data.loader=memory), "
                             f"got {type(trainer.train_dataloader).__name__}")
        self._set(trainer, trainer.global_step)  # the first batch is drawn after this hook

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.size is None:
            return
        self.small_steps += bool(self._small)
        # The loader draws the next batch after this hook (or has drawn it already: Lightning
        # fetches one ahead), so the switch lands within a step or two of its planned point.
        self._set(trainer, trainer.global_step + 1)

    def _set(self, trainer, step: int) -> None:
        # One way: a plan that grows after the switch does not bring the small crops back.
        small = self._small is not False and step < self.small_until(trainer.estimated_stepping_batches)
        if small != self._small:
            trainer.train_dataloader.crop_size = (self.size, self.size) if small else None
            if not small:
                for planner in _planners(trainer):
                    planner.start_later_phase()
            self._small = small

    def flops_scale(self, steps: int) -> float:
        """The mean MACs of the run's ``steps`` over a whole-image step's."""
        small = min(self.small_steps, steps)
        return (small * self.macs_ratio + steps - small) / steps if steps else 1.0

    def state_dict(self) -> dict:
        return {"small_steps": self.small_steps}

    def load_state_dict(self, state_dict: dict) -> None:
        self.small_steps = int(state_dict.get("small_steps", 0))
