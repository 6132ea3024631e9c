"""``task=autoencode``: reconstruction training of an autoencoder (``convzoo.models.autoencoder``)."""
from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric
from torchvision.utils import make_grid

from .reporting import StratifiedSample
from .task import TaskModule
from .tensorboard_log import tensorboard_of


class AutoencoderModule(TaskModule):
    """MSE between reconstruction and input (both normalised); ``val/psnr`` in pixel space.

    Logs ``train/loss``, ``val/loss``, ``val/psnr`` (``test/...`` likewise) and each validation epoch
    a grid ``val/reconstructions``: ``num_images`` validation images, each beside its reconstruction,
    the same images every epoch and in every run (stratified over the classes with a fixed seed,
    ``reporting.StratifiedSample``). ``mean``/``std`` (the data's normalisation) come from ``data_info``.
    """

    NET_ARGS = ("in_chans",)
    CHARTS = {"loss": ("train/loss_epoch", "val/loss", "test/loss"), "PSNR (dB)": ("val/psnr", "test/psnr")}

    def __init__(self, net: nn.Module, optimizer: Callable[..., torch.optim.Optimizer],
                 scheduler: Callable[..., Any] | None = None, *, num_images: int = 8,
                 exclude_norm_bias_from_wd: bool = True, norm_bias_lr_scale: float = 1.0,
                 whitening_images: int = 5000, model_cfg: dict | None = None, data_info: dict | None = None) -> None:
        super().__init__(net, optimizer, scheduler, data_info=data_info,
                         exclude_norm_bias_from_wd=exclude_norm_bias_from_wd,
                         norm_bias_lr_scale=norm_bias_lr_scale, whitening_images=whitening_images)
        if self.data_info.get("mean") is None or self.data_info.get("std") is None:
            raise ValueError("an autoencoder needs the data's normalisation: data_info with mean and std")
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"])
        self.mean, self.std = list(self.data_info["mean"]), list(self.data_info["std"])
        self.val_loss, self.val_psnr = MeanMetric(), MeanMetric()
        self.test_loss, self.test_psnr = MeanMetric(), MeanMetric()
        self._shown, self._seen = StratifiedSample(num_images), 0

    @classmethod
    def check_data(cls, net: nn.Module, datamodule) -> None:
        if callable(getattr(net, "check_image_size", None)):
            net.check_image_size(datamodule.image_size)

    def hparams_summary(self) -> dict:
        kind = getattr(self.net, "decoder_kind", None)
        return {} if kind is None else {"decoder": kind}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def to_pixels(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images -> [0, 1] pixels (clamped)."""
        mean = torch.tensor(self.mean, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, -1, 1, 1)
        return (x.float() * std + mean).clamp(0, 1)

    def psnr(self, recon: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Per-image PSNR in dB, ``10 log10(1 / MSE)`` on [0, 1] pixels: (N,)."""
        mse = (self.to_pixels(recon) - self.to_pixels(x)).square().mean((1, 2, 3))
        return 10 * torch.log10(1 / mse.clamp_min(1e-10))

    def _step(self, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, _ = batch  # labels unused
        recon = self(x)
        return F.mse_loss(recon.float(), x.float()), recon, x

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        loss, _, _ = self._step(batch)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True)
        return loss

    def on_validation_epoch_start(self) -> None:
        self.val_loss.reset()
        self.val_psnr.reset()
        self._shown, self._seen = StratifiedSample(self.hparams.num_images), 0

    def validation_step(self, batch, batch_idx: int) -> None:
        loss, recon, x = self._step(batch)
        self.val_loss(loss, weight=len(x))
        self.val_psnr(self.psnr(recon, x))
        positions = torch.arange(self._seen, self._seen + len(x))  # the split is not shuffled
        self._shown.add(positions, batch[1], x, recon)
        self._seen += len(x)

    def on_validation_epoch_end(self) -> None:
        self.log("val/loss", self.val_loss.compute(), sync_dist=True)
        self.log("val/psnr", self.val_psnr.compute(), prog_bar=True, sync_dist=True)
        tb = tensorboard_of(self.trainer)
        picked = self._shown.items()
        if tb is not None and picked is not None and not self.trainer.sanity_checking \
                and self.trainer.is_global_zero:
            _, x, recon = picked
            pairs = torch.stack([self.to_pixels(x), self.to_pixels(recon)], 1).flatten(0, 1)  # (2n, C, H, W)
            grid = make_grid(pairs, nrow=2 * min(4, len(x)), padding=1)  # up to four pairs a row
            tb.add_image("val/reconstructions", grid, self.global_step)

    def test_step(self, batch, batch_idx: int) -> None:
        loss, recon, x = self._step(batch)
        self.test_loss(loss, weight=len(x))
        self.test_psnr(self.psnr(recon, x))
        self.log("test/loss", self.test_loss, on_epoch=True)
        self.log("test/psnr", self.test_psnr, on_epoch=True)
