"""Stop training some parameters part-way through a run.

airbench94 (Jordan 2024) trains the bias of its patch-whitening layer for the first 3 of its ~10
epochs only, then freezes it: the whitened input stops shifting under the layers that follow.
Here the point is a fraction of the run's optimizer steps, so a budgeted run (whose epoch count
depends on the machine) freezes at the same point of its schedule.
"""
from __future__ import annotations

import lightning as L
from torch import nn

from convzoo.models.layers.whitening import PatchWhitening


class FreezeWhiteningBias(L.Callback):
    """From ``after_fraction`` of the run's steps on, the biases of every ``PatchWhitening`` layer
    get no gradient (so no update, momentum or weight decay either: optimizers skip parameters
    without a gradient). A run without such a layer is left alone. Frozen again on resume."""

    def __init__(self, after_fraction: float = 0.3) -> None:
        if not 0.0 <= after_fraction <= 1.0:
            raise ValueError(f"after_fraction should be in [0, 1], got {after_fraction}")
        self.after_fraction = after_fraction

    @staticmethod
    def _biases(net: nn.Module) -> list[nn.Parameter]:
        return [m.bias for m in net.modules() if isinstance(m, PatchWhitening)]

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step < self.after_fraction * trainer.estimated_stepping_batches:
            return
        for bias in self._biases(pl_module.net):
            if bias.requires_grad:
                bias.requires_grad_(False)
                bias.grad = None
