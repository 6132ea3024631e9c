"""Learning curves from a run's own TensorBoard events: a PNG and a per-epoch Markdown table.

    convzoo curves <run folder> [<run folder> ...] --out curves.png [--table]

Several runs are drawn on the same axes, labelled by their folder name (or model name).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from .reporting import plt
from .runs import Run, read_scalars
from .tables import markdown_table

TAGS = ("train/loss_epoch", "train/acc_epoch", "val/loss", "val/acc", "train/epoch_seconds")


def read_curves(run_dir: str | Path) -> dict[str, list[float]]:
    """Per-epoch values of TAGS, in step order (one value per epoch each)."""
    scalars = read_scalars(run_dir, TAGS)
    if "val/acc" not in scalars:
        raise ValueError(f"{run_dir} has no val/acc events; is it a convzoo run folder?")
    return {tag: [value for _, value, _ in points] for tag, points in scalars.items()}


def run_label(run_dir: Path) -> str:
    if (run_dir / "metrics.json").is_file():
        return Run(run_dir).metrics.get("model", run_dir.name)
    return run_dir.name


def markdown(curves: dict[str, list[float]]) -> str:
    """One row per epoch: train loss and accuracy, validation loss and accuracy, cumulative time."""
    rows, elapsed = [], 0.0
    for i, val_acc in enumerate(curves["val/acc"]):
        def get(tag):
            values = curves.get(tag, [])
            return values[i] if i < len(values) else float("nan")
        elapsed += get("train/epoch_seconds")
        rows.append([i + 1, f"{get('train/loss_epoch'):.3f}", f"{get('train/acc_epoch'):.4f}",
                     f"{get('val/loss'):.3f}", f"{val_acc:.4f}", f"{elapsed / 60:.1f}"])
    return markdown_table(["epoch", "train loss", "train acc", "val loss", "val acc", "elapsed (min)"], rows, "rrrrrr")


def plot(runs: dict[str, dict[str, list[float]]], out: Path) -> None:
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    for label, c in runs.items():
        epochs = range(1, len(c["val/acc"]) + 1)
        if "train/loss_epoch" in c:
            ax_loss.plot(range(1, len(c["train/loss_epoch"]) + 1), c["train/loss_epoch"], label=f"{label} train")
        if "val/loss" in c:
            ax_loss.plot(epochs, c["val/loss"], "--", label=f"{label} val")
        if "train/acc_epoch" in c:
            ax_acc.plot(range(1, len(c["train/acc_epoch"]) + 1), c["train/acc_epoch"], label=f"{label} train")
        ax_acc.plot(epochs, c["val/acc"], "--", label=f"{label} val")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="convzoo curves", description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (with TensorBoard events)")
    parser.add_argument("--out", type=Path, default=Path("curves.png"), help="PNG to write")
    parser.add_argument("--table", action="store_true", help="print each run's per-epoch table")
    args = parser.parse_args(argv)
    runs = {}
    for run in args.runs:
        curves = read_curves(run)
        label = run_label(run)
        label = f"{label} ({run.name})" if label in runs else label
        runs[label] = curves
        if args.table:
            print(f"{label} ({run}):\n{markdown(curves)}\n")
    plot(runs, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
