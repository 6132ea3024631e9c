"""Figures and tables for TensorBoard and the leaderboard (matplotlib, headless)."""
from __future__ import annotations

from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # no display on training machines
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402


def confusion_matrix(preds: torch.Tensor, targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``cm[i, j]`` = number of samples of true class i predicted as class j."""
    index = targets.long() * num_classes + preds.long()
    return torch.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def per_class_accuracy(cm: torch.Tensor) -> torch.Tensor:
    """Recall of each class: the diagonal over the row sums (NaN for a class with no samples)."""
    return cm.diag().double() / cm.sum(1).double()


def confusion_matrix_figure(cm: torch.Tensor, class_names: Sequence[str]):
    n = len(class_names)
    fig, ax = plt.subplots(figsize=(1.0 + 0.45 * n, 1.0 + 0.45 * n), dpi=100)
    ax.imshow(cm.numpy(), cmap="Blues")
    ax.set_xticks(range(n), class_names, rotation=90, fontsize=7)
    ax.set_yticks(range(n), class_names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 20:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=6,
                        color="white" if cm[i, j] > cm.max() / 2 else "black")
    fig.tight_layout()
    return fig


def misclassified_grid(images: torch.Tensor, labels: torch.Tensor, preds: torch.Tensor,
                       class_names: Sequence[str], mean: Sequence[float], std: Sequence[float], cols: int = 8):
    """Normalised images back to pixels, titled ``true -> predicted``."""
    mean_t = torch.tensor(mean).view(1, -1, 1, 1)
    std_t = torch.tensor(std).view(1, -1, 1, 1)
    pixels = (images * std_t + mean_t).clamp(0, 1)
    rows = (len(pixels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.3, rows * 1.5), dpi=100, squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < len(pixels):
            img = pixels[k].permute(1, 2, 0).squeeze(-1).numpy()
            ax.imshow(img, cmap="gray" if img.ndim == 2 else None)
            ax.set_title(f"{class_names[labels[k]]}\n-> {class_names[preds[k]]}", fontsize=6)
    fig.tight_layout()
    return fig


def leaderboard_figure(rows: Sequence[dict], metric: str = "val/acc_best"):
    """Two panels, ``metric`` (as %) against MACs and against parameters, both log x, each point
    labelled by its model name. Rows lacking the metric or the x value are left out of that panel."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 5), dpi=100, sharey=True)
    for ax, key, label in zip(axes, ("macs", "params"), ("MACs per image", "parameters")):
        points = [(r[key], 100 * r[metric], str(r.get("model", "?"))) for r in rows
                  if r.get(key) and r.get(metric) is not None]
        for x, y, name in points:
            ax.scatter(x, y, s=25)
            ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
        if points:
            ax.set_xscale("log")
            ax.margins(x=0.2, y=0.1)  # room for the labels of the outermost points
        else:
            ax.text(0.5, 0.5, f"no run has {key} and {metric}", ha="center", va="center", transform=ax.transAxes)
        ax.set_xlabel(f"{label} (log scale)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel(f"{metric} (%)")
    fig.suptitle(f"{metric} against cost, {len(rows)} runs")
    fig.tight_layout()
    return fig
