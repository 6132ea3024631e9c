"""A small convolutional autoencoder: encoder of stride-2 ConvNormAct stages, a linear code, and a
mirrored decoder whose upsampling blocks are chosen by name.

Odena, Dumoulin & Olah, "Deconvolution and Checkerboard Artifacts" (Distill, 2016): a decoder
that upsamples with transposed convolutions whose kernel is not a multiple of the stride paints
a checkerboard; resize-convolution does not. The decoders differ only in their upsampling blocks
(``convzoo.models.layers.upsample``): ``transposed_k3`` (3x3, stride 2: uneven overlap),
``transposed_k4`` (4x4, stride 2: even overlap), ``resize`` (nearest x2, then 3x3) and
``resize_bilinear``. Trained with ``task=autoencode`` (``experiment=checkerboard``).
"""
from __future__ import annotations

import torch
from torch import nn

from .layers import ConvNormAct, ResizeConvUp, TransposedConvUp

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
