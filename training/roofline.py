"""The roofline: how fast a training step could run on this machine at best, and which roof binds.

A step does F FLOPs and must move B bytes, so its FLOP/s cannot exceed the compute peak, nor
AI x bandwidth where AI = F / B (FLOP per byte): ``roof = min(peak, AI x bandwidth)``. Both roofs
are measured here, in the same run as the models they judge, and each is the BEST of several
kernels, so that it is a true ceiling rather than one kernel's speed: the peak over square
matmuls and dense 3x3 convolutions (oneDNN often runs a conv faster than a matmul), the bandwidth
over streaming kernels from L2-sized to far beyond L3 (a CIFAR batch's activations often sit in
L3, and cache-resident traffic counts). ``step_bytes`` is a lower bound on what a step moves, so
AI is an upper bound and the memory roof too high rather than too low.

A whole-model AI hides that a net is a sequence of kernels, each bound by its own roof: a
MobileNet's 1x1 convs are compute-bound, its depthwise convs, batch norms and activations
memory-bound, and the step takes at least the sum. ``layer_bound`` adds up, per layer, the larger
of its compute time and its memory time: a lower bound on the step's time (so its rate is an
upper bound, never beaten), and one that judges each layer against the roof that binds it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from convzoo.models.complexity import ComplexityReport

from .timing import Case, interleave, median

MATMULS = (512, 1024, 2048)               # n of an n x n x n matmul, 2 n^3 FLOPs
GPU_MATMULS = (4096, 8192)                # a GPU needs larger ones to fill up
CONVS = ((64, 32), (128, 16), (256, 8))   # (channels in = out, map side): 3x3, stride 1, same padding
CONV_BATCH = 64
STREAM_MB = (1, 8, 64, 256)               # float32 buffers, L2-sized to well beyond L3


def _best(cases: dict, repeats: int, min_seconds: float, device, warmup: int) -> tuple[float, str]:
    """(highest median rate, its case's name) of ``cases`` timed round-robin."""
    rates = {name: median(r) for name, r in interleave(cases, repeats, min_seconds, device, warmup).items()}
    winner = max(rates, key=rates.get)
    return rates[winner], winner


def _matmul(n: int, dtype, device) -> Case:
    a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))
    out = torch.empty(n, n, device=device, dtype=dtype)
    return Case(lambda: torch.mm(a, b, out=out), work=2.0 * n ** 3)


def _conv(channels: int, side: int, batch: int, dtype, device) -> Case:
    """Channels_last, as train.py runs convolutions: 2 N H_out W_out K^2 C_in C_out FLOPs."""
    def tensor(*shape):
        return torch.randn(*shape, device=device).to(dtype).contiguous(memory_format=torch.channels_last)

    x, w = tensor(batch, channels, side, side), tensor(channels, channels, 3, 3)
    return Case(lambda: F.conv2d(x, w, padding=1), work=2.0 * batch * side * side * 9 * channels * channels)


def compute_peak(dtype: torch.dtype, device: torch.device, repeats: int, min_seconds: float, warmup: int = 2, *,
                 matmuls: tuple[int, ...] | None = None, convs=CONVS, batch: int = CONV_BATCH) -> tuple[float, str]:
    """(FLOP/s, winning shape): the best of square matmuls and dense 3x3 convolutions in ``dtype``."""
    if matmuls is None:
        matmuls = MATMULS + (GPU_MATMULS if device.type == "cuda" else ())
    cases = {f"matmul {n}^3": _matmul(n, dtype, device) for n in matmuls}
    cases.update({f"conv3x3 {c}->{c} @{s}x{s} x{batch}": _conv(c, s, batch, dtype, device) for c, s in convs})
    return _best(cases, repeats, min_seconds, device, warmup)


def memory_bandwidth(device: torch.device, repeats: int, min_seconds: float, warmup: int = 2, *,
                     megabytes=STREAM_MB) -> tuple[float, str]:
    """(bytes/s, winning kernel and size): the best of a copy (each byte read once and written once:
    2 x size) and a triad ``c = a + 2 b`` (3 x size) over float32 buffers of each size. Written bytes
    count once, as STREAM counts them (and as ``step_bytes`` does)."""
    cases = {}
    for mb in megabytes:
        a, b, c = (torch.rand(int(mb * 2 ** 18), device=device) for _ in range(3))  # 2^18 floats per MB
        size = a.numel() * a.element_size()
        cases[f"copy {mb:g} MB"] = Case(lambda a=a, c=c: c.copy_(a), work=2.0 * size)
        cases[f"triad {mb:g} MB"] = Case(lambda a=a, b=b, c=c: torch.add(a, b, alpha=2.0, out=c), work=3.0 * size)
    return _best(cases, repeats, min_seconds, device, warmup)


def step_bytes(report: ComplexityReport, batch_size: int, input_size=(3, 32, 32), *, train: bool = True,
               activation_itemsize: int = 4) -> float:
    """Bytes a step must move at the least, from ``complexity(model)`` of an fp32 model at batch 1.

    With A the activation bytes of a batch (outputs that alias no input: in-place ReLU and views
    are free), X the input batch and P the parameters: each activation is written once and read
    once, nothing more (a tensor two layers read, a conv's internal re-reads and BatchNorm's two
    passes are not counted). Forward: X + P + 2A. A training step adds the backward pass, which
    re-reads each saved activation and the input and writes and reads each gradient (X + 3A), reads
    the weights and writes their gradients (2P), and SGD with momentum, which reads parameters,
    gradients and momentum and writes parameters and momentum (5P): 2X + 5A + 8P in all.
    ``activation_itemsize``: 2 where autocast keeps activations in bf16 or fp16 (parameters,
    gradients and the input stay fp32)."""
    x = 4.0 * batch_size * torch.Size(input_size).numel()
    a = report.total_activation_bytes / 4 * activation_itemsize * batch_size
    p = 4.0 * report.total_params
    return 2 * x + 5 * a + 8 * p if train else x + 2 * a + p


def layer_bound(report: ComplexityReport, batch_size: int, peak: float, bandwidth: float, *,
                train: bool = True, activation_itemsize: int = 4) -> tuple[float, float]:
    """(seconds, memory-bound share of them): the least time a step can take, summed over the layers
    of ``complexity(model)`` (fp32, batch 1) as max(FLOPs / peak, bytes / bandwidth) per layer.

    Per layer, with O its output bytes and P its parameter bytes (per image, O scaled by the batch):
    FLOPs 2 x MACs forward, 6 x MACs for a training step; bytes, at the least, O written forward
    (+ P read) and, in training, the output's gradient read backward (+ P read, the gradient written
    and SGD's 5P): O + P forward, 2 O + 8 P a step. A layer's input is not counted (it is the
    previous layer's output, counted there), so this is a lower bound on every layer's traffic.
    MACs outside any leaf module (``other_macs``: residual adds, concatenations) count as compute."""
    flops_per_mac, act_reads, param_moves = (6, 2, 8) if train else (2, 1, 1)
    total = memory = 0.0
    for row in report.rows:
        compute_s = flops_per_mac * row.macs * batch_size / peak
        bytes_ = act_reads * row.activation_bytes / 4 * activation_itemsize * batch_size + param_moves * 4 * row.params
        memory_s = bytes_ / bandwidth
        total += max(compute_s, memory_s)
        memory += memory_s if memory_s > compute_s else 0.0
    total += flops_per_mac * report.other_macs * batch_size / peak
    return total, (memory / total if total else 0.0)
