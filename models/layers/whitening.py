"""Patch whitening: a first layer whose filters are the data's patch covariance, whitened.

Used by the fastest CIFAR-10 trainers (tysam-code's hlb-CIFAR10; Jordan 2024, "94% on CIFAR-10
in 3.29 seconds on a single GPU", airbench): the K x K x C patches of the training images are
decorrelated by their covariance's eigenvectors, so the first learned layer sees inputs of unit
variance in every direction and early training is much faster. With covariance
``Sigma = V diag(lambda) V^T`` of the ``d = C K^2``-dimensional patches, the filters are
``W = diag(lambda + eps)^(-1/2) V^T`` (one filter per eigenvector) together with ``-W``, so a
following non-linearity keeps both signs: ``2 d`` output channels, ``y = conv(x, [W; -W]) + b``.
The filters are statistics of the data, like BatchNorm's running mean: a buffer set by
``fit(images)`` (saved in checkpoints, not trained); the bias is learned.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from convzoo.checks import check_positive

from ..registry import register_block
from .conv import LayerSpec, make_act


@register_block("whiten")
class PatchWhitening(nn.Module):
    """K x K valid conv with data-whitened filters (``2 C K^2`` channels), bias, then ``act_layer``.

    Output size ``W - K + 1`` (no padding, so every filter sees real pixels only). Until
    ``fit`` is called the filters are random (Kaiming), so the block also works untrained.
    """

    def __init__(self, in_channels: int, out_channels: int | None = None, *, stride: int = 1,
                 kernel_size: int = 2, eps: float = 5e-4, act_layer: LayerSpec = "gelu") -> None:
        super().__init__()
        check_positive("in_channels", in_channels)
        check_positive("kernel_size", kernel_size)
        check_positive("stride", stride)
        if not eps > 0:
            raise ValueError(f"eps should be > 0 (it keeps tiny eigenvalues from blowing up), got {eps!r}")
        dim = in_channels * kernel_size ** 2
        if out_channels is not None and out_channels != 2 * dim:
            raise ValueError(f"out_channels of a {kernel_size}x{kernel_size} patch whitening of "
                             f"{in_channels} channels is 2 * {dim} = {2 * dim} (each eigenvector and its "
                             f"negative); got {out_channels}: leave it out or set it to {2 * dim}")
        self.in_channels, self.out_channels, self.stride = in_channels, 2 * dim, stride
        self.kernel_size, self.eps = kernel_size, eps
        weight = torch.empty(2 * dim, in_channels, kernel_size, kernel_size)
        nn.init.kaiming_normal_(weight, mode="fan_out", nonlinearity="relu")
        self.register_buffer("weight", weight)                     # (2d, C, K, K)
        self.register_buffer("fitted", torch.tensor(False))        # saved, so a resume does not refit
        self.bias = nn.Parameter(torch.zeros(2 * dim))
        self.act = make_act(act_layer)

    def init_weights(self) -> None:
        # Net.init_weights re-initialises convs; this block's filters come from fit() instead.
        nn.init.zeros_(self.bias)

    @torch.no_grad()
    def fit(self, images: torch.Tensor) -> None:
        """Set the filters from (N, C, H, W) images (normalised as the net will see them)."""
        if images.dim() != 4 or images.shape[1] != self.in_channels:
            raise ValueError(f"fit needs images of shape (N, {self.in_channels}, H, W), got {tuple(images.shape)}")
        k = self.kernel_size
        patches = F.unfold(images.float(), k, stride=self.stride)          # (N, d, L)
        patches = patches.transpose(1, 2).reshape(-1, patches.shape[1])    # (N L, d)
        patches = patches - patches.mean(0)
        cov = patches.T @ patches / max(1, patches.shape[0] - 1)           # (d, d)
        eigenvalues, eigenvectors = torch.linalg.eigh(cov.double())
        filters = (eigenvectors.T / (eigenvalues + self.eps).sqrt()[:, None]).float()  # (d, d)
        filters = filters.view(-1, self.in_channels, k, k)
        self.weight.copy_(torch.cat([filters, -filters]))
        self.fitted.fill_(True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (N, C, H, W) -> (N, 2 C K^2, (H - K) / S + 1, (W - K) / S + 1)
        return self.act(F.conv2d(x, self.weight.to(x.dtype), self.bias.to(x.dtype), stride=self.stride))


def fit_whitening(net: nn.Module, images: torch.Tensor) -> int:
    """Fit every not-yet-fitted PatchWhitening in ``net`` (in order: each one sees the output of
    the layers before it); returns how many were fitted. Fitted ones (a resumed run) are kept."""
    count = 0
    for module in net.modules():
        if isinstance(module, PatchWhitening) and not bool(module.fitted):
            module.fit(_input_of(net, module, images))
            count += 1
    return count


def _input_of(net: nn.Module, target: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """What ``target`` receives when ``net`` runs on ``images`` (a forward pre-hook)."""
    seen: list[torch.Tensor] = []

    class _Stop(Exception):
        pass

    def hook(module, args):
        seen.append(args[0].detach())
        raise _Stop

    handle = target.register_forward_pre_hook(hook)
    was_training = net.training
    net.eval()  # layers before the target must not update their running statistics
    try:
        with torch.no_grad():
            net(images)
    except _Stop:
        pass
    finally:
        handle.remove()
        net.train(was_training)
    if not seen:
        raise ValueError("the whitening layer is not on the net's forward path")
    return seen[0]
