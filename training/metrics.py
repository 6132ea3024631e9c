"""Predictions and the accuracy report of an evaluation: accuracy, loss, per-class accuracy and the
confusion matrix of a classifier over a loader."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .reporting import confusion_matrix, per_class_accuracy


@torch.inference_mode()
def predict(net: nn.Module, loader, device: torch.device, tta_flip: bool = False
            ) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(predictions, targets, summed cross-entropy) over a loader, in fp32; ``tta_flip`` averages
    the logits of each image and its mirror image, as training's validation did."""
    preds, targets, loss = [], [], 0.0
    for x, y in loader:
        x = x.to(device, torch.float32)
        logits = net(x).float()  # (N, num_classes)
        if tta_flip:
            logits = (logits + net(x.flip(3)).float()) / 2
        y = y.to(device)
        loss += F.cross_entropy(logits, y, reduction="sum").item()
        preds.append(logits.argmax(1).cpu())
        targets.append(y.cpu())
    return torch.cat(preds), torch.cat(targets), loss


def accuracy_report(preds: torch.Tensor, targets: torch.Tensor, loss_sum: float, class_names) -> dict:
    """Accuracy, mean loss, per-class accuracy (None for a class with no samples) and the confusion matrix."""
    cm = confusion_matrix(preds, targets, len(class_names))
    per_class = per_class_accuracy(cm).tolist()
    return {
        "num_samples": int(targets.numel()),
        "acc": float((preds == targets).double().mean()) if targets.numel() else float("nan"),
        "loss": loss_sum / max(1, targets.numel()),
        "per_class_acc": {str(n): (None if a != a else a) for n, a in zip(class_names, per_class)},
        "confusion_matrix": cm.tolist(),
    }
