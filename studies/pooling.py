"""Max-pooling versus strided convolution (Springenberg et al. 2015, "Striving for Simplicity: The
All Convolutional Net"). The report reads how each net downsamples from its spec's ``pool`` blocks.
"""
from __future__ import annotations

from pathlib import Path

from convzoo.models.complexity import complexity, si
from convzoo.models.serialization import build_from_config
from convzoo.training.reporting import plt
from convzoo.training.tables import markdown_table

from .common import Run, budget_note, curves_axes, minutes, pct, save, spec_blocks

TITLE = "Max-pooling versus strided convolution (Springenberg et al. 2015)"


def _pool_text(entry: dict) -> str:
    """A pool block of a model spec in words: ``3x3 max-pool /2``, ``3x3 conv /2``."""
    mode, stride = entry.get("mode", "max"), entry.get("stride", 2)
    k = entry.get("kernel_size") or (3 if mode == "conv" else stride)
    return f"{k}x{k} {mode if mode == 'conv' else mode + '-pool'} /{stride}"


def report(runs: list[Run], out: Path, **_) -> tuple[str, list[Path]]:
    rows = []
    for r in runs:
        rep = complexity(build_from_config(r.model).eval(), (3, 32, 32))
        pools = [b for b in spec_blocks(r.model) if b.get("block") == "pool"]
        how = ", ".join(sorted({_pool_text(e) for e in pools})) or "none"
        rows.append([r.label, how, si(rep.total_params), si(rep.total_macs), si(rep.total_activation_bytes) + "B",
                     f"{rep.max_local_rf:g}", pct(r.last("train/acc_epoch")), pct(r.last("val/acc")),
                     pct(r.last("val/acc_best")), minutes(r)])
    text = markdown_table(["model", "downsampling", "params", "MACs", "activation memory", "receptive field",
                           "train acc", "val acc", "best val acc", "fit (min)"], rows, "ll" + "r" * 8)
    if len(runs) >= 2:
        ranked = sorted(runs, key=lambda r: -(r.last("val/acc_best") or 0))
        text += "\n\nBest validation accuracy: " + " > ".join(
            f"{r.label} {pct(r.last('val/acc_best'))}" for r in ranked) + "."
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    curves_axes(runs, axes[0], tags=("train/loss_epoch", "val/loss"))
    axes[0].set(ylabel="loss", title="loss: training (dashed), validation (solid)")
    curves_axes(runs, axes[1])
    axes[1].set_title("accuracy: training (dashed), validation (solid)")
    return text + "\n\n" + budget_note(runs), [save(fig, out, "pooling")]
