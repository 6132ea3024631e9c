"""The LightningModule: any ``nn.Module`` classifier + an optimizer and scheduler given as partials."""
from __future__ import annotations

import math
import random
from typing import Any, Callable

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MaxMetric, MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from convzoo.models.layers.whitening import PatchWhitening, fit_whitening

NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


def param_groups(net: nn.Module, weight_decay: float, exclude_norm_bias: bool, lr: float | None = None,
                 norm_bias_lr_scale: float = 1.0) -> list[dict]:
    """Two groups: decayed weights, and norm parameters and biases with no weight decay
    (excluding them is a common CIFAR trick, e.g. in the "bag of tricks" of He et al. 2019).
    With ``norm_bias_lr_scale != 1`` the norms' shifts get their own group at that multiple of
    ``lr`` (airbench trains BatchNorm biases 64x faster)."""
    if norm_bias_lr_scale != 1.0 and lr is None:
        raise ValueError("norm_bias_lr_scale needs the optimizer's lr (optimizer.lr)")
    decay, no_decay, norm_bias = [], [], []
    for module in net.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            if norm_bias_lr_scale != 1.0 and isinstance(module, NORM_TYPES) and name == "bias":
                norm_bias.append(p)
            elif exclude_norm_bias and (isinstance(module, NORM_TYPES) or name == "bias"):
                no_decay.append(p)
            else:
                decay.append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    if norm_bias:
        groups.append({"params": norm_bias, "weight_decay": 0.0, "lr": lr * norm_bias_lr_scale})
    return groups


class ClassificationModule(L.LightningModule):
    """Cross-entropy training of ``net`` with accuracy metrics under the ``train/``, ``val/``,
    ``test/`` keys (``val/acc_best`` tracks the best epoch so far)."""

    def __init__(
        self,
        net: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        *,
        num_classes: int,
        label_smoothing: float = 0.0,
        exclude_norm_bias_from_wd: bool = True,
        channels_last: bool = False,
        compile: bool = False,
        tta_flip: bool = False,
        whitening_images: int = 5000,
        norm_bias_lr_scale: float = 1.0,
        model_cfg: dict | None = None,
        data_info: dict | None = None,
    ) -> None:
        super().__init__()
        if not norm_bias_lr_scale > 0:
            raise ValueError(f"norm_bias_lr_scale should be > 0, got {norm_bias_lr_scale}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing should be in [0, 1), got {label_smoothing}")
        # The net is saved by its config (``model_cfg``, plain data) so a checkpoint can be read
        # back without unpickling code; ``data_info`` holds the class names and normalisation.
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"])
        self.net = net
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.channels_last = channels_last
        self.whitening_images = whitening_images
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores (N, num_classes); in eval mode with ``tta_flip``, averaged with the
        mirrored image's (test-time augmentation, as airbench does)."""
        out = self(x)
        if self.hparams.tta_flip and not self.training:
            out = (out + self(x.flip(3))) / 2
        return out

    def _step(self, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, y = batch
        logits = self.logits(x)  # (N, num_classes)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=self.hparams.label_smoothing)
        return loss, logits.argmax(1), y

    def on_fit_start(self) -> None:
        # Data-dependent layers (patch whitening) are fitted once, before the first step, from
        # training images that are the same on every rank; a resumed run has them in its
        # checkpoint (restored before this hook) and keeps them.
        pending = [m for m in self.net.modules() if isinstance(m, PatchWhitening) and not bool(m.fitted)]
        if not pending:
            return
        dm = self.trainer.datamodule
        if dm is None or not callable(getattr(dm, "sample_train_images", None)):
            raise ValueError("the model has a patch-whitening layer, which is fitted from the training "
                             "images: train it with one of the data modules of data/ (they provide "
                             "sample_train_images)")
        images = dm.sample_train_images(self.whitening_images).to(self.device)
        fit_whitening(self.net, images)

    def on_train_epoch_start(self) -> None:
        # Loaders that shuffle per epoch (InMemoryLoader) get the trainer's epoch, which after a
        # resume is not the number of passes this process has made.
        loader = self.trainer.train_dataloader
        if callable(getattr(loader, "set_epoch", None)):
            loader.set_epoch(self.current_epoch)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        loss, preds, y = self._step(batch)
        self.train_acc(preds, y)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True)
        self.log("train/acc", self.train_acc, on_step=True, on_epoch=True, prog_bar=True)
        return loss

    def on_validation_epoch_start(self) -> None:
        self.val_loss.reset()
        self.val_acc.reset()

    def validation_step(self, batch, batch_idx: int) -> None:
        loss, preds, y = self._step(batch)
        self.val_loss(loss, weight=len(y))
        self.val_acc(preds, y)

    def on_validation_epoch_end(self) -> None:
        acc = self.val_acc.compute()
        if not self.trainer.sanity_checking:
            self.val_acc_best(acc)
        self.log("val/loss", self.val_loss.compute(), sync_dist=True)
        self.log("val/acc", acc, prog_bar=True, sync_dist=True)
        best = self.val_acc_best.compute() if self.val_acc_best.update_count else acc
        self.log("val/acc_best", best, prog_bar=True, sync_dist=True)

    def test_step(self, batch, batch_idx: int) -> None:
        loss, preds, y = self._step(batch)
        self.test_loss(loss, weight=len(y))
        self.test_acc(preds, y)
        self.log("test/loss", self.test_loss, on_epoch=True)
        self.log("test/acc", self.test_acc, on_epoch=True)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # RNG states, so a resumed run draws the same dropout masks and augmentations as an
        # uninterrupted one (plain tensors and ints: loadable with weights_only=True).
        checkpoint["rng_states"] = {"torch": torch.get_rng_state(), "python": random.getstate(),
                                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        states = checkpoint.get("rng_states")
        if states:
            torch.set_rng_state(states["torch"])
            random.setstate(states["python"])
            if states["cuda"] and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(states["cuda"])

    def configure_optimizers(self):
        # weight_decay is the optimizer config's (optimizer.weight_decay=...); it is applied per group.
        keywords = getattr(self.optimizer_factory, "keywords", {})
        groups = param_groups(self.net, keywords.get("weight_decay", 0.0), self.hparams.exclude_norm_bias_from_wd,
                              keywords.get("lr"), self.hparams.norm_bias_lr_scale)
        optimizer = self.optimizer_factory(groups)
        if self.scheduler_factory is None:
            return optimizer
        total = self.trainer.estimated_stepping_batches
        if not math.isfinite(total):
            raise ValueError("the learning-rate schedule needs a bounded run: set trainer.max_epochs "
                             "or trainer.max_steps")
        per_epoch = max(1, math.ceil(self.trainer.num_training_batches / self.trainer.accumulate_grad_batches))
        total = int(total)
        scheduler = self.scheduler_factory(optimizer, total_steps=total, steps_per_epoch=per_epoch)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
