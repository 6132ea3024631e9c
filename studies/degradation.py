"""Degradation (He et al. 2016, sec. 4.2 and Fig. 6): a deeper plain net has higher *training* error
than a shallower one; with shortcuts the deeper net is no worse.

The report tells the families apart by the runs' model specs, not by their names: a net is
residual when its blocks take a ``shortcut`` option (the residual blocks: basic, bottleneck,
preact, resnext), plain otherwise (the ``plain`` block is the basic block's body without one); its
depth is the number of blocks in its stages. In each family the shallowest run is compared with the
deepest.
"""
from __future__ import annotations

import inspect
from pathlib import Path

from convzoo.models.complexity import si
from convzoo.models.registry import get_block
from convzoo.training.reporting import plt
from convzoo.training.tables import markdown_table

from .common import Run, budget_note, curves_axes, minutes, pct, save, spec_blocks

TITLE = "Degradation: does the deeper plain net train worse, and the deeper residual net not? (He et al. 2016, Fig. 6)"
FAMILIES = {False: "plain", True: "residual"}  # has shortcuts -> the family's name in the text


def has_shortcuts(model: dict) -> bool:
    """Whether the spec's blocks add their input back: some block takes a ``shortcut`` option."""
    return any("shortcut" in inspect.signature(get_block(b["block"])).parameters for b in spec_blocks(model))


def depth(model: dict) -> int:
    """The number of blocks in the spec's stages (plain20 and resnet20: 9, of two convs each)."""
    return len(spec_blocks(model))


def _err(acc):
    return None if acc is None else 1 - acc


def report(runs: list[Run], out: Path, **_) -> tuple[str, list[Path]]:
    rows = [[r.label, si(r.metrics.get("params", 0)), si(r.metrics.get("macs", 0)), pct(_err(r.last("train/acc_epoch"))),
             pct(_err(r.last("val/acc"))), pct(_err(r.last("val/acc_best"))), minutes(r)] for r in runs]
    text = markdown_table(["model", "params", "MACs", "train error (last epoch)", "val error", "best val error",
                           "fit (min)"], rows)
    family = {shortcuts: [r for r in runs if has_shortcuts(r.model) == shortcuts] for shortcuts in FAMILIES}
    verdicts, gaps = [], {}
    for shortcuts, kind in FAMILIES.items():
        members = sorted(family[shortcuts], key=lambda r: depth(r.model))  # stable: job order within a depth
        if len(members) < 2 or depth(members[0].model) == depth(members[-1].model):
            continue
        a, b = members[0], members[-1]
        ea, eb = _err(a.last("train/acc_epoch")), _err(b.last("train/acc_epoch"))
        if ea is not None and eb is not None:
            gaps[shortcuts] = 100 * (eb - ea)
            verdicts.append(f"{b.label} ends with {100 * eb:.1f}% training error against {a.label}'s "
                            f"{100 * ea:.1f}%: the deeper {kind} net trains {'worse' if eb > ea else 'better'}.")
    if len(gaps) == 2:
        verdicts.append(f"Going deeper changes the training error by {gaps[False]:+.1f} points without shortcuts "
                        f"and by {gaps[True]:+.1f} points with them.")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, (shortcuts, kind) in zip(axes, FAMILIES.items()):
        curves_axes(family[shortcuts], ax, error=True)
        ax.set_title(f"{kind} nets: training (dashed) and validation (solid) error")
    return "\n\n".join([text, *verdicts, budget_note(runs)]), [save(fig, out, "degradation")]
