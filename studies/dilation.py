"""Stride versus dilation (Yu, Koltun & Funkhouser 2017, Dilated Residual Networks): receptive
field, cost and accuracy of a net that downsamples its last stage against one that dilates it.

The complexity table needs no runs: without any, it compares the models the experiment config
sweeps over (``configs/experiment/dilation.yaml``), the first one as the reference. The degradation
study trains resnet20 on the same recipe: its run is the reference where given (the degradation
folder after the dilation one), so that a longer budget trains only dilated_resnet20.
"""
from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from matplotlib.ticker import MaxNLocator
from omegaconf import OmegaConf

from convzoo.models import create_model
from convzoo.models.complexity import complexity, si
from convzoo.models.serialization import build_from_config
from convzoo.training.reporting import plt
from convzoo.training.tables import markdown_table

from .common import Run, budget_note, curves_axes, minutes, pct, save

TITLE = "Stride versus dilation: receptive field, cost and accuracy (Yu et al. 2017)"
NEEDS_RUNS = False
FOLDERS = "<its sweep folder> [<the degradation sweep folder>]"  # resnet20 of the same budget, trained once
REFERENCE_STUDIES = ("degradation",)


def experiment_models() -> list[str]:
    """The models ``experiment=dilation`` sweeps over, in its order."""
    cfg = OmegaConf.create((files("convzoo.configs") / "experiment" / "dilation.yaml").read_text())
    return [name.strip() for name in str(cfg.hydra.sweeper.params.model).split(",")]


def reference_models() -> list[str]:
    """The degradation study's runs join this one with resnet20 only, not its plain or deeper nets."""
    return experiment_models()


def stage_rf(rep, stage: int) -> float | None:
    rows = [r for r in rep.rows if r.name.startswith(f"stages.{stage}.") and r.rf_size is not None]
    return rows[-1].rf_size if rows else None


def report(runs: list[Run], out: Path, **_) -> tuple[str, list[Path]]:
    order = experiment_models()  # the reference first, whichever folder its run came from
    runs = sorted(runs, key=lambda r: order.index(r.model.get("name")) if r.model.get("name") in order else len(order))
    nets = {r.label: (r, build_from_config(r.model).eval()) for r in runs} or \
        {name: (None, create_model(name)) for name in experiment_models()}
    rows, reps, fig, axes = [], {}, *plt.subplots(1, 2 if runs else 1, figsize=(11 if runs else 5.5, 4), squeeze=False)
    for i, (label, (run, net)) in enumerate(nets.items()):
        rep = reps[label] = complexity(net, (3, 32, 32))
        last = [r for r in rep.rows if r.name.startswith("stages.")][-1].output_shape
        rows.append([label, si(rep.total_params), si(rep.total_macs), si(rep.total_activation_bytes) + "B",
                     "x".join(map(str, last)), *(f"{stage_rf(rep, s):g}" for s in range(len(net.stages))),
                     *((pct(run.last("val/acc")), pct(run.last("val/acc_best")), minutes(run)) if run else ())])
        convs = [r.rf_size for r in rep.rows if r.type == "Conv2d" and r.rf_size is not None and not r.rf_global]
        axes[0][0].plot(range(1, len(convs) + 1), convs, "o-", ms=3, color=f"C{i % 10}", label=label)
    axes[0][0].set(xlabel="conv layer (input side first)", ylabel="receptive field (input pixels)",
                   title="receptive field, layer by layer")
    axes[0][0].xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0][0].grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    if runs:
        curves_axes(runs, axes[0][1])
        axes[0][1].set_title("accuracy: training (dashed), validation (solid)")
    stages = max(len(net.stages) for _, net in nets.values())
    head = ["model", "params", "MACs", "activation memory", "last feature map"] + \
        [f"RF after stage {s + 1}" for s in range(stages)] + (["val acc", "best val acc", "fit (min)"] if runs else [])
    text = markdown_table(head, rows) + ("\n\nParameters, MACs, activation memory (the forward pass's outputs for one "
                                   "image, fp32) and receptive fields (in input pixels) from models.complexity.")
    (ref, a), *others = reps.items()
    for label, b in others:
        text += (f"\n\n{label} against {ref}: {b.total_params / a.total_params:.2f}x the parameters, "
                 f"{b.total_macs / a.total_macs:.2f}x the MACs, {b.total_activation_bytes / a.total_activation_bytes:.2f}x "
                 f"the activation memory, receptive field {b.max_local_rf:g} against {a.max_local_rf:g} pixels.")
    return text + ("\n\n" + budget_note(runs) if runs else ""), [save(fig, out, "dilation")]
