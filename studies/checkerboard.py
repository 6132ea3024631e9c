"""Checkerboard artifacts of transposed convolutions (Odena, Dumoulin & Olah 2016, "Deconvolution and
Checkerboard Artifacts", Distill): what the study measures while its autoencoders train.

``CheckerboardMonitor`` logs ``decoder/checkerboard_score`` (the overlap unevenness of the decoder's
architecture, ``convzoo.models.layers.checkerboard_score``: weights do not enter it) and
``val/checkerboard_rms`` (the trained weights' checkerboard: the RMS of the decoder's output on a
spatially constant code), and at fit end saves ``reconstructions.pt`` for the report.
"""
from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from torch import nn

from convzoo.models.layers import checkerboard_score


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


class CheckerboardMonitor(L.Callback):
    """For an autoencoder with ``encoder`` and ``decoder`` parts, trained with ``task=autoencode``.

    ``path``: where the fit's end writes the first ``num_images`` validation images, their
    reconstructions (uint8 pixels) and the flat-code pattern (grey levels): the report's figure."""

    def __init__(self, path: str | None = None, num_images: int = 8) -> None:
        self.path, self.num_images = path, num_images
        self._mean_code: torch.Tensor | None = None

    def setup(self, trainer, pl_module, stage: str) -> None:
        net = pl_module.net
        if not (hasattr(net, "encoder") and hasattr(net, "decoder")):
            raise ValueError(f"the checkerboard monitor needs an autoencoder with encoder and decoder parts, "
                             f"got {type(net).__name__}; use it with task=autoencode (experiment=checkerboard)")
        self.overlap_score = checkerboard_score(net.decoder)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if batch_idx == 0:  # unshuffled: the same images every epoch
            with torch.no_grad():
                self._mean_code = pl_module.net.encoder(batch[0]).float().mean((0, 2, 3))

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        pl_module.log("decoder/checkerboard_score", self.overlap_score)
        if self._mean_code is not None:
            pattern = flat_code_pattern(pl_module.net.decoder, self._mean_code)
            pl_module.log("val/checkerboard_rms", pattern_rms(pattern, pl_module.std), sync_dist=True)

    @torch.no_grad()
    def on_fit_end(self, trainer, pl_module) -> None:
        if self.path is None or not trainer.is_global_zero or trainer.datamodule is None:
            return
        was_training = pl_module.training
        pl_module.eval()
        x, _ = next(iter(trainer.datamodule.val_dataloader()))
        x = x.to(pl_module.device)
        recon = pl_module(x)
        pattern = flat_code_pattern(pl_module.net.decoder, pl_module.net.encoder(x).float().mean((0, 2, 3)))
        scale = torch.tensor(pl_module.std, device=pattern.device).view(-1, 1, 1) * 255
        n = self.num_images

        def as_uint8(t: torch.Tensor) -> torch.Tensor:
            return (pl_module.to_pixels(t[:n]) * 255).round().to(torch.uint8).cpu()

        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        torch.save({"originals": as_uint8(x), "reconstructions": as_uint8(recon),
                    "decoder": getattr(pl_module.net, "decoder_kind", type(pl_module.net.decoder).__name__),
                    "pattern": ((pattern - pattern.mean((1, 2), keepdim=True)) * scale).cpu()}, self.path)
        pl_module.train(was_training)
