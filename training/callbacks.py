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
    (classifiers: their ``validation_step`` and ``test_step`` return ``{"preds": ...}``), at fit end
    from the newest validation pass and at test end from the test pass, with no pass of their own:
    the row-normalised confusion matrix, per-class accuracy and up to ``max_images`` misclassified
    images, stratified over the true classes (``reporting.StratifiedSample``). Under DDP they show
    the first process's share of the split."""

    def __init__(self, hparams: dict | None = None, complexity_table: str = "", max_images: int = 32,
                 figures: bool = True, graph: bool = True,
                 metrics: tuple[str, ...] = ("val/acc_best", "val/acc", "test/acc", "val/loss",
                                             "train/images_per_sec")) -> None:
        self.hparams, self.complexity_table = dict(hparams or {}), complexity_table
        self.max_images, self.figures, self.graph, self.metrics = max_images, figures, graph, tuple(metrics)
        self._session_end = None
        self._pass: PredictionPass | None = None  # the pass being gathered
        self._last_val: tuple[PredictionPass, int] | None = None  # the newest validation, and its step

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

    # -- figures: gathered from the validation and test passes themselves -------------------------
    # A separate pass over the split after fitting would cost as much as a validation (with flip TTA),
    # time a budgeted run would have to hold back from training.
    def _start_pass(self, trainer) -> None:
        wanted = self.figures and trainer.is_global_zero and not trainer.sanity_checking
        self._pass = PredictionPass(self.max_images) if wanted else None

    def _add(self, outputs, batch) -> None:
        if self._pass is not None and isinstance(outputs, dict) and "preds" in outputs:
            self._pass.add(outputs["preds"], batch[0], batch[1])

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self._start_pass(trainer)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._add(outputs, batch)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if self._pass is not None and self._pass.seen:  # the newest validation is the one drawn
            self._last_val, self._pass = (self._pass, trainer.global_step), None

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self._start_pass(trainer)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._add(outputs, batch)

    def _draw(self, trainer, gathered: PredictionPass, step: int, split: str) -> None:
        tb, dm = self._writer(trainer), trainer.datamodule
        if tb is None or dm is None or not gathered.seen:
            return
        cm = confusion_matrix(torch.cat(gathered.preds), torch.cat(gathered.targets), dm.num_classes)
        tb.add_figure(f"{split}/confusion_matrix", confusion_matrix_figure(cm, dm.class_names), step)
        tb.add_figure(f"{split}/per_class_accuracy", per_class_accuracy_figure(cm, dm.class_names), step)
        picked = gathered.mistakes.items()
        if picked is not None:
            labels, images, predicted = picked
            tb.add_figure(f"{split}/misclassified", misclassified_grid(
                images, labels, predicted, dm.class_names, dm.mean, dm.std), step)

    def on_fit_end(self, trainer, pl_module) -> None:
        tb = self._writer(trainer)
        if tb is None:
            return
        if self.figures and self._last_val is not None:
            self._draw(trainer, *self._last_val, "val")
        if self._session_end is not None:
            end_session(tb, self._session_end)

    def on_test_end(self, trainer, pl_module) -> None:
        if self._pass is not None:
            self._draw(trainer, self._pass, trainer.global_step, "test")
            self._pass = None


class PredictionPass:
    """What one pass over a split predicted, kept for the figures: predictions and targets on the
    CPU (N,) and a ``StratifiedSample`` of the mistakes (image, true class, predicted class)."""

    def __init__(self, max_images: int) -> None:
        self.preds: list[torch.Tensor] = []
        self.targets: list[torch.Tensor] = []
        self.mistakes, self.seen = StratifiedSample(max_images), 0

    def add(self, preds: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> None:
        self.preds.append(preds.detach().cpu())
        self.targets.append(y.detach().cpu())
        miss = (preds != y).nonzero().squeeze(1)
        if len(miss):
            self.mistakes.add(miss.cpu() + self.seen, y[miss], x[miss].float(), preds[miss])
        self.seen += len(y)
