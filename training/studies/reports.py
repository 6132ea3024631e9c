"""One function per study: ``(runs, out folder) -> (markdown, figure paths)``."""
from __future__ import annotations

import math
import re
import statistics
from pathlib import Path

import torch
from matplotlib.ticker import MaxNLocator

from convzoo.models.complexity import complexity, si

from ..reporting import plt
from ..tables import markdown_table
from ..timing import measure_training_and_inference
from .runs import Run, build, curves_axes, gate_biases, minutes, number, pct, save
from .speed import MIN_SECONDS, runs_precision


def degradation(runs: list[Run], out: Path, **_) -> tuple[str, list[Path]]:
    rows = [[r.label, si(r.metrics.get("params", 0)), si(r.metrics.get("macs", 0)), pct(_err(r.last("train/acc_epoch"))),
             pct(_err(r.last("val/acc"))), pct(_err(r.last("val/acc_best"))), minutes(r)] for r in runs]
    text = markdown_table(["model", "params", "MACs", "train error (last epoch)", "val error", "best val error",
                           "fit (min)"], rows)
    by = {r.model.get("name"): r for r in runs}
    verdicts, gaps = [], {}
    for kind in ("plain", "resnet"):
        pair = sorted((n for n in by if re.fullmatch(fr"{kind}\d+", n or "")), key=lambda n: int(n[len(kind):]))
        if len(pair) >= 2:
            a, b = by[pair[0]], by[pair[-1]]
            ea, eb = _err(a.last("train/acc_epoch")), _err(b.last("train/acc_epoch"))
            if ea is not None and eb is not None:
                gaps[kind] = 100 * (eb - ea)
                verdicts.append(f"{pair[-1]} ends with {100 * eb:.1f}% training error against {pair[0]}'s "
                                f"{100 * ea:.1f}%: the deeper {'plain' if kind == 'plain' else 'residual'} net "
                                f"trains {'worse' if eb > ea else 'better'}.")
    if len(gaps) == 2:
        verdicts.append(f"Going deeper changes the training error by {gaps['plain']:+.1f} points without shortcuts "
                        f"and by {gaps['resnet']:+.1f} points with them.")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, kind in zip(axes, ("plain", "residual")):
        curves_axes([r for r in runs if (r.model.get("name", "").startswith("plain")) == (kind == "plain")], ax, error=True)
        ax.set_title(f"{kind} nets: training (dashed) and validation (solid) error")
    return "\n\n".join([text, *verdicts]), [save(fig, out, "degradation")]


def _err(acc):
    return None if acc is None else 1 - acc


def highway(runs: list[Run], out: Path, **_) -> tuple[str, list[Path]]:
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
    return text, [save(fig, out, "highway")]


def efficiency(runs: list[Run], out: Path, repeats: int = 5, batch: int = 128, **_) -> tuple[str, list[Path]]:
    precision = runs_precision(runs)
    speed = (measure_training_and_inference({r.label: build(r.model) for r in runs}, batch=batch, repeats=repeats,
                                            min_seconds=MIN_SECONDS, precision=precision) if repeats > 0 else {})
    logged = {r.label: number(r.metrics.get("train/images_per_sec")) for r in runs}
    ref = next((r for r in runs if r.model.get("name") == "eff_standard"), runs[0])
    rows = []
    for r in runs:
        train_s, infer_s = speed.get(r.label, (None, None))
        rows.append([r.label, si(r.metrics.get("params", 0)), si(r.metrics.get("macs", 0)),
                     f"{r.metrics['macs'] / ref.metrics['macs']:.2f}",
                     f"{train_s:,.0f}" if train_s else None, f"{infer_s:,.0f}" if infer_s else None,
                     f"{logged[r.label]:,.0f}" if logged[r.label] else None,
                     pct(r.last("val/acc")), pct(r.last("val/acc_best")), minutes(r)])
    text = markdown_table(["net", "params", "MACs", "MACs / standard", "train img/s (measured)",
                           "infer img/s (measured)", "train img/s (run log)", "val acc", "best val acc", "fit (min)"],
                          rows)
    text += ("\n\nMeasured by this command: " + (
             f"batch {batch}, {precision} (as the runs trained), channels_last, {torch.get_num_threads()} threads, "
             f"torch {torch.__version__}, median of {repeats} rounds of at least {MIN_SECONDS:g} s per net and "
             f"mode, the nets taking turns; "
             if speed else "nothing (--repeats 0); ") +
             "'run log' is train/images_per_sec of each run's last epoch (data pipeline included, runs one after another).")
    # Training speed: measured side by side where we measured, else as the runs logged it.
    train_speed = {k: v[0] for k, v in speed.items()} or logged
    source = "measured" if speed else "run log"
    for r in runs:
        if r is not ref and train_speed.get(r.label) and train_speed.get(ref.label):
            text += (f"\n\n{r.label}: {ref.metrics['macs'] / r.metrics['macs']:.1f}x fewer MACs than {ref.label}; "
                     f"{_times(train_speed[r.label] / train_speed[ref.label])} in training ({source})"
                     + (f", {_times(speed[r.label][1] / speed[ref.label][1])} at inference" if speed else "") + ".")
    text += _shuffle_ablation({r.model.get("name"): r for r in runs}, train_speed, source)
    panels = [("MACs per image (millions)", {r.label: r.metrics["macs"] / 1e6 for r in runs})]
    if all(train_speed.get(r.label) for r in runs):
        panels.append((f"training time (ms per image, {source})", {k: 1000 / v for k, v in train_speed.items()}))
    if speed:
        panels.append(("inference time (ms per image, measured)", {k: 1000 / v[1] for k, v in speed.items()}))
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    for ax, (xlabel, xs) in zip(axes[0], panels):
        for i, r in enumerate(runs):
            a = r.last("val/acc_best")
            ax.scatter([xs[r.label]], [a], color=f"C{i % 10}")
            ax.annotate(r.label, (xs[r.label], a), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set(xlabel=xlabel, ylabel="best validation accuracy")
        ax.grid(alpha=0.3)
    return text, [save(fig, out, "efficiency")]


def _shuffle_ablation(by: dict[str, Run], train_speed: dict[str, float], source: str) -> str:
    """eff_grouped against eff_grouped_shuffle: the same weights and MACs, so any difference in
    accuracy is the shuffle's (one seed each: differences of a point or so are within noise)."""
    grouped, shuffled = by.get("eff_grouped"), by.get("eff_grouped_shuffle")
    if grouped is None or shuffled is None:
        return ""
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


def stage_rf(report, stage: int) -> float | None:
    rows = [r for r in report.rows if r.name.startswith(f"stages.{stage}.") and r.rf_size is not None]
    return rows[-1].rf_size if rows else None


def dilation(runs: list[Run], out: Path, **_) -> tuple[str, list[Path]]:
    from convzoo.models import create_model

    nets = {r.label: (r, build(r.model)) for r in runs} or \
        {name: (None, create_model(name)) for name in ("resnet20", "dilated_resnet20")}
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
    return text, [save(fig, out, "dilation")]


def _pool_text(entry: dict) -> str:
    """A pool block of a model spec in words: ``3x3 max-pool /2``, ``3x3 conv /2``."""
    mode, stride = entry.get("mode", "max"), entry.get("stride", 2)
    k = entry.get("kernel_size") or (3 if mode == "conv" else stride)
    return f"{k}x{k} {mode if mode == 'conv' else mode + '-pool'} /{stride}"


def pooling(runs: list[Run], out: Path, **_) -> tuple[str, list[Path]]:
    rows = []
    for r in runs:
        rep = complexity(build(r.model), (3, 32, 32))
        pools = [e for s in r.model.get("stages", []) for e in s.get("blocks", [s]) if e.get("block") == "pool"]
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
    return text, [save(fig, out, "pooling")]


