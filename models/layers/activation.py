"""ReLU6 in place without the copy PyTorch's in-place ReLU6 makes for its backward.

``nn.ReLU6(inplace=True)`` calls ``hardtanh_``, which clones its input so the backward can see
where it lay inside (0, 6): a full extra write and read of every activation, 8-14% of a MobileNetV2
training step on a 2-core EPYC (docs/profile.md). The output alone tells the same thing, since
``0 < relu6(x) < 6`` exactly where ``0 < x < 6``, so saving the output (which in-place costs
nothing) gives the same gradient with no copy.
"""
from __future__ import annotations

import torch
from torch import nn


class _ReLU6Inplace(torch.autograd.Function):
    """y = min(max(x, 0), 6) written into x; dy/dx = 1 where 0 < y < 6, else 0 (as F.relu6)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        x.clamp_(0.0, 6.0)
        ctx.mark_dirty(x)
        ctx.save_for_backward(x)
        return x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (y,) = ctx.saved_tensors
        return torch.ops.aten.hardtanh_backward(grad, y, 0.0, 6.0)  # one fused kernel: grad * (0 < y < 6)


class ReLU6(nn.ReLU6):
    """``nn.ReLU6`` (same maths, repr and state); in place and under autograd it saves its output
    instead of cloning its input. Anything else (not in place, no grad) is ``nn.ReLU6``'s path."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.inplace and torch.is_grad_enabled() and x.requires_grad:
            return _ReLU6Inplace.apply(x)
        return super().forward(x)
