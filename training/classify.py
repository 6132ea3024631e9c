"""``task=classify``: cross-entropy training of any classifier in the zoo."""
from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MaxMetric, MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from .metrics import final_translate, is_last_validation, tta_logits
from .task import TaskModule


class ClassificationModule(TaskModule):
    """Cross-entropy training of ``net`` with accuracy metrics under the ``train/``, ``val/``,
    ``test/`` keys (``val/acc_best`` tracks the best epoch so far)."""

    NET_ARGS = ("num_classes", "in_chans")
    CHARTS = {"loss": ("train/loss_epoch", "val/loss", "test/loss"),
              "accuracy": ("train/acc_epoch", "val/acc", "val/acc_best", "test/acc")}

    def __init__(
        self,
        net: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        *,
        num_classes: int | None = None,
        label_smoothing: float = 0.0,
        exclude_norm_bias_from_wd: bool = True,
        channels_last: bool = False,
        compile: bool = False,
        tta_flip: bool = False,
        tta_translate: int = 0,
        final_tta_translate: int | None = None,
        whitening_images: int = 5000,
        norm_bias_lr_scale: float = 1.0,
        model_cfg: dict | None = None,
        data_info: dict | None = None,
    ) -> None:
        super().__init__(net, optimizer, scheduler, data_info=data_info,
                         exclude_norm_bias_from_wd=exclude_norm_bias_from_wd,
                         norm_bias_lr_scale=norm_bias_lr_scale, whitening_images=whitening_images)
        if num_classes is None:
            num_classes = self.data_info.get("num_classes")
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes should be an integer >= 1 (or given by data_info), got {num_classes!r}")
        for name, value in (("tta_translate", tta_translate), ("final_tta_translate", final_tta_translate)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ValueError(f"{name} should be an integer >= 0 (pixels), got {value!r}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing should be in [0, 1), got {label_smoothing}")
        # The net is saved by its config (``model_cfg``, plain data) so a checkpoint can be read
        # back without unpickling code; ``data_info`` holds the class names and normalisation.
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"])
        self.hparams.num_classes = num_classes
        self.channels_last = channels_last
        if channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        if compile:
            self.net.compile()  # in place: the state_dict keeps its keys, so checkpoints stay portable
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_loss, self.test_loss = MeanMetric(), MeanMetric()
        self.val_acc_best = MaxMetric()
        self.val_acc_best.persistent(True)  # kept in checkpoints, so a resumed run remembers its best
        self._final_eval = False  # the last validation or the test: final_tta_translate applies

    def hparams_summary(self) -> dict:
        return {"label_smoothing": self.hparams.label_smoothing, "tta_flip": self.hparams.tta_flip,
                "final_tta_translate": final_translate(self.hparams)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores (N, num_classes); in eval mode with the test-time augmentation of
        ``tta_flip`` / ``tta_translate`` (``metrics.tta_logits``, as airbench evaluates), and in the
        final evaluations with ``final_tta_translate`` when larger: airbench translates only in its
        last evaluation, where 3x the passes cost once rather than at every epoch."""
        if self.training:
            return self(x)
        translate = final_translate(self.hparams) if self._final_eval else self.hparams.tta_translate
        return tta_logits(self, x, self.hparams.tta_flip, translate)

    def _step(self, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, y = batch
        logits = self.logits(x)  # (N, num_classes)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=self.hparams.label_smoothing)
        return loss, logits.argmax(1), y

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        loss, preds, y = self._step(batch)
        self.train_acc(preds, y)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True)
        self.log("train/acc", self.train_acc, on_step=True, on_epoch=True)
        return loss

    def on_validation_epoch_start(self) -> None:
        self._final_eval = is_last_validation(self.trainer)
        self.val_loss.reset()
        self.val_acc.reset()

    def validation_step(self, batch, batch_idx: int) -> dict:
        loss, preds, y = self._step(batch)
        self.val_loss(loss, weight=len(y))
        self.val_acc(preds, y)
        return {"preds": preds}  # RunReport draws its figures from these: no second pass over the split

    def on_validation_epoch_end(self) -> None:
        acc = self.val_acc.compute()
        if not self.trainer.sanity_checking:
            self.val_acc_best(acc)
        self.log("val/loss", self.val_loss.compute(), sync_dist=True)
        self.log("val/acc", acc, prog_bar=True, sync_dist=True)
        best = self.val_acc_best.compute() if self.val_acc_best.update_count else acc
        self.log("val/acc_best", best, sync_dist=True)

    def on_test_epoch_start(self) -> None:
        self._final_eval = True

    def test_step(self, batch, batch_idx: int) -> dict:
        loss, preds, y = self._step(batch)
        self.test_loss(loss, weight=len(y))
        self.test_acc(preds, y)
        self.log("test/loss", self.test_loss, on_epoch=True)
        self.log("test/acc", self.test_acc, on_epoch=True)
        return {"preds": preds}
