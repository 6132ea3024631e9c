"""Highway networks (Srivastava, Greff & Schmidhuber 2015, "Training Very Deep Networks"): what the
study logs while they train. ``y = H(x) T(x) + x (1 - T(x))``; the gate T's bias starts negative so
that each layer first carries its input, and ``HighwayGateMonitor`` shows how open the gates end up.
"""
from __future__ import annotations

import lightning as L
import torch

from convzoo.models.layers.highway import HighwayBlock


class HighwayGateMonitor(L.Callback):
    """Logs how open each highway layer's gate is: ``gates/stage<i>.block<j>`` = the mean of
    ``T(x)`` over the validation batches (each forward's batch mean, averaged), one scalar per
    ``HighwayBlock`` at each validation epoch end
    (``y = H(x) T(x) + x (1 - T(x))``: 0 carries the input, 1 transforms it; Srivastava et al.
    2015, Fig. 2 show the same per-layer picture).

    ``gate_bias``: where the experiment sets the gate bias (``highway_gate_bias``), the value the
    blocks must have been built with; a mismatch fails at fit start rather than producing runs
    that differ only in name.
    """

    def __init__(self, gate_bias: float | None = None) -> None:
        self.gate_bias = gate_bias
        self._blocks: dict[str, torch.nn.Module] = {}
        self._sums: dict[str, float] = {}
        self._counts: dict[str, int] = {}
        self._handles: list = []
        self._collecting = False  # validation epochs only, not the sanity check

    @staticmethod
    def tag(module_name: str) -> str:
        """``stages.1.0`` (a Net's stage 1, block 0) -> ``gates/stage1.block0``; other paths as they are."""
        parts = module_name.split(".")
        if len(parts) == 3 and parts[0] == "stages" and parts[1].isdigit() and parts[2].isdigit():
            return f"gates/stage{parts[1]}.block{parts[2]}"
        return f"gates/{module_name}"

    def setup(self, trainer, pl_module, stage: str) -> None:
        net = getattr(pl_module, "net", pl_module)
        self._blocks = {self.tag(name): m for name, m in net.named_modules() if isinstance(m, HighwayBlock)}
        if self.gate_bias is not None:
            wrong = {t: m.gate_bias for t, m in self._blocks.items() if m.gate_bias != float(self.gate_bias)}
            if wrong:
                raise ValueError(
                    f"highway_gate_bias={self.gate_bias} but {len(wrong)} highway blocks were built with other "
                    f"gate biases ({', '.join(f'{t}: {b}' for t, b in list(wrong.items())[:3])}); the model "
                    f"config must read it, e.g. gate_bias: ${{oc.select:highway_gate_bias,-2.0}}")
        for h in self._handles:
            h.remove()
        self._handles = [m.register_forward_hook(self._hook(t)) for t, m in self._blocks.items()]

    def _hook(self, tag: str):
        def record(module, args, output) -> None:
            # Validation only (flip test-time augmentation calls each block twice per batch: both count).
            if not module.training and self._collecting:
                self._sums[tag] = self._sums.get(tag, 0.0) + module.last_gate_mean
                self._counts[tag] = self._counts.get(tag, 0) + 1
        return record

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self._sums, self._counts = {}, {}
        self._collecting = not trainer.sanity_checking

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        self._collecting = False
        for tag in self._blocks:
            if self._counts.get(tag):
                pl_module.log(tag, self._sums[tag] / self._counts[tag], sync_dist=True)

    def teardown(self, trainer, pl_module, stage: str) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
