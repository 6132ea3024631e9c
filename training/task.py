"""What every task's LightningModule shares: the net, the optimizer and schedule built from config
partials, per-epoch reshuffling, RNG state in checkpoints, and data-fitted layers.

A task (``task=classify``, ``task=autoencode``) is a ``TaskModule`` subclass chosen by the config
group ``task``; ``train(cfg)`` has one code path for all of them. Every task is built as
``cls(net, optimizer, scheduler, *, model_cfg, data_info, **options)`` and saves its arguments but
the net and the factories as hyperparameters: ``model_cfg`` (plain data) rebuilds the net from a
checkpoint without unpickling code, ``data_info`` holds what the data told the run (classes,
channels, image size, normalisation).
"""
from __future__ import annotations

import math
import random
import warnings
from typing import Any, Callable

import lightning as L
import torch
from torch import nn

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


class TaskModule(L.LightningModule):
    """Base of every task. Subclasses set ``NET_ARGS`` (the facts of the data the net is built with,
    e.g. ``("num_classes", "in_chans")``) and define the steps; the task's config
    (``configs/task/<name>.yaml``) says which metric its checkpoints rank by."""

    NET_ARGS: tuple[str, ...] = ("in_chans",)
    # TensorBoard's custom-scalars charts of the task (title -> tags drawn together; RunReport adds
    # learning rate, throughput and budget).
    CHARTS: dict[str, tuple[str, ...]] = {"loss": ("train/loss_epoch", "val/loss")}

    def __init__(self, net: nn.Module, optimizer: Callable[..., torch.optim.Optimizer],
                 scheduler: Callable[..., Any] | None = None, *,
                 data_info: dict | None = None, exclude_norm_bias_from_wd: bool = True,
                 norm_bias_lr_scale: float = 1.0, whitening_images: int = 5000) -> None:
        super().__init__()
        if not norm_bias_lr_scale > 0:
            raise ValueError(f"norm_bias_lr_scale should be > 0, got {norm_bias_lr_scale}")
        self.net = net
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.data_info = dict(data_info or {})
        self.whitening_images = whitening_images
        self.exclude_norm_bias_from_wd, self.norm_bias_lr_scale = exclude_norm_bias_from_wd, norm_bias_lr_scale

    @classmethod
    def check_data(cls, net: nn.Module, datamodule) -> None:
        """Refuse data the net cannot take, before the first step (nothing to check by default)."""

    def hparams_summary(self) -> dict:
        """Task-specific facts for the HParams tab and metrics.json."""
        return {}

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
        fit_whitening(self.net, dm.sample_train_images(self.whitening_images).to(self.device))

    def on_train_epoch_start(self) -> None:
        # Loaders that shuffle per epoch (InMemoryLoader) get the trainer's epoch, which after a
        # resume is not the number of passes this process has made.
        loader = self.trainer.train_dataloader
        if callable(getattr(loader, "set_epoch", None)):
            loader.set_epoch(self.current_epoch)

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
        groups = param_groups(self.net, keywords.get("weight_decay", 0.0), self.exclude_norm_bias_from_wd,
                              keywords.get("lr"), self.norm_bias_lr_scale)
        optimizer = self.optimizer_factory(groups)
        if self.scheduler_factory is None:
            return optimizer
        total = self.trainer.estimated_stepping_batches
        if not math.isfinite(total):
            raise ValueError("the learning-rate schedule needs a bounded run: set trainer.max_epochs "
                             "or trainer.max_steps")
        scheduler = self.scheduler_factory(optimizer, total_steps=int(total), steps_per_epoch=self._steps_per_epoch())
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def _steps_per_epoch(self) -> int:
        if not math.isfinite(self.trainer.num_training_batches):  # not counted yet (max_epochs=-1)
            self.trainer.fit_loop.setup_data()
        return max(1, math.ceil(self.trainer.num_training_batches / self.trainer.accumulate_grad_batches))

    def rebuild_schedules(self, total_steps: int, step: int) -> None:
        """Redefine the learning-rate schedule over ``total_steps`` and move it to ``step`` (a budgeted
        run re-plans its length as it measures its speed: ``training/budget_planner.py``). Any
        schedule works, since it is built again by its own factory; the lr jumps only by the change
        of the plan, and the schedule still ends at the run's last step."""
        if self.scheduler_factory is None:
            return
        for config in self.trainer.lr_scheduler_configs:
            optimizer = config.scheduler.optimizer
            with warnings.catch_warnings():  # construction and the catch-up step() warn about the order
                warnings.simplefilter("ignore")
                scheduler = self.scheduler_factory(optimizer, total_steps=int(total_steps),
                                                   steps_per_epoch=self._steps_per_epoch())
                if step > 0:
                    scheduler.last_epoch = step - 1
                    scheduler.step()  # the lr of ``step``, as if the schedule had always had this length
            config.scheduler = scheduler
