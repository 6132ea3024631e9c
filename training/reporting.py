"""Figures and tables for TensorBoard and the leaderboard (matplotlib, headless), and the fixed,
class-stratified sample of images the image figures show."""
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


class StratifiedSample:
    """Up to ``count`` items of a pass over a split, spread over the classes and the same in every run.

    Each item gets a pseudo-random key from its position in the pass (a multiplicative hash with a
    fixed seed, not a random draw), each class keeps its ``count`` lowest keys, and ``items()`` takes
    the classes in turn, lowest key first. So the sample does not favour the first classes of a
    split sorted by class, and two runs offered the same images pick the same ones (picture by
    picture comparable). Memory: at most ``count`` items per class, kept where they were offered."""

    def __init__(self, count: int, seed: int = 0) -> None:
        self.count, self.seed = count, seed
        self._kept: dict[int, tuple[torch.Tensor, list[torch.Tensor]]] = {}  # class -> (keys, tensors)

    def add(self, positions: torch.Tensor, labels: torch.Tensor, *tensors: torch.Tensor) -> None:
        """Offer items: their positions in the pass (N,), classes (N,) and any per-item tensors (N, ...)."""
        keys = ((positions.long().cpu() + self.seed) * 2654435761) % 2**32  # Knuth's multiplicative hash
        labels = labels.cpu()
        for c in labels.unique().tolist():
            mask = labels == c
            new = [t[mask.to(t.device)].detach() for t in (labels, *tensors)]
            old_keys, old = self._kept.get(c, (keys[:0], None))
            all_keys = torch.cat([old_keys, keys[mask]])
            joined = new if old is None else [torch.cat([o, n]) for o, n in zip(old, new)]
            order = all_keys.argsort()[: self.count]
            self._kept[c] = (all_keys[order], [t[order.to(t.device)] for t in joined])

    def items(self) -> list[torch.Tensor] | None:
        """(labels, *tensors), classes in turn, on the CPU; None when nothing was offered."""
        if not self._kept:
            return None
        per_class = [self._kept[c][1] for c in sorted(self._kept)]
        picks = [(t, i) for i in range(self.count) for t in per_class if i < len(t[0])][: self.count]
        return [torch.stack([t[k][i] for t, i in picks]).cpu() for k in range(len(per_class[0]))]


def confusion_matrix_figure(cm: torch.Tensor, class_names: Sequence[str]):
    """Row-normalised (each true class sums to 1, on a fixed 0-1 colour scale, so runs compare by
    colour), with the counts written in the cells up to 20 classes."""
    n = len(class_names)
    share = cm.double() / cm.sum(1, keepdim=True).clamp_min(1)
    fig, ax = plt.subplots(figsize=(1.5 + 0.45 * n, 1.0 + 0.45 * n), dpi=100)
    shown = ax.imshow(share.numpy(), cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    ax.set_xticks(range(n), class_names, rotation=90, fontsize=7)
    ax.set_yticks(range(n), class_names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 20:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=6,
                        color="white" if share[i, j] > 0.5 else "black")
    fig.tight_layout()
    return fig


def per_class_accuracy_figure(cm: torch.Tensor, class_names: Sequence[str]):
    """One bar per class (in class order, so runs compare bar by bar), with the overall accuracy as a line."""
    acc = per_class_accuracy(cm).nan_to_num(0.0)
    n = len(class_names)
    fig, ax = plt.subplots(figsize=(6, 1.0 + 0.22 * n), dpi=100)
    ax.barh(range(n), acc.numpy(), color="tab:blue")
    ax.axvline(float(cm.diag().sum() / cm.sum().clamp_min(1)), color="black", linestyle="--", label="overall")
    ax.set_yticks(range(n), class_names, fontsize=7)
    ax.invert_yaxis()  # first class on top, as in the confusion matrix
    ax.set_xlim(0, 1)
    ax.set_xlabel("accuracy (recall) of the true class")
    ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    return fig


def misclassified_grid(images: torch.Tensor, labels: torch.Tensor, preds: torch.Tensor,
                       class_names: Sequence[str], mean: Sequence[float], std: Sequence[float], cols: int = 8):
    """Normalised images back to pixels, in one picture (one axes: fast to draw), each titled
    ``true -> predicted``."""
    mean_t = torch.tensor(mean).view(1, -1, 1, 1)
    std_t = torch.tensor(std).view(1, -1, 1, 1)
    pixels = (images * std_t + mean_t).clamp(0, 1)  # (N, C, H, W)
    n, channels, height, width = pixels.shape
    cols = min(cols, n)
    rows = (n + cols - 1) // cols
    band, gap = height // 2, max(1, width // 8)  # room for the two-line title above each tile, and between tiles
    canvas = torch.ones(channels, rows * (height + band), cols * (width + gap))
    fig, ax = plt.subplots(figsize=(cols * 1.3, rows * 1.5), dpi=100)
    for k in range(n):
        top, left = (k // cols) * (height + band) + band, (k % cols) * (width + gap)
        canvas[:, top:top + height, left:left + width] = pixels[k]
        ax.text(left + width / 2, top - 1, f"{class_names[labels[k]]} ->\n{class_names[preds[k]]}",
                ha="center", va="bottom", fontsize=6)
    picture = canvas.permute(1, 2, 0).squeeze(-1).numpy()
    ax.imshow(picture, cmap="gray" if picture.ndim == 2 else None, vmin=0, vmax=1)
    ax.axis("off")
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
