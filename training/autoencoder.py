"""A small convolutional autoencoder for the checkerboard study (issue 7, study 4), and its training.

Odena, Dumoulin & Olah, "Deconvolution and Checkerboard Artifacts" (Distill, 2016): a decoder
that upsamples with transposed convolutions whose kernel is not a multiple of the stride paints
a checkerboard; resize-convolution does not. The three decoders compared here differ only in
their upsampling blocks (``models.layers.upsample``): ``transposed_k3`` (3x3, stride 2: uneven
overlap), ``transposed_k4`` (4x4, stride 2: even overlap) and ``resize`` (nearest x2, then 3x3).

``python train.py -m experiment=checkerboard`` trains one autoencoder per decoder: train.py hands
configs with ``task: autoencoder`` to ``train_autoencoder``. ``training.checkerboard`` turns the
sweep into a table and a figure.
"""
from __future__ import annotations

import copy
import json
import math
import time
from pathlib import Path

import hydra
import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import nn
from torchmetrics import MeanMetric
from torchvision.utils import make_grid

from convzoo.models.complexity import complexity
from convzoo.models.layers import ConvNormAct, ResizeConvUp, TransposedConvUp, checkerboard_score

from .cli import ensure_writable
from .module import param_groups
from .setup import instantiate_checked, instantiate_list, model_hparams, resolve_precision, validate_config

# decoder name -> (upsampling block, its arguments); every block doubles H and W.
DECODERS = {
    "transposed_k3": (TransposedConvUp, {"kernel_size": 3}),
    "transposed_k4": (TransposedConvUp, {"kernel_size": 4}),
    "resize": (ResizeConvUp, {"mode": "nearest"}),
    "resize_bilinear": (ResizeConvUp, {"mode": "bilinear"}),
}


class ConvAutoencoder(nn.Module):
    """x (N, C, H, W) -> code (N, latent_channels, H / 2^n, W / 2^n) -> reconstruction (N, C, H, W).

    Encoder: n = len(channels) stride-2 3x3 ConvNormAct (widths ``channels``), then a 1x1 conv to
    ``latent_channels`` (a linear code). Decoder, the mirror image: a 1x1 ConvNormAct back to
    ``channels[-1]``, then n upsampling blocks of kind ``decoder`` (x2 each) through
    ``channels[-2], ..., channels[0]`` to C; the last block has no norm and no activation, since
    it outputs a normalised image, and no conv follows it that could smooth its artifacts away.
    """

    def __init__(self, in_chans: int = 3, channels: tuple[int, ...] = (32, 64, 128), latent_channels: int = 32,
                 decoder: str = "resize", norm_layer: str = "bn", act_layer: str = "relu",
                 name: str = "autoencoder") -> None:
        super().__init__()
        if decoder not in DECODERS:
            raise ValueError(f"unknown decoder {decoder!r}; expected one of: {', '.join(DECODERS)}")
        channels = list(channels)
        if not channels or any(isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in channels):
            raise ValueError(f"channels should be a non-empty list of positive ints, got {channels!r}")
        self.name, self.decoder_kind, self.in_chans = name, decoder, in_chans
        self.num_stages = len(channels)
        acts = dict(norm_layer=norm_layer, act_layer=act_layer)
        widths = [in_chans, *channels]
        self.encoder = nn.Sequential(
            *(ConvNormAct(c_in, c_out, 3, stride=2, **acts) for c_in, c_out in zip(widths, widths[1:])),
            nn.Conv2d(channels[-1], latent_channels, 1))
        block, kwargs = DECODERS[decoder]
        path = widths[::-1]  # channels[-1], ..., channels[0], in_chans
        plain = dict(norm_layer=None, act_layer=None)
        ups = [block(c_in, c_out, stride=2, **kwargs, **(plain if i == len(channels) - 1 else acts))
               for i, (c_in, c_out) in enumerate(zip(path, path[1:]))]
        self.decoder = nn.Sequential(ConvNormAct(latent_channels, channels[-1], 1, **acts), *ups)

    def check_image_size(self, size: tuple[int, ...]) -> None:
        factor = 2 ** self.num_stages
        if any(s % factor for s in size):
            raise ValueError(f"image size {tuple(size)} should be divisible by 2^{self.num_stages} = {factor} "
                             f"(model.channels has {self.num_stages} stride-2 stages); use fewer channels entries")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))  # (N, C, H, W)


@torch.no_grad()
def flat_code_pattern(decoder: nn.Module, code: torch.Tensor, size: int = 16) -> torch.Tensor:
    """The decoder's output on the spatially constant code ``code`` (C,) tiled to ``size x size``,
    with a quarter of each side cropped (where zero padding reaches): (C_out, size f / 2, size f / 2).

    Evenly spreading upsampling (resize-conv) turns a constant input into a constant image; a
    transposed conv paints a period-2^n pattern wherever its trained taps do not sum to the same
    value in every output phase, the weight-dependent side of Odena et al.'s overlap argument.
    """
    param = next(decoder.parameters())
    z = code.to(param).view(1, -1, 1, 1).expand(1, -1, size, size)  # (1, C, size, size)
    out = decoder(z)[0].float()  # (C_out, size f, size f)
    h, w = out.shape[-2:]
    return out[:, h // 4: h - h // 4, w // 4: w - w // 4]


def pattern_rms(pattern: torch.Tensor, std) -> torch.Tensor:
    """RMS over pixels and channels of ``pattern`` minus its per-channel mean, in 8-bit grey levels
    (``pattern`` is in normalised units: one unit is ``255 std_c`` grey levels in channel c)."""
    scale = torch.tensor(std, dtype=pattern.dtype, device=pattern.device).view(-1, 1, 1) * 255
    return ((pattern - pattern.mean((1, 2), keepdim=True)) * scale).square().mean().sqrt()


class AutoencoderModule(L.LightningModule):
    """MSE between reconstruction and input (both normalised); ``val/psnr`` in pixel space.

    Logs ``train/loss``, ``val/loss``, ``val/psnr``, ``decoder/checkerboard_score`` (the overlap
    unevenness of the decoder's architecture, ``models.layers.checkerboard_score``; weights do not
    enter it), ``val/checkerboard_rms`` (``pattern_rms`` of ``flat_code_pattern`` on the mean code of
    the first validation batch: the trained weights' checkerboard), and each validation epoch a grid
    ``val/reconstructions``: the first ``num_images`` validation images above their reconstructions.
    """

    def __init__(self, net: ConvAutoencoder, optimizer, scheduler=None, *, mean, std, num_images: int = 8,
                 exclude_norm_bias_from_wd: bool = True, model_cfg: dict | None = None,
                 data_info: dict | None = None) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"])
        self.net = net
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.mean, self.std = list(mean), list(std)
        self.overlap_score = checkerboard_score(net.decoder)
        self.val_loss, self.val_psnr = MeanMetric(), MeanMetric()
        self.test_loss, self.test_psnr = MeanMetric(), MeanMetric()
        self._shown: tuple[torch.Tensor, torch.Tensor] | None = None
        self._mean_code: torch.Tensor | None = None

    def configure_optimizers(self):
        # As the classifier: weight decay from the optimizer config, none on norms and biases;
        # the schedule is stepped per batch and told the run's length.
        weight_decay = getattr(self.optimizer_factory, "keywords", {}).get("weight_decay", 0.0)
        optimizer = self.optimizer_factory(param_groups(self.net, weight_decay, self.hparams.exclude_norm_bias_from_wd))
        if self.scheduler_factory is None:
            return optimizer
        total = int(self.trainer.estimated_stepping_batches)  # bounded: checked before the data is read
        per_epoch = max(1, math.ceil(self.trainer.num_training_batches / self.trainer.accumulate_grad_batches))
        scheduler = self.scheduler_factory(optimizer, total_steps=total, steps_per_epoch=per_epoch)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_train_epoch_start(self) -> None:
        loader = self.trainer.train_dataloader  # the in-memory loader reshuffles per epoch
        if callable(getattr(loader, "set_epoch", None)):
            loader.set_epoch(self.current_epoch)

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

    def validation_step(self, batch, batch_idx: int) -> None:
        loss, recon, x = self._step(batch)
        self.val_loss(loss, weight=len(x))
        self.val_psnr(self.psnr(recon, x))
        if batch_idx == 0:  # unshuffled: the same images every epoch
            n = self.hparams.num_images
            self._shown = (x[:n].detach(), recon[:n].detach())
            self._mean_code = self.net.encoder(x).float().mean((0, 2, 3))

    def on_validation_epoch_end(self) -> None:
        self.log("val/loss", self.val_loss.compute(), sync_dist=True)
        self.log("val/psnr", self.val_psnr.compute(), prog_bar=True, sync_dist=True)
        self.log("decoder/checkerboard_score", self.overlap_score)
        if self._mean_code is not None:
            pattern = flat_code_pattern(self.net.decoder, self._mean_code)
            self.log("val/checkerboard_rms", pattern_rms(pattern, self.std), sync_dist=True)
        tb = next((lg.experiment for lg in self.loggers if isinstance(lg, TensorBoardLogger)), None)
        if tb is not None and self._shown is not None and not self.trainer.sanity_checking \
                and self.trainer.is_global_zero:
            x, recon = self._shown
            grid = make_grid(torch.cat([self.to_pixels(x), self.to_pixels(recon)]).cpu(), nrow=len(x), padding=1)
            tb.add_image("val/reconstructions", grid, self.global_step)

    def test_step(self, batch, batch_idx: int) -> None:
        loss, recon, x = self._step(batch)
        self.test_loss(loss, weight=len(x))
        self.test_psnr(self.psnr(recon, x))
        self.log("test/loss", self.test_loss, on_epoch=True)
        self.log("test/psnr", self.test_psnr, on_epoch=True)


@torch.no_grad()
def save_reconstructions(module: AutoencoderModule, datamodule, path: Path) -> None:
    """``path`` (torch.save, plain tensors): the first ``num_images`` validation images and their
    reconstructions as uint8 pixels, and the flat-code pattern in grey levels, for the report."""
    was_training = module.training
    module.eval()
    x, _ = next(iter(datamodule.val_dataloader()))
    x = x.to(module.device)
    recon = module(x)
    pattern = flat_code_pattern(module.net.decoder, module.net.encoder(x).float().mean((0, 2, 3)))
    scale = torch.tensor(module.std, device=pattern.device).view(-1, 1, 1) * 255
    n = module.hparams.num_images
    as_uint8 = lambda t: (module.to_pixels(t[:n]) * 255).round().to(torch.uint8).cpu()  # noqa: E731
    torch.save({"originals": as_uint8(x), "reconstructions": as_uint8(recon), "decoder": module.net.decoder_kind,
                "pattern": ((pattern - pattern.mean((1, 2), keepdim=True)) * scale).cpu()}, path)
    module.train(was_training)


def check_autoencoder_config(cfg: DictConfig) -> None:
    """The classifier's checks (optimizer, batch sizes, run length, and the model built on the meta
    device: an unknown decoder fails here, before any data is read), minus the data's class count."""
    if cfg.get("ckpt_path"):
        raise ValueError(f"ckpt_path={cfg.ckpt_path}: resuming is not supported for task=autoencoder; "
                         "drop ckpt_path to start a new run")
    checked = copy.deepcopy(cfg)
    with open_dict(checked):
        checked.data.pop("num_classes", None)  # an autoencoder has no classes to size a head for
    validate_config(checked)


def train_autoencoder(cfg: DictConfig) -> dict:
    """Fit the autoencoder of ``cfg.model`` on ``cfg.data`` (and test it where there is a test split);
    writes config.yaml, metrics.json and reconstructions.pt into the run folder; returns the metrics."""
    check_autoencoder_config(cfg)
    with open_dict(cfg):
        cfg.trainer.precision = resolve_precision(cfg.trainer.get("precision", "auto"),
                                                  cfg.trainer.get("accelerator", "auto"))
    out = ensure_writable(cfg.paths.output_dir)
    L.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate_checked(cfg.data, "data")
    datamodule.prepare_data()
    datamodule.setup("fit")
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    model_cfg["in_chans"] = datamodule.in_chans
    net = hydra.utils.instantiate(model_cfg)
    net.check_image_size(datamodule.image_size)
    report = complexity(net, (datamodule.in_chans, *datamodule.image_size))
    data_info = {"in_chans": datamodule.in_chans, "image_size": list(datamodule.image_size),
                 "mean": list(datamodule.mean), "std": list(datamodule.std)}
    module = AutoencoderModule(
        net, hydra.utils.instantiate(cfg.optimizer), hydra.utils.instantiate(cfg.scheduler),
        mean=datamodule.mean, std=datamodule.std, num_images=cfg.module.get("num_images", 8),
        exclude_norm_bias_from_wd=cfg.module.get("exclude_norm_bias_from_wd", True),
        model_cfg=model_cfg, data_info=data_info)

    hparams = {**model_hparams(cfg, report), "decoder": net.decoder_kind}
    callbacks = instantiate_list(cfg.get("callbacks"), hparams=hparams, complexity_table=report.table())
    loggers = instantiate_list(cfg.get("logger"))
    trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    OmegaConf.save(cfg, out / "config.yaml", resolve=True)

    start = time.perf_counter()
    trainer.fit(module, datamodule=datamodule, weights_only=True)
    fit_seconds = time.perf_counter() - start
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    if trainer.is_global_zero:
        save_reconstructions(module, datamodule, out / "reconstructions.pt")  # the final weights
        for lg in trainer.loggers:
            if isinstance(lg, TensorBoardLogger) and not trainer.fast_dev_run:
                lg.experiment.add_text("model/complexity", f"```\n{report.table()}\n```", 0)
                lg.log_hyperparams(hparams, {f"hparams/{k.replace('/', '_')}": metrics[k] for k in
                                             ("val/loss", "val/psnr", "val/checkerboard_rms") if k in metrics})
    if cfg.get("test") and datamodule.has_test and not trainer.fast_dev_run:
        trainer.test(module, datamodule=datamodule, ckpt_path=best or None, weights_only=True)
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")})
    summary = {**hparams, **metrics, "fit_seconds": fit_seconds, "best_checkpoint": best}
    if trainer.is_global_zero:
        (out / "metrics.json").write_text(json.dumps(summary, indent=2))
    return summary
