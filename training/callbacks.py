"""Callbacks every run uses: throughput, the non-finite-loss guard, and the run report (layout,
hparams, model card and graph, figures) that makes runs comparable in TensorBoard."""
from __future__ import annotations

import time

import lightning as L
import torch

from .reporting import (StratifiedSample, confusion_matrix, confusion_matrix_figure, misclassified_grid,
                        per_class_accuracy_figure)
from .tensorboard_log import add_graph, add_layout, end_session, scalars_layout, tensorboard_of, write_hparams


class ThroughputMonitor(L.Callback):
    """Logs ``train/epoch_seconds`` and ``train/images_per_sec`` once per training epoch;
    ``images_per_sec`` is the current epoch's rate so far (the progress bar shows it)."""

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._start, self._images, self._world = time.perf_counter(), 0, trainer.world_size

    @property
    def images_per_sec(self) -> float | None:
        start = getattr(self, "_start", None)
        if start is None or not self._images:
            return None
        return self._images * self._world / max(time.perf_counter() - start, 1e-9)

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
    """What makes runs comparable in TensorBoard (docs/tensorboard.md), on the first process only.

    At fit start: the custom-scalars layout (the task's ``CHARTS``, learning rate, throughput, budget),
    the HParams session (``hparams``; ``metrics`` are the scalar tags whose last values the HParams
    table shows) and the text card ``model/complexity`` (``complexity_table``: markdown, from
    ``model_card.model_card``). At train start: the model graph (``graph``). With ``figures``
    (classifiers), at fit end on the validation split and at test end on the test split: the
    row-normalised confusion matrix, per-class accuracy and up to ``max_images`` misclassified
    images, stratified over the true classes (``reporting.StratifiedSample``)."""

    def __init__(self, hparams: dict | None = None, complexity_table: str = "", max_images: int = 32,
                 figures: bool = True, graph: bool = True,
                 metrics: tuple[str, ...] = ("val/acc_best", "val/acc", "test/acc", "val/loss",
                                             "train/images_per_sec")) -> None:
        self.hparams, self.complexity_table = dict(hparams or {}), complexity_table
        self.max_images, self.figures, self.graph, self.metrics = max_images, figures, graph, tuple(metrics)
        self._session_end = None

    @staticmethod
    def _writer(trainer):
        return tensorboard_of(trainer) if trainer.is_global_zero else None

    def on_fit_start(self, trainer, pl_module) -> None:
        tb = self._writer(trainer)
        if tb is None:
            return
        add_layout(tb, scalars_layout(getattr(pl_module, "CHARTS", {}), budget=bool(self.hparams.get("budget"))))
        # every run has a budget column, so a multirun's table sorts by it whether or not a run had one
        self._session_end = write_hparams(tb, {"budget": "none", **self.hparams}, self.metrics)
        if self.complexity_table:
            tb.add_text("model/complexity", self.complexity_table, 0)

    def on_train_start(self, trainer, pl_module) -> None:
        tb, info = self._writer(trainer), getattr(pl_module, "data_info", {})
        if tb is not None and self.graph and info.get("in_chans") and info.get("image_size"):
            add_graph(tb, pl_module.net, (info["in_chans"], *info["image_size"]), pl_module.device)

    def _figures(self, trainer, pl_module, loader, split: str) -> None:
        tb = self._writer(trainer)
        if tb is None:
            return
        dm = trainer.datamodule
        preds, targets, mistakes, seen = [], [], StratifiedSample(self.max_images), 0
        was_training = pl_module.training
        pl_module.eval()
        with torch.no_grad():
            for x, y in loader:
                x, y = x.to(pl_module.device), y.to(pl_module.device)
                p = pl_module.logits(x).argmax(1)  # as validation and test scored them
                preds.append(p.cpu())
                targets.append(y.cpu())
                miss = (p != y).nonzero().squeeze(1)
                if len(miss):
                    mistakes.add(miss.cpu() + seen, y[miss], x[miss].float(), p[miss])
                seen += len(y)
        pl_module.train(was_training)
        cm = confusion_matrix(torch.cat(preds), torch.cat(targets), dm.num_classes)
        step = trainer.global_step
        tb.add_figure(f"{split}/confusion_matrix", confusion_matrix_figure(cm, dm.class_names), step)
        tb.add_figure(f"{split}/per_class_accuracy", per_class_accuracy_figure(cm, dm.class_names), step)
        picked = mistakes.items()
        if picked is not None:
            labels, images, predicted = picked
            tb.add_figure(f"{split}/misclassified", misclassified_grid(
                images, labels, predicted, dm.class_names, dm.mean, dm.std), step)

    def on_fit_end(self, trainer, pl_module) -> None:
        tb = self._writer(trainer)
        if tb is None or trainer.datamodule is None:
            return
        if self.figures:
            self._figures(trainer, pl_module, trainer.datamodule.val_dataloader(), "val")
        if self._session_end is not None:
            end_session(tb, self._session_end)

    def on_test_end(self, trainer, pl_module) -> None:
        if self.figures and trainer.datamodule is not None:
            self._figures(trainer, pl_module, trainer.datamodule.test_dataloader(), "test")
