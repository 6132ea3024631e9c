"""Highway networks (Srivastava, Greff & Schmidhuber 2015, "Training Very Deep Networks"): what the
study logs while they train. ``y = H(x) T(x) + x (1 - T(x))``; the gate T's bias starts negative so
that each layer first carries its input, and ``HighwayGateMonitor`` shows how open the gates end up.

The report reads the gates from what the runs logged (``gates/...``) and their biases from the model
specs (``gate_bias``); runs without gates are references of the same budget (``REFERENCE_STUDIES``:
with ``all``, the degradation study's runs trained with the same recipe).
"""
from __future__ import annotations

import math
import re
import statistics
from pathlib import Path

import lightning as L
import torch
from matplotlib.ticker import MaxNLocator

from convzoo.models.complexity import si
from convzoo.models.layers.highway import HighwayBlock
from convzoo.training.reporting import plt
from convzoo.training.tables import markdown_table

from .common import Run, budget_note, curves_axes, gate_biases, minutes, pct, save

TITLE = "Highway versus residual; the gate bias; how open the gates end up (Srivastava et al. 2015)"
FOLDERS = "<its sweep folder> <the degradation sweep folder>"  # the references share its budget
REFERENCE_STUDIES = ("degradation",)


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
        self._sums: dict[str, torch.Tensor] = {}  # tag -> (sum of batch means, batches), fp32
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
            # Sum and count are one tensor (fp32, as the block's gate_mean is), read once per epoch: a
            # float() here would break a compiled net's graph at every block, and an int count would be
            # a guard that recompiles the net at every batch.
            if not module.training and self._collecting:
                mean = module.gate_mean
                pair = torch.stack([mean, torch.ones_like(mean)])
                total = self._sums.get(tag)
                self._sums[tag] = pair if total is None else total + pair
        return record

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self._sums.clear()  # in place: a new dict would be a new object for a compiled net's guards
        self._collecting = not trainer.sanity_checking

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        self._collecting = False
        for tag in self._blocks:
            if tag in self._sums:
                total, count = self._sums[tag].tolist()
                pl_module.log(tag, total / count, sync_dist=True)

    def teardown(self, trainer, pl_module, stage: str) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []


def report(runs: list[Run], out: Path, **_) -> tuple[str, list[Path]]:
    # the references first, then the gated runs from the highest gate bias down (the sweep's order),
    # wherever each run's record came from
    runs = sorted(runs, key=lambda r: -max(gate_biases(r.model), default=math.inf))
    rows, layers = [], {}
    for r in runs:
        gates = {t[len("gates/"):]: v[-1][1] for t, v in r.scalars.items() if t.startswith("gates/")}
        layers.update(dict.fromkeys(gates))  # stage<i>.block<j>, ordered below
        biases = sorted(set(gate_biases(r.model)))
        low = min(gates, key=gates.get) if gates else None
        high = max(gates, key=gates.get) if gates else None
        rows.append([r.label, si(r.metrics.get("params", 0)), si(r.metrics.get("macs", 0)),
                     "/".join(f"{b:g}" for b in biases) or None,
                     "/".join(f"{1 / (1 + math.exp(-b)):.3f}" for b in biases) or None,
                     f"{statistics.fmean(gates.values()):.3f}" if gates else None,
                     f"{low} {gates[low]:.3f}" if low else None, f"{high} {gates[high]:.3f}" if high else None,
                     pct(r.last("val/acc")), pct(r.last("val/acc_best")), minutes(r)])
    text = markdown_table(["run", "params", "MACs", "gate bias b", "sigmoid(b)", "mean gate (end)",
                           "most closed layer", "most open layer", "val acc", "best val acc", "fit (min)"], rows)
    layers = sorted(layers, key=lambda n: [int(d) for d in re.findall(r"\d+", n)] or [1 << 30])
    gated = [r for r in runs if any(t.startswith("gates/") for t in r.scalars)]
    if gated:
        per_layer = [[name] + [f"{r.last('gates/' + name):.3f}" if r.last("gates/" + name) is not None else None
                               for r in gated] for name in layers]
        text += "\n\nMean gate T per layer at the end (0: the layer carries its input, 1: it transforms):\n\n"
        text += markdown_table(["layer"] + [r.label for r in gated], per_layer)
        moves = [f"{r.label} {1 / (1 + math.exp(-b[0])):.3f} -> "
                 f"{statistics.fmean(r.last('gates/' + n) for n in layers if r.last('gates/' + n) is not None):.3f}"
                 for r in gated if len(b := sorted(set(gate_biases(r.model)))) == 1]
        if moves:
            text += "\n\nMean gate over layers, at the start (sigmoid(b)) -> at the end: " + "; ".join(moves) + "."
        accs = [a for a in (r.last("val/acc_best") for r in gated) if a is not None]
        if len(accs) > 1:
            text += (f" Best val acc across the {len(accs)} gated runs spans {100 * (max(accs) - min(accs)):.2f} "
                     f"points (one seed each).")
        best = max(gated, key=lambda r: r.last("val/acc_best") or 0)
        text += f"\n\nBest gate bias at this budget: {best.label} ({pct(best.last('val/acc_best'))} best val acc)."
        others = [r for r in runs if r not in gated]
        if others:
            text += " References of the same budget: " + ", ".join(
                f"{r.label} ({si(r.metrics.get('params', 0))} params) {pct(r.last('val/acc_best'))}" for r in others) + "."
    fig, axes = plt.subplots(1, 3, figsize=(16, 4))
    curves_axes(runs, axes[0], tags=("train/acc_epoch", "val/acc"))
    axes[0].set_title("accuracy: training (dashed), validation (solid)")
    for r in gated:
        values = [r.last("gates/" + name) for name in layers]
        axes[1].plot(range(len(values)), values, "o-", color=f"C{runs.index(r) % 10}", label=r.label)
        for b in set(gate_biases(r.model)):
            axes[1].axhline(1 / (1 + math.exp(-b)), ls=":", color=f"C{runs.index(r) % 10}")
        steps = sorted({s for t, v in r.scalars.items() if t.startswith("gates/") for s, _ in v})
        means = [statistics.fmean(dict(r.scalars["gates/" + n]).get(s, math.nan) for n in layers) for s in steps]
        batch = r.cfg.get("data", {}).get("batch_size") or 1
        axes[2].plot([s * batch / 1000 for s in steps], means, "o-", color=f"C{runs.index(r) % 10}", label=r.label)
    axes[1].xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[1].set(xlabel="highway layer (input side first)", ylabel="mean gate T", title="gates at the end (dotted: sigmoid(b))")
    axes[2].set(xlabel="training images seen (thousands)", ylabel="mean gate T over layers", title="gates during training")
    for ax in axes[1:]:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return text + "\n\n" + budget_note(runs), [save(fig, out, "highway")]
