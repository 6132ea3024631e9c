"""Callbacks every run uses: throughput, the non-finite-loss guard, and the run report (hparams,
complexity, figures) that makes runs comparable in TensorBoard."""
from __future__ import annotations

import time

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger

from .reporting import confusion_matrix, confusion_matrix_figure, misclassified_grid


def _tensorboard(trainer: L.Trainer):
    return next((lg.experiment for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)


class ThroughputMonitor(L.Callback):
    """Logs ``train/epoch_seconds`` and ``train/images_per_sec`` once per training epoch."""

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._start, self._images = time.perf_counter(), 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._images += len(batch[1])

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if getattr(self, "_start", None) is None:  # resumed at an epoch's end: nothing timed
            return
        seconds = time.perf_counter() - self._start
        pl_module.log("train/epoch_seconds", seconds)
        pl_module.log("train/images_per_sec", self._images * trainer.world_size / seconds, prog_bar=True)


class NonFiniteLossGuard(L.Callback):
    """Stops training at the first NaN or infinite loss, naming the step and the value; the
    checkpoints written so far stay as they are (``skip=True`` only warns and goes on)."""

    def __init__(self, skip: bool = False) -> None:
        self.skip = skip

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        bad = loss is not None and not bool(torch.isfinite(loss))
        # Every rank must take the same decision, or the others wait forever in DDP.
        if trainer.strategy.reduce_boolean_decision(bad, all=False):
            loss = loss if bad else torch.tensor(float("nan"))
            message = (f"non-finite training loss {loss.item()} at global step {trainer.global_step} "
                       f"(epoch {trainer.current_epoch}, batch {batch_idx})")
            if self.skip:
                pl_module.print(f"warning: {message}; continuing (callbacks.nan_guard.skip=true)")
                return
            raise FloatingPointError(message + "; the last good checkpoint is kept. Lower the "
                                     "learning rate or set callbacks.nan_guard.skip=true")


class RunReport(L.Callback):
    """At fit start: the model's complexity table as text. At fit end: the run's hyperparameters with
    its final ``metrics``, for TensorBoard's HParams tab. With ``figures`` (classifiers), at fit end
    (on the validation split) and test end: a confusion-matrix figure and a grid of misclassified images."""

    def __init__(self, hparams: dict | None = None, complexity_table: str = "", max_images: int = 32,
                 figures: bool = True,
                 metrics: tuple[str, ...] = ("val/acc_best", "val/acc", "val/loss", "train/images_per_sec")) -> None:
        self.hparams, self.complexity_table, self.max_images = dict(hparams or {}), complexity_table, max_images
        self.figures, self.metrics = figures, tuple(metrics)

    def on_fit_start(self, trainer, pl_module) -> None:
        tb = _tensorboard(trainer)
        if tb is not None and trainer.is_global_zero and self.complexity_table:
            tb.add_text("model/complexity", f"```\n{self.complexity_table}\n```", 0)

    def _figures(self, trainer, pl_module, loader, split: str) -> None:
        tb = _tensorboard(trainer)
        if tb is None or not trainer.is_global_zero:
            return
        dm = trainer.datamodule
        preds, targets, wrong = [], [], []
        was_training = pl_module.training
        pl_module.eval()
        with torch.no_grad():
            for x, y in loader:
                x, y = x.to(pl_module.device), y.to(pl_module.device)
                p = pl_module.logits(x).argmax(1)  # as validation and test scored them
                preds.append(p.cpu())
                targets.append(y.cpu())
                if sum(len(w[0]) for w in wrong) < self.max_images:
                    miss = p != y
                    wrong.append((x[miss].float().cpu(), y[miss].cpu(), p[miss].cpu()))
        pl_module.train(was_training)
        cm = confusion_matrix(torch.cat(preds), torch.cat(targets), dm.num_classes)
        step = trainer.global_step
        tb.add_figure(f"{split}/confusion_matrix", confusion_matrix_figure(cm, dm.class_names), step)
        if wrong:
            images, labels, predicted = (torch.cat(t)[: self.max_images] for t in zip(*wrong))
            if len(images):
                tb.add_figure(f"{split}/misclassified", misclassified_grid(
                    images, labels, predicted, dm.class_names, dm.mean, dm.std), step)

    def on_fit_end(self, trainer, pl_module) -> None:
        if trainer.fast_dev_run or trainer.datamodule is None:
            return
        if self.figures:
            self._figures(trainer, pl_module, trainer.datamodule.val_dataloader(), "val")
        metrics = {f"hparams/{k.replace('/', '_')}": float(v) for k, v in trainer.callback_metrics.items()
                   if k in self.metrics}
        for lg in trainer.loggers:
            if isinstance(lg, TensorBoardLogger) and trainer.is_global_zero:
                lg.log_hyperparams(self.hparams, metrics)

    def on_test_end(self, trainer, pl_module) -> None:
        if self.figures and trainer.datamodule is not None and not trainer.fast_dev_run:
            self._figures(trainer, pl_module, trainer.datamodule.test_dataloader(), "test")
