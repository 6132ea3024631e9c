"""Callbacks that make runs comparable in TensorBoard: throughput, hparams, complexity, figures."""
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
    """At fit start: the model's complexity table as text. At fit end (on the validation split)
    and test end: a confusion-matrix figure and a grid of misclassified images; at fit end also
    the run's hyperparameters with its final metrics, for TensorBoard's HParams tab."""

    def __init__(self, hparams: dict | None = None, complexity_table: str = "", max_images: int = 32) -> None:
        self.hparams, self.complexity_table, self.max_images = dict(hparams or {}), complexity_table, max_images

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
        self._figures(trainer, pl_module, trainer.datamodule.val_dataloader(), "val")
        metrics = {f"hparams/{k.replace('/', '_')}": float(v) for k, v in trainer.callback_metrics.items()
                   if k in ("val/acc_best", "val/acc", "val/loss", "train/images_per_sec")}
        for lg in trainer.loggers:
            if isinstance(lg, TensorBoardLogger) and trainer.is_global_zero:
                lg.log_hyperparams(self.hparams, metrics)

    def on_test_end(self, trainer, pl_module) -> None:
        if trainer.datamodule is not None and not trainer.fast_dev_run:
            self._figures(trainer, pl_module, trainer.datamodule.test_dataloader(), "test")


class HighwayGateMonitor(L.Callback):
    """Logs how open each highway layer's gate is: ``gates/stage<i>.block<j>`` = the mean of
    ``T(x)`` over the validation batches (each forward's batch mean, averaged), one scalar per
    ``HighwayBlock`` at each validation epoch end
    (``y = H(x) T(x) + x (1 - T(x))``: 0 carries the input, 1 transforms it; Srivastava et al.
    2015, Fig. 2 show the same per-layer picture).

    ``gate_bias``: where the experiment sets the gate bias (``highway_gate_bias``), the value the
    blocks must have been built with; a mismatch fails at fit start rather than producing runs
    that differ only in name.
    """

    def __init__(self, gate_bias: float | None = None) -> None:
        self.gate_bias = gate_bias
        self._blocks: dict[str, torch.nn.Module] = {}
        self._sums: dict[str, float] = {}
        self._counts: dict[str, int] = {}
        self._handles: list = []
        self._collecting = False  # validation epochs only, not the sanity check

    @staticmethod
    def tag(module_name: str) -> str:
        """``stages.1.0`` (a Net's stage 1, block 0) -> ``gates/stage1.block0``; other paths as they are."""
        parts = module_name.split(".")
        if len(parts) == 3 and parts[0] == "stages" and parts[1].isdigit() and parts[2].isdigit():
            return f"gates/stage{parts[1]}.block{parts[2]}"
        return f"gates/{module_name}"

    def setup(self, trainer, pl_module, stage: str) -> None:
        from convzoo.models.layers.highway import HighwayBlock

        net = getattr(pl_module, "net", pl_module)
        self._blocks = {self.tag(name): m for name, m in net.named_modules() if isinstance(m, HighwayBlock)}
        if self.gate_bias is not None:
            wrong = {t: m.gate_bias for t, m in self._blocks.items() if m.gate_bias != float(self.gate_bias)}
            if wrong:
                raise ValueError(
                    f"highway_gate_bias={self.gate_bias} but {len(wrong)} highway blocks were built with other "
                    f"gate biases ({', '.join(f'{t}: {b}' for t, b in list(wrong.items())[:3])}); the model "
                    f"config must read it, e.g. gate_bias: ${{oc.select:highway_gate_bias,-2.0}}")
        for h in self._handles:
            h.remove()
        self._handles = [m.register_forward_hook(self._hook(t)) for t, m in self._blocks.items()]

    def _hook(self, tag: str):
        def record(module, args, output) -> None:
            # Validation only (flip test-time augmentation calls each block twice per batch: both count).
            if not module.training and self._collecting:
                self._sums[tag] = self._sums.get(tag, 0.0) + module.last_gate_mean
                self._counts[tag] = self._counts.get(tag, 0) + 1
        return record

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self._sums, self._counts = {}, {}
        self._collecting = not trainer.sanity_checking

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        self._collecting = False
        for tag in self._blocks:
            if self._counts.get(tag):
                pl_module.log(tag, self._sums[tag] / self._counts[tag], sync_dist=True)

    def teardown(self, trainer, pl_module, stage: str) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
