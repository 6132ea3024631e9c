"""What a study's report reads: the runs of a sweep (config, metrics, TensorBoard scalars), and
the table and plot helpers the reports share."""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import OmegaConf

from ..reporting import plt

@dataclass
class Run:
    path: Path
    cfg: dict
    metrics: dict
    label: str = ""
    _scalars: dict | None = field(default=None, repr=False)

    @property
    def model(self) -> dict:
        return self.cfg.get("model") or {}

    @property
    def scalars(self) -> dict[str, list[tuple[int, float]]]:
        """Every scalar tag of the run's TensorBoard events: ``tag -> [(step, value), ...]`` by step."""
        if self._scalars is None:
            from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

            acc = EventAccumulator(str(self.path), size_guidance={"scalars": 0})
            acc.Reload()
            self._scalars = {t: sorted((e.step, e.value) for e in acc.Scalars(t)) for t in acc.Tags()["scalars"]}
        return self._scalars

    def curve(self, tag: str) -> tuple[list[float], list[float]]:
        """(thousands of training images seen, values) of a per-epoch tag."""
        batch = (self.cfg.get("data") or {}).get("batch_size") or 1
        points = self.scalars.get(tag, [])
        return [s * batch / 1000 for s, _ in points], [v for _, v in points]

    def last(self, tag: str) -> float | None:
        points = self.scalars.get(tag)
        return points[-1][1] if points else number(self.metrics.get(tag))


def number(value):
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) else None


def gate_biases(node) -> list[float]:
    """Every ``gate_bias`` in a model spec (the highway blocks' initial gate bias)."""
    if isinstance(node, dict):
        return [float(v) for k, v in node.items() if k == "gate_bias"] + \
               [b for k, v in node.items() if k != "gate_bias" for b in gate_biases(v)]
    return [b for v in node for b in gate_biases(v)] if isinstance(node, list) else []


def find_runs(folders) -> list[Run]:
    """Classifier runs (``metrics.json`` + ``config.yaml``) under ``folders``, in job order, labelled."""
    runs = []
    for folder in map(Path, folders):
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder} is not a folder; give a sweep folder such as logs/train/multiruns/<time>")
        for metrics in sorted(folder.rglob("metrics.json")):
            cfg_path = metrics.parent / "config.yaml"
            data = json.loads(metrics.read_text())
            if "decoder" in data or not cfg_path.is_file():
                continue  # an autoencoder run (checkerboard study), or not a train.py run
            cfg = OmegaConf.to_container(OmegaConf.load(cfg_path), resolve=True)
            if cfg.get("task", "classification") == "classification" and isinstance(cfg.get("model"), dict):
                runs.append(Run(metrics.parent, cfg, data))
    job = re.compile(r"(\d+)_")
    runs.sort(key=lambda r: (str(r.path.parent), int(job.match(r.path.name).group(1)) if job.match(r.path.name) else 1 << 30))
    return label_runs(runs)


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


def md_table(head: list[str], rows: list[list], left: int = 1) -> str:
    """A markdown table; the first ``left`` columns are text, the others right-aligned numbers."""
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" if i < left else "---:" for i in range(len(head))) + "|"]
    return "\n".join(lines + ["| " + " | ".join("-" if c is None else str(c) for c in row) + " |" for row in rows])


def pct(x) -> str | None:
    return None if x is None else f"{100 * x:.2f}%"


def minutes(run: Run) -> str | None:
    s = number(run.metrics.get("fit_seconds"))
    return None if s is None else f"{s / 60:.1f}"


def recipe(run: Run) -> str:
    """What must match for two runs to be compared: the budget, the optimisation and the precision."""
    t, c = run.cfg.get("trainer", {}), run.cfg
    return (f"{t.get('max_epochs')} epochs x {t.get('limit_train_batches', 1.0)} of the data, batch "
            f"{c.get('data', {}).get('batch_size')}, {str(c.get('optimizer', {}).get('_target_')).rsplit('.', 1)[-1]} "
            f"lr {c.get('optimizer', {}).get('lr')}, {str(c.get('scheduler', {}).get('_target_')).rsplit('.', 1)[-1]}"
            + (f", precision {t['precision']}" if t.get("precision") else ""))


def budget_note(runs: list[Run]) -> str:
    recipes = sorted({recipe(r) for r in runs})
    if len(recipes) == 1:
        return f"Budget of every run: {recipes[0]}."
    return "Warning: the runs had different budgets: " + "; ".join(recipes) + "."


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


def build(model_cfg: dict) -> torch.nn.Module:
    """A run's network from its config (only this project's model classes: see check_targets)."""
    import hydra

    from ..evaluation import check_targets

    check_targets(model_cfg)
    return hydra.utils.instantiate(model_cfg).eval()


