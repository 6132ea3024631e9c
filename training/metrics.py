"""Predictions and the accuracy report of an evaluation: accuracy, loss, per-class accuracy and the
confusion matrix of a classifier over a loader."""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .reporting import confusion_matrix, per_class_accuracy


def tta_logits(forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, flip: bool = False,
               translate: int = 0) -> torch.Tensor:
    """Logits with test-time augmentation, as airbench evaluates (Jordan 2024). ``flip``: the mean of
    the logits of each image and its mirror image. ``translate=t`` (> 0): half of that, plus a
    quarter each for the views shifted by t pixels up-left and down-right (reflect padding), flipped
    too when ``flip``: 2 forward passes per image with flip, 6 with both."""
    def views(images: torch.Tensor) -> torch.Tensor:
        out = forward(images).float()  # (N, num_classes)
        return (out + forward(images.flip(3)).float()) / 2 if flip else out

    logits = views(x)
    if translate > 0:
        t, (height, width) = translate, x.shape[-2:]
        padded = F.pad(x, (t, t, t, t), mode="reflect")
        shifted = (views(padded[..., :height, :width]) + views(padded[..., 2 * t:, 2 * t:])) / 2
        logits = (logits + shifted) / 2
    return logits


def tta_views(flip: bool = False, translate: int = 0) -> int:
    """Forward passes per image of ``tta_logits`` with these settings (a validation's cost, in passes)."""
    return (2 if flip else 1) * (3 if translate > 0 else 1)


def final_translate(hparams) -> int:
    """The translation a run's final evaluations use: ``final_tta_translate`` when set, else
    ``tta_translate`` (the larger of the two; a checkpoint is evaluated as its run ended)."""
    return max(int(hparams.get("tta_translate", 0) or 0), int(hparams.get("final_tta_translate", 0) or 0))


def is_last_validation(trainer) -> bool:
    """Whether the validation starting now ends training, so the final evaluations' views apply: the
    budget planner or a step cap stopped the run at this step, or it is the last epoch's (an early stop
    decided after a validation is not foreseen). The module and the budget planner both ask here."""
    if trainer.sanity_checking:
        return False
    if trainer.should_stop or 0 < trainer.max_steps <= trainer.global_step:
        return True
    max_epochs = trainer.max_epochs
    return (max_epochs is not None and max_epochs > 0 and trainer.current_epoch + 1 >= max_epochs
            and trainer.fit_loop.epoch_loop.batch_progress.is_last_batch)


def final_eval_cost(module_cfg) -> float:
    """A final evaluation's passes over a validation's (``module_cfg``: the module's settings): 3 when
    ``final_tta_translate`` adds the translated views to flip's, 1 when the two evaluate alike."""
    flip = bool(module_cfg.get("tta_flip", False))
    every = int(module_cfg.get("tta_translate", 0) or 0)
    return tta_views(flip, final_translate(module_cfg)) / tta_views(flip, every)


@torch.inference_mode()
def predict_logits(net: nn.Module, loader, device: torch.device, tta_flip: bool = False, tta_translate: int = 0
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, targets) over a loader, on the CPU, in fp32, with the test-time augmentation
    training's validation used (``tta_logits``)."""
    logits, targets = [], []
    for x, y in loader:
        x = x.to(device, torch.float32)
        logits.append(tta_logits(net, x, tta_flip, tta_translate).cpu())  # (N, num_classes)
        targets.append(y.cpu())
    return torch.cat(logits), torch.cat(targets)


def predict(net: nn.Module, loader, device: torch.device, tta_flip: bool = False, tta_translate: int = 0
            ) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(predictions, targets, summed cross-entropy) over a loader, as ``predict_logits``."""
    logits, targets = predict_logits(net, loader, device, tta_flip, tta_translate)
    loss = F.cross_entropy(logits, targets, reduction="sum").item()
    return logits.argmax(1), targets, loss


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
