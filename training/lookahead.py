"""Lookahead-style weight averaging, as airbench does it (Jordan 2024; Zhang et al. 2019, Lookahead).

Every ``every`` optimizer steps from epoch ``start_epoch`` on (or from ``start_fraction`` of the
run's steps: a budgeted run's epoch count depends on the machine), the slow copy moves towards the
network, ``slow <- decay * slow + (1 - decay) * fast``, and the network is set back to it
(``fast <- slow``); before each validation and at each epoch end the network takes the slow
weights, so what is validated and checkpointed is the average. The decay grows over
the run, ``decay = base_decay * (step / total_steps) ** power``: early on the copy follows the
network, at the end it averages strongly (a cheap stand-in for an EMA with a decaying lr).
Floating-point state (weights and BatchNorm statistics) is averaged; counters are left alone.
"""
from __future__ import annotations

import lightning as L
import torch


class Lookahead(L.Callback):
    def __init__(self, every: int = 5, start_epoch: int = 3, base_decay: float = 0.95 ** 5, power: float = 3.0,
                 start_fraction: float | None = None):
        if start_fraction is not None and not 0.0 <= start_fraction < 1.0:
            raise ValueError(f"start_fraction should be in [0, 1), got {start_fraction}")
        self.start_fraction = start_fraction
        if every < 1:
            raise ValueError(f"every should be an integer >= 1, got {every}")
        if start_epoch < 0:
            raise ValueError(f"start_epoch should be >= 0, got {start_epoch}")
        if not 0.0 <= base_decay < 1.0:
            raise ValueError(f"base_decay should be in [0, 1), got {base_decay}")
        self.every, self.start_epoch, self.base_decay, self.power = every, start_epoch, base_decay, power
        self.slow: dict[str, torch.Tensor] | None = None

    @staticmethod
    def _state(pl_module) -> dict[str, torch.Tensor]:
        return {k: v for k, v in pl_module.net.state_dict().items() if v.is_floating_point()}

    @torch.no_grad()
    def _update(self, pl_module, decay: float) -> None:
        for key, fast in self._state(pl_module).items():
            slow = self.slow[key]
            if slow.device != fast.device:  # restored from a checkpoint onto the CPU
                slow = self.slow[key] = slow.to(fast.device)
            slow.lerp_(fast, 1.0 - decay)
            fast.copy_(slow)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if self.start_fraction is not None:
            early = step < self.start_fraction * trainer.estimated_stepping_batches
        else:
            early = trainer.current_epoch < self.start_epoch
        if early or step % self.every:
            return
        if self.slow is None:
            self.slow = {k: v.detach().clone() for k, v in self._state(pl_module).items()}
            return
        progress = min(1.0, step / max(1, trainer.estimated_stepping_batches))
        self._update(pl_module, self.base_decay * progress ** self.power)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self.slow is not None:
            self._update(pl_module, 1.0)  # the network ends each epoch at the slow weights

    def on_validation_start(self, trainer, pl_module) -> None:
        # Lightning validates before the epoch-end hooks (and at a budget's last step inside an
        # epoch): validate, and checkpoint as best, the averaged weights.
        if self.slow is not None and not trainer.sanity_checking:
            self._update(pl_module, 1.0)

    def state_dict(self) -> dict:
        return {"slow": self.slow}

    def load_state_dict(self, state_dict: dict) -> None:
        self.slow = state_dict.get("slow")
