"""What the study reports share: their runs (found and read by ``convzoo.training.runs``), labelled
for tables and legends; the facts of a run's model spec a report compares by; the budget note;
the cell and plot helpers."""
from __future__ import annotations

from pathlib import Path

from convzoo.models.net import expand_stage
from convzoo.training import runs as convzoo_runs
from convzoo.training.reporting import plt
from convzoo.training.runs import CLASSIFIER, Run, number

__all__ = ["Run", "number", "find_runs", "label_runs", "spec_blocks", "gate_biases", "pct", "minutes", "recipe",
           "budget_note", "save", "curves_axes"]


def spec_blocks(model: dict) -> list[dict]:
    """The blocks of a model spec's stages one by one, as ``Net`` builds them (``expand_stage``:
    ``num_blocks`` spelled out, each block with its own stride)."""
    return [block for stage in model.get("stages", []) for block in expand_stage(stage)]


def gate_biases(node) -> list[float]:
    """Every ``gate_bias`` in a model spec (the highway blocks' initial gate bias)."""
    if isinstance(node, dict):
        return [float(v) for k, v in node.items() if k == "gate_bias"] + \
               [b for k, v in node.items() if k != "gate_bias" for b in gate_biases(v)]
    return [b for v in node for b in gate_biases(v)] if isinstance(node, list) else []


def find_runs(folders, task: str = CLASSIFIER) -> list[Run]:
    """The runs of ``task`` (``metrics.json`` + ``config.yaml``) under ``folders``, in job order, labelled."""
    return label_runs(convzoo_runs.find_runs(folders, task=task))


def label_runs(runs: list[Run]) -> list[Run]:
    """Label each run by its model, width and gate bias; the run folder's name where two match."""
    for run in runs:
        wm, biases = run.model.get("width_mult", 1.0), sorted(set(gate_biases(run.model)))
        run.label = (run.model.get("name", run.path.name) + (f" x{wm:g}" if wm != 1.0 else "")
                     + (" b=" + "/".join(f"{b:g}" for b in biases) if biases else ""))
    seen = [r.label for r in runs]
    for run in runs:
        if seen.count(run.label) > 1:
            run.label += f" [{run.path.name}]"
    return runs


def pct(x) -> str | None:
    return None if x is None else f"{100 * x:.2f}%"


def minutes(run: Run) -> str | None:
    s = number(run.metrics.get("fit_seconds"))
    return None if s is None else f"{s / 60:.1f}"


def recipe(run: Run, precision: bool = True) -> str:
    """What must match for two runs to be compared: the budget, the optimisation and the precision."""
    t, c = run.cfg.get("trainer", {}), run.cfg
    return (f"{t.get('max_epochs')} epochs x {t.get('limit_train_batches', 1.0)} of the data, batch "
            f"{c.get('data', {}).get('batch_size')}, {str(c.get('optimizer', {}).get('_target_')).rsplit('.', 1)[-1]} "
            f"lr {c.get('optimizer', {}).get('lr')}, {str(c.get('scheduler', {}).get('_target_')).rsplit('.', 1)[-1]}"
            + (f", precision {t['precision']}" if precision and t.get("precision") else ""))


def budget_note(runs: list[Run]) -> str:
    """The budget and recipe the runs share (a warning where they differ; each run's precision where
    only that differs, as when each run's calibration chose its own), and the machine they trained
    on, as each run's metrics.json names it (its CPU, threads and torch), where they do."""
    recipes = sorted({recipe(r) for r in runs})
    if len(recipes) == 1:
        note = f"Budget of every run: {recipes[0]}."
    elif len({recipe(r, precision=False) for r in runs}) == 1:
        by_precision: dict[str, list[str]] = {}
        for r in runs:
            by_precision.setdefault(str(r.cfg.get("trainer", {}).get("precision")), []).append(r.label)
        note = (f"Budget of every run: {recipe(runs[0], precision=False)}; the precision differs: "
                + "; ".join(f"{p} for {', '.join(labels)}" for p, labels in sorted(by_precision.items())) + ".")
    else:
        note = "Warning: the runs had different budgets: " + "; ".join(recipes) + "."
    compiled = [r.label for r in runs if r.metrics.get("compile") is True]
    if compiled and len(compiled) < len(runs):
        note += (f" Compiled with torch.compile (the calibration measured it faster): {', '.join(compiled)}; the "
                 "others eager, so their fit minutes are not a like-for-like speed comparison.")
    machines = sorted({str(r.metrics["machine"]) for r in runs if r.metrics.get("machine")})
    if len(machines) == 1:
        note += f" Trained on {machines[0]}."
    elif machines:
        note += " Trained on different machines: " + "; ".join(
            f"{', '.join(r.label for r in runs if r.metrics.get('machine') == m)} on {m}" for m in machines) + "."
    return note


def save(fig, out: Path, name: str) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out / f"{name}.png", dpi=100)
    plt.close(fig)
    return out / f"{name}.png"


def curves_axes(runs: list[Run], axes, tags=("train/acc_epoch", "val/acc"), error: bool = False) -> None:
    """Per-epoch curves against training images seen: dashed for training, solid for validation."""
    for i, run in enumerate(runs):
        colour = f"C{i % 10}"
        for tag, style in zip(tags, ("--", "-")):
            x, y = run.curve(tag)
            if x:
                axes.plot(x, [1 - v for v in y] if error else y, style, color=colour,
                          label=f"{run.label} {'train' if tag.startswith('train') else 'val'}")
    axes.set(xlabel="training images seen (thousands)", ylabel="error" if error else "accuracy")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7)
