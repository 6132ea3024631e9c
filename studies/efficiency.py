"""Efficiency: one network in five forms that differ only in the block (dense, depthwise-separable,
grouped, grouped + channel shuffle, ShuffleNet units), and whether fewer MACs means faster here.

The report compares each net with the reference the experiment config names (``study_reference``,
a model name; the first run where no run names one), and finds the exact ablation of the channel
shuffle from the specs: two runs whose blocks differ only by ``channel_shuffle`` blocks. It times the
nets itself, each in the precision its run trained in, for at least ``MIN_SECONDS`` per net, mode and
round (``convzoo.training.timing.measure_training_and_inference``). Accuracy at equal time comes from
the runs' own per-epoch times: each run's validation accuracy within the fastest run's minutes.
"""
from __future__ import annotations

from pathlib import Path

import torch

from convzoo.models.complexity import si
from convzoo.models.serialization import build_from_config
from convzoo.training.device import canonical_precision
from convzoo.training.reporting import plt
from convzoo.training.tables import markdown_table
from convzoo.training.timing import measure_training_and_inference

from .common import Run, budget_note, minutes, number, pct, save, spec_blocks

TITLE = "One network, five forms: standard, depthwise-separable, grouped, grouped + shuffle, ShuffleNet units"
MIN_SECONDS = 0.5  # per net, mode and round: a training step of the small nets takes milliseconds
SHUFFLE = "channel_shuffle"  # the weightless block whose presence alone tells an ablation pair apart
_DESCRIPTIVE = {"name", "source", "paper_params"}  # spec keys that do not change the network


def run_precision(run: Run) -> str:
    """The precision the run trained in (config.yaml holds it resolved: the calibration's choice
    where it made one), where the speed measurement knows it (fp32, bf16 or fp16 mixed); else 32-true."""
    try:
        return canonical_precision(run.cfg.get("trainer", {}).get("precision", "32-true"), torch.device("cpu"))
    except ValueError:
        return "32-true"


def equal_time(runs: list[Run]) -> tuple[float, dict[str, tuple[float, int]]] | None:
    """The fastest run's minutes of fitting, and each run's validation accuracy at its last epoch end
    within them (and that epoch): accuracy at equal time, read from the runs' own per-epoch times,
    each net trained in the setting its run chose. None where a run logged no epoch times."""
    curves = {r.label: r.timed_curve("val/acc") for r in runs}
    if not all(minutes for minutes, _ in curves.values()):
        return None
    limit = min(minutes[-1] for minutes, _ in curves.values())
    reached = {}
    for label, (minutes, accs) in curves.items():
        within = [i for i, m in enumerate(minutes) if m <= limit * (1 + 1e-9)]
        if within:
            reached[label] = (accs[within[-1]], within[-1] + 1)
    return limit, reached


def reference(runs: list[Run]) -> Run:
    """The run whose model the experiment config names as the reference (``study_reference``)."""
    return next((r for r in runs if r.cfg.get("study_reference") not in (None, "")
                 and r.model.get("name") == r.cfg["study_reference"]), runs[0])


def _without_shuffles(model: dict):
    rest = {k: v for k, v in model.items() if k not in _DESCRIPTIVE | {"stages"}}
    return rest, [b for b in spec_blocks(model) if b.get("block") != SHUFFLE]


def shuffle_pairs(runs: list[Run]) -> list[tuple[Run, Run]]:
    """(without, with) channel shuffle: runs whose specs are the same once the shuffles are taken out."""
    def shuffles(r: Run) -> bool:
        return any(b.get("block") == SHUFFLE for b in spec_blocks(r.model))

    return [(a, b) for b in runs if shuffles(b) for a in runs
            if not shuffles(a) and _without_shuffles(a.model) == _without_shuffles(b.model)]


def report(runs: list[Run], out: Path, repeats: int = 5, batch: int = 128, **_) -> tuple[str, list[Path]]:
    precisions = {r.label: run_precision(r) for r in runs}
    nets = {r.label: build_from_config(r.model).eval() for r in runs} if repeats > 0 else {}
    speed = (measure_training_and_inference(nets, batch=batch, repeats=repeats, min_seconds=MIN_SECONDS,
                                            precision=precisions) if nets else {})
    logged = {r.label: number(r.metrics.get("train/images_per_sec")) for r in runs}
    ref = reference(runs)
    timed = equal_time(runs)
    rows = []
    for r in runs:
        train_s, infer_s = speed.get(r.label, (None, None))
        at = timed[1].get(r.label) if timed else None
        rows.append([r.label, si(r.metrics.get("params", 0)), si(r.metrics.get("macs", 0)),
                     f"{r.metrics['macs'] / ref.metrics['macs']:.2f}",
                     f"{train_s:,.0f}" if train_s else None, f"{infer_s:,.0f}" if infer_s else None,
                     f"{logged[r.label]:,.0f}" if logged[r.label] else None,
                     pct(r.last("val/acc")), pct(r.last("val/acc_best")), minutes(r)]
                    + ([f"{pct(at[0])} (epoch {at[1]})" if at else None] if timed else []))
    text = markdown_table(["net", "params", "MACs", "MACs / standard", "train img/s (measured)",
                           "infer img/s (measured)", "train img/s (run log)", "val acc", "best val acc", "fit (min)"]
                          + ([f"val acc at {timed[0]:.1f} min"] if timed else []), rows)
    shared = set(precisions.values())
    text += ("\n\nMeasured by this command: " + (
             f"batch {batch}, " + (f"{shared.pop()} (as the runs trained)" if len(shared) == 1 else
                                   "each net in the precision its run trained in") +
             f", channels_last, {torch.get_num_threads()} threads, "
             f"torch {torch.__version__}, median of {repeats} rounds of at least {MIN_SECONDS:g} s per net and "
             f"mode, the nets taking turns; "
             if speed else "nothing (--repeats 0); ") +
             "'run log' is train/images_per_sec of each run's last epoch (data pipeline included, runs one after another).")
    if timed:
        best = max(timed[1], key=lambda label: timed[1][label][0])
        text += (f" 'val acc at {timed[0]:.1f} min': each run's validation accuracy at its last epoch end within the "
                 f"fastest run's {timed[0]:.1f} minutes of fitting (validation included; the runs' own epoch times): "
                 f"accuracy at equal time, where {best} leads. The slower runs are mid-schedule there, their "
                 "learning rate not yet annealed: a lower bound of what a schedule of that length gives them "
                 "(``budget=`` plans one).")
    # Training speed: measured side by side where we measured, else as the runs logged it.
    train_speed = {k: v[0] for k, v in speed.items()} or logged
    source = "measured" if speed else "run log"
    for r in runs:
        if r is not ref and train_speed.get(r.label) and train_speed.get(ref.label):
            text += (f"\n\n{r.label}: {ref.metrics['macs'] / r.metrics['macs']:.1f}x fewer MACs than {ref.label}; "
                     f"{_times(train_speed[r.label] / train_speed[ref.label])} in training ({source})"
                     + (f", {_times(speed[r.label][1] / speed[ref.label][1])} at inference" if speed else "") + ".")
    text += "".join(_shuffle_ablation(grouped, shuffled, train_speed, source)
                    for grouped, shuffled in shuffle_pairs(runs))
    panels = [("MACs per image (millions)", {r.label: r.metrics["macs"] / 1e6 for r in runs})]
    if all(train_speed.get(r.label) for r in runs):
        panels.append((f"training time (ms per image, {source})", {k: 1000 / v for k, v in train_speed.items()}))
    if speed:
        panels.append(("inference time (ms per image, measured)", {k: 1000 / v[1] for k, v in speed.items()}))
    fig, axes = plt.subplots(1, len(panels) + bool(timed), figsize=(5 * (len(panels) + bool(timed)), 4), squeeze=False)
    if timed:  # the validation curves on one time axis: accuracy at equal time, at every time
        ax = axes[0][-1]
        for i, r in enumerate(runs):
            ax.plot(*r.timed_curve("val/acc"), "o-", ms=3, color=f"C{i % 10}", label=r.label)
        ax.axvline(timed[0], color="k", lw=0.8, ls=":")
        ax.set(xlabel="minutes of fitting (validation included)", ylabel="validation accuracy")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax, (xlabel, xs) in zip(axes[0], panels):
        for i, r in enumerate(runs):
            a = r.last("val/acc_best")
            ax.scatter([xs[r.label]], [a], color=f"C{i % 10}")
            ax.annotate(r.label, (xs[r.label], a), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set(xlabel=xlabel, ylabel="best validation accuracy")
        ax.grid(alpha=0.3)
    return text + "\n\n" + budget_note(runs), [save(fig, out, "efficiency")]


def _shuffle_ablation(grouped: Run, shuffled: Run, train_speed: dict[str, float], source: str) -> str:
    """``shuffled`` against ``grouped``: the same weights and MACs, so any difference in accuracy is
    the shuffle's (one seed each: differences of a point or so are within noise)."""
    a, b = grouped.last("val/acc_best"), shuffled.last("val/acc_best")
    if a is None or b is None:
        return ""
    text = (f"\n\nChannel shuffle, the exact ablation: {shuffled.label} has {grouped.label}'s weights and MACs "
            f"plus a weightless permutation; best val acc {pct(b)} against {pct(a)} ({100 * (b - a):+.2f} points, "
            f"one seed each)")
    if train_speed.get(shuffled.label) and train_speed.get(grouped.label):
        text += (f"; the permutation makes training "
                 f"{_times(train_speed[shuffled.label] / train_speed[grouped.label])} ({source})")
    return text + "."


def _times(ratio: float) -> str:
    return f"{ratio:.2f}x as fast" if ratio >= 1 else f"{1 / ratio:.2f}x slower"
