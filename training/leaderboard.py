"""A leaderboard of every training run under a folder, read from the runs' ``metrics.json``
(and ``eval.json`` where ``evaluate.py`` has measured a checkpoint): Markdown, CSV, a plot of
accuracy against cost, and the same table and plot in TensorBoard (``<folder>/leaderboard_tb``).
"""
from __future__ import annotations

import csv
from pathlib import Path

import matplotlib.pyplot as plt

from convzoo.models.complexity import si

from .reporting import leaderboard_figure
from .runs import Run, find_runs, number
from .tables import EMPTY, markdown_table

SORT_KEY = "val/acc_best"
# (row key, heading); the CSV has every column, the Markdown table drops columns empty in every row
COLUMNS = [
    ("rank", "#"), ("model", "model"), ("params", "params"), ("macs", "MACs"),
    ("val/acc_best", "val acc (best)"), ("test/acc", "test acc"), ("eval/acc", "eval acc"),
    ("eval/split", "eval split"), ("epochs", "epochs"), ("fit_seconds", "fit time"),
    ("train/images_per_sec", "train img/s"), ("eval/images_per_sec", "infer img/s"),
    ("eval/latency_ms", "latency ms (bs 1)"), ("setting", "trained in"), ("data", "data"), ("run", "run"),
]
TEXT_COLUMNS = ("model", "data", "run", "eval/split", "setting")  # left-aligned; the others are numbers


def training_setting(metrics: dict) -> str | None:
    """'32-true, channels_last, compiled': how the run trained (train.py's calibrated choice), where
    its metrics say so; speeds of runs in different settings are not the same measurement."""
    if metrics.get("precision") is None:
        return None
    parts = [str(metrics["precision"])]
    if metrics.get("channels_last") is not None:
        parts.append("channels_last" if metrics["channels_last"] else "contiguous")
    if metrics.get("compile"):
        parts.append("compiled")
    return ", ".join(parts)


def read_run(run: Run, root: Path) -> dict:
    """One leaderboard row from a run (missing values are None)."""
    metrics = run.metrics
    row = {key: metrics.get(key) for key in ("model", "data", "epochs", "best_checkpoint")}
    for key in ("params", "macs", "val/acc_best", "test/acc", "fit_seconds", "train/images_per_sec"):
        row[key] = number(metrics.get(key))
    ev = run.evaluation
    if ev:
        row.update({"eval/acc": number(ev.get("acc")), "eval/split": ev.get("split"),
                    "eval/images_per_sec": number(ev.get("images_per_sec")),
                    "eval/latency_ms": number(ev.get("latency_ms"))})
    row["setting"] = training_setting(metrics)
    row["run"] = str(run.path.relative_to(root)) if run.path != root else "."
    row["run_dir"] = str(run.path)
    return row


def collect(folder: str | Path) -> tuple[list[dict], list[str]]:
    """(rows sorted by val/acc_best, best first, runs without it last; warnings for unreadable runs)."""
    root, warnings = Path(folder), []
    if not root.is_dir():
        raise FileNotFoundError(f"runs={folder} is not a folder")
    rows = [read_run(run, root) for run in find_runs(root, skipped=warnings)]
    rows.sort(key=lambda r: (r.get(SORT_KEY) is None, -(r.get(SORT_KEY) or 0.0), r["run"]))
    for rank, row in enumerate(rows, 1):
        row["rank"] = rank
    return rows, warnings


def _cell(key: str, value) -> str:
    if value is None or value == "":
        return EMPTY
    if key in ("params", "macs"):
        return si(value)
    if key.endswith("/acc") or key.endswith("acc_best"):
        return f"{100 * value:.2f}%"
    if key == "fit_seconds":
        minutes, seconds = divmod(round(value), 60)
        return f"{minutes}m{seconds:02d}s" if minutes else f"{value:.1f}s"
    if key.endswith("images_per_sec"):
        return f"{value:,.0f}"
    if key.endswith("latency_ms"):
        return f"{value:.2f}"
    return str(value).replace("|", "\\|")


def leaderboard_markdown(rows: list[dict]) -> str:
    """The leaderboard as a markdown table, without the columns that are empty in every row."""
    columns = [(k, h) for k, h in COLUMNS if any(r.get(k) not in (None, "") for r in rows)] or COLUMNS[:2]
    align = "".join("l" if k in TEXT_COLUMNS else "r" for k, _ in columns)
    return markdown_table([h for _, h in columns], [[_cell(k, r.get(k)) for k, _ in columns] for r in rows], align)


def write_csv(rows: list[dict], path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([k for k, _ in COLUMNS])
        for r in rows:
            writer.writerow(["" if r.get(k) is None else r.get(k) for k, _ in COLUMNS])


def write_leaderboard(folder: str | Path, rows: list[dict], *, tensorboard: bool = True) -> dict:
    """leaderboard.md, leaderboard.csv, leaderboard.png (and TensorBoard events) in ``folder``."""
    folder = Path(folder)
    table = leaderboard_markdown(rows)
    md = (f"# Leaderboard: {folder.resolve().name}\n\n{len(rows)} runs, sorted by {SORT_KEY} (best first). "
          f"Accuracies from each run's metrics.json; eval columns from its eval.json (evaluate.py).\n\n{table}\n")
    paths = {"md": folder / "leaderboard.md", "csv": folder / "leaderboard.csv", "png": folder / "leaderboard.png"}
    paths["md"].write_text(md)
    write_csv(rows, paths["csv"])
    fig = leaderboard_figure(rows, SORT_KEY)
    fig.savefig(paths["png"])
    if tensorboard:
        from torch.utils.tensorboard import SummaryWriter

        paths["tensorboard"] = folder / "leaderboard_tb"
        with SummaryWriter(str(paths["tensorboard"])) as writer:
            writer.add_text("leaderboard", table, 0)
            writer.add_figure("leaderboard", fig, 0, close=False)
    plt.close(fig)
    return paths
