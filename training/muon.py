"""Muon for convolution filters, Nesterov SGD for everything else, in one optimizer.

Muon (Jordan et al. 2024, "Muon: an optimizer for hidden layers"; airbench's later CIFAR-10 records)
replaces a filter's momentum update ``U S V^T`` by its orthogonal factor ``U V^T``, so that every
direction of the filter matrix (``out x in*k*k``) moves at the same rate. The factor is approximated by
a quintic Newton-Schulz iteration, ``X <- a X + (b A + c A^2) X`` with ``A = X X^T`` and
``(a, b, c) = (3.4445, -4.7750, 2.0315)``, started from ``G / ||G||_F``. As in airbench, each filter is
rescaled to Frobenius norm ``sqrt(out_channels)`` before its step (``normalize=True``): the updates
have a fixed size, so the weights' scale must be fixed too; this is harmless only where a norm layer
follows the convolution (every conv of fastnet, ResNets, MobileNets), which makes it scale-invariant.

Why one optimizer and not ``torch.optim.Muon`` beside an SGD: torch's Muon takes 2-D parameters
only, and Lightning's automatic optimization, the lr schedulers and the checkpoints all expect one
optimizer. The filters form their own param groups (lr ``muon_lr``), so one schedule scales both.
"""
from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch.optim import Optimizer

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


@torch.no_grad()
def orthogonalize(grad: torch.Tensor, steps: int = 3, eps: float = 1e-7) -> torch.Tensor:
    """Approximately ``U V^T`` of ``grad`` (flattened to ``rows x rest``) by ``steps`` Newton-Schulz
    iterations; its singular values land near 1 (roughly 0.7-1.2: the iteration trades exactness
    for speed). Same shape as ``grad``."""
    matrix = grad.reshape(grad.shape[0], -1).float()
    tall = matrix.shape[0] > matrix.shape[1]
    x = matrix.T if tall else matrix  # the Gram matrix X X^T is the smaller square
    x = x / (x.norm() + eps)
    a, b, c = NS_COEFFICIENTS
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return (x.T if tall else x).reshape(grad.shape).to(grad.dtype)


class Muon(Optimizer):
    """``Muon(params, lr, momentum=0.9, nesterov=True, weight_decay=0.0, muon_lr=0.05, muon_momentum=0.8,
    ns_steps=3, normalize=True)``.

    Each given group is split: its 4-D parameters (convolution filters) become a Muon group with
    ``lr=muon_lr`` and ``momentum=muon_momentum`` and no weight decay (with ``normalize`` their norm
    is fixed, so decay would do nothing); the rest stay an SGD group (Nesterov, L2 weight decay as
    ``torch.optim.SGD`` applies it) with the group's own ``lr`` and ``weight_decay``. An lr scheduler
    scales every group by the same factor."""

    def __init__(self, params: Iterable, lr: float, momentum: float = 0.9, nesterov: bool = True,
                 weight_decay: float = 0.0, muon_lr: float = 0.05, muon_momentum: float = 0.8, ns_steps: int = 3,
                 normalize: bool = True) -> None:
        for name, value in (("lr", lr), ("muon_lr", muon_lr)):
            if not value > 0:
                raise ValueError(f"{name} should be > 0, got {value}")
        for name, value in (("momentum", momentum), ("muon_momentum", muon_momentum)):
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} should be in [0, 1), got {value}")
        if nesterov and (momentum == 0 or muon_momentum == 0):
            raise ValueError("nesterov=True needs momentum > 0 and muon_momentum > 0")
        if weight_decay < 0:
            raise ValueError(f"weight_decay should be >= 0, got {weight_decay}")
        if not (isinstance(ns_steps, int) and ns_steps >= 1):
            raise ValueError(f"ns_steps should be an integer >= 1, got {ns_steps}")
        groups = list(params)
        if groups and not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        split = []
        for group in groups:
            tensors = list(group["params"])
            filters = [p for p in tensors if p.ndim == 4]
            others = [p for p in tensors if p.ndim != 4]
            if filters:
                split.append({**group, "params": filters, "muon": True, "lr": muon_lr,
                              "momentum": muon_momentum, "weight_decay": 0.0})
            if others:
                split.append({**group, "params": others, "muon": False})
        defaults = dict(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay,
                        muon=False, ns_steps=ns_steps, normalize=normalize)
        super().__init__(split, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, momentum, nesterov = group["lr"], group["momentum"], group["nesterov"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if not group["muon"] and group["weight_decay"]:
                    grad = grad.add(p, alpha=group["weight_decay"])
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = grad.detach().clone()
                else:
                    state["momentum_buffer"].mul_(momentum).add_(grad)
                buf = state["momentum_buffer"]
                update = grad.add(buf, alpha=momentum) if nesterov else buf
                if group["muon"]:
                    if group["normalize"]:
                        p.mul_(math.sqrt(p.shape[0]) / (p.norm() + 1e-12))
                    update = orthogonalize(update, group["ns_steps"])
                p.add_(update, alpha=-lr)
        return loss
