"""How convzoo times things: warm-up, calibrated repeats taken round-robin, median and spread.

A measured ``Case`` is a zero-argument ``step`` and the work one step does (images; FLOPs or
bytes for ``roofline``'s kernels). ``interleave`` first runs each case's warm-up steps (allocation,
oneDNN primitive creation, lazy initialisation), times a probe step to pick how many steps make a
repeat last at least ``min_seconds`` (so a small and a large model are timed with similar
precision), then runs the repeats round-robin, A B C A B C ..., so a burst of machine noise
hits every case, not one. Reports give the median of the repeats and, where it helps, their
spread. The benchmarks, study reports and evaluate.py's speed columns all time this way.
"""
from __future__ import annotations

import math
import statistics
import time
import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .device import autocast


@dataclass
class Case:
    step: Callable[[], object]
    work: float                                   # images (or FLOPs, bytes) per step
    context: Callable[[], AbstractContextManager] = nullcontext  # entered around every timed call
    warmup: int | None = None                     # untimed steps first (None: interleave's)
    probe: int = 1                                # steps timed to calibrate (more for prefetching loaders)
    min_seconds: float | None = None              # per repeat, instead of interleave's
    fixed_steps: int | None = None                # steps per repeat, instead of calibrating
    steps: int = field(default=0, init=False)     # steps per repeat, set by calibration


def sync(device: torch.device) -> None:
    """Wait for the device: CUDA kernels run asynchronously, a CPU timer alone would not see them."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_steps(case: Case, n: int, device: torch.device) -> float:
    """Seconds for ``n`` calls of ``case.step`` (the device is synchronised at both ends)."""
    with case.context():
        sync(device)
        start = time.perf_counter()
        for _ in range(n):
            case.step()
        sync(device)
        return time.perf_counter() - start


def calibrate(case: Case, min_seconds: float, device: torch.device, warmup: int = 2,
              max_steps: int = 100_000) -> None:
    """Warm the case up, then set ``case.steps`` so that one repeat lasts about ``min_seconds``."""
    run_steps(case, warmup if case.warmup is None else case.warmup, device)
    if case.fixed_steps is not None:
        case.steps = case.fixed_steps
        return
    if case.min_seconds is not None:
        min_seconds = min(min_seconds, case.min_seconds)
    if min_seconds <= 0:  # smoke tests: one step per repeat, no probe
        case.steps = 1
        return
    once = run_steps(case, case.probe, device) / case.probe
    case.steps = max(1, min(max_steps, math.ceil(min_seconds / max(once, 1e-9))))


def interleave_seconds(cases: dict, repeats: int, min_seconds: float, device: torch.device,
                       warmup: int = 2) -> dict[object, list[float]]:
    """Seconds per step of each case, one value per repeat, measured round-robin after calibration."""
    for case in cases.values():
        calibrate(case, min_seconds, device, warmup)
    seconds: dict[object, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, case in cases.items():
            seconds[name].append(run_steps(case, case.steps, device) / case.steps)
    return seconds


def interleave(cases: dict, repeats: int, min_seconds: float, device: torch.device,
               warmup: int = 2) -> dict[object, list[float]]:
    """Rates (work / s) of each case, one per repeat, measured round-robin after calibration."""
    timed = interleave_seconds(cases, repeats, min_seconds, device, warmup)
    return {name: [cases[name].work / max(s, 1e-12) for s in values] for name, values in timed.items()}


def median(values) -> float:
    """The middle repeat: one slow repeat (a burst of other load) does not move it."""
    return statistics.median(values)


def spread(values) -> float:
    """Standard deviation of the repeats (0 for a single one): how far to trust a median or mean."""
    values = list(values)
    return statistics.stdev(values) if len(values) > 1 else 0.0


# --- training and inference steps as train.py runs them ------------------------------------

@contextmanager
def as_train_py():
    """fp32 matmuls as train.py sets them (``high``: TF32 where the hardware has it), around a
    whole benchmark, so calibration and timings see what a run sees; and train.py's default
    ``cpu_allocator=retain``, which stays for the rest of the process (``allocator.py``)."""
    from .allocator import set_cpu_allocator

    set_cpu_allocator("retain")
    old = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="TF32 acceleration on top of oneDNN")  # from mkldnn.flags()
            yield
    finally:
        torch.set_float32_matmul_precision(old)


def _random_batch(batch_size: int, device, channels_last: bool, num_classes: int = 10,
                  input_shape: tuple[int, ...] = (3, 32, 32)):
    """Random images (CIFAR-sized unless told) and labels: speed does not depend on the pixels."""
    x = torch.randn(batch_size, *input_shape, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, torch.randint(0, num_classes, (batch_size,), device=device)


def _in_mode(net: nn.Module, train: bool, context: Callable[[], AbstractContextManager]):
    """A case context that also puts ``net`` in train or eval mode: one net may serve both cases."""
    def enter():
        stack = ExitStack()
        net.train(train)
        stack.enter_context(context())
        return stack

    return enter


def _prepare(net: nn.Module, device, channels_last: bool) -> nn.Module:
    net = net.to(device)
    return net.to(memory_format=torch.channels_last) if channels_last else net


def train_case(net: nn.Module, batch_size: int, precision: str, device, *, channels_last: bool = True,
               context=nullcontext, input_shape: tuple[int, ...] = (3, 32, 32), num_classes: int = 10) -> Case:
    """One optimizer step per call on a fixed random batch, as train.py's default recipe does it:
    forward under the precision's autocast, cross-entropy with label smoothing 0.1 (a net whose
    output is not (N, classes), an autoencoder, gets the mean square of its output instead: the
    loss is a negligible part of a step), SGD with Nesterov momentum 0.9 and weight decay 5e-4 off
    norms and biases. ``net`` trains in place."""
    from .task import param_groups  # beside the LightningModule: imported only where a step is timed

    net = _prepare(net, device, channels_last)
    x, y = _random_batch(batch_size, device, channels_last, num_classes, input_shape)
    optimizer = torch.optim.SGD(param_groups(net, 5e-4, True), lr=0.1, momentum=0.9, nesterov=True)

    def step():
        with autocast(precision, device):
            logits = net(x)
        if logits.dim() == 2:
            loss = F.cross_entropy(logits.float(), y, label_smoothing=0.1)
        else:
            loss = logits.float().square().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return Case(step, work=batch_size, context=_in_mode(net, True, context))


def infer_case(net: nn.Module, batch_size: int, precision: str, device, *, channels_last: bool = True,
               context=nullcontext) -> Case:
    """One eval-mode forward pass per call under ``torch.inference_mode`` and the precision's autocast."""
    net = _prepare(net, device, channels_last)
    x, _ = _random_batch(batch_size, device, channels_last)

    def step():
        with torch.inference_mode(), autocast(precision, device):
            net(x)

    return Case(step, work=batch_size, context=_in_mode(net, False, context))


def measure_training_and_inference(nets: dict[str, nn.Module], batch: int = 128, repeats: int = 5,
                                   warmup: int = 2, min_seconds: float = 0.5,
                                   precision: str | dict[str, str] = "32-true",
                                   device: torch.device | None = None) -> dict[str, tuple[float, float]]:
    """(training, inference) images per second of each net, side by side: every net's training
    and inference cases take turns in each of ``repeats`` rounds, each lasting at least
    ``min_seconds``, so load on the machine slows all of them alike; medians over the rounds.
    ``precision``: one for every net, or each net's (name -> precision)."""
    device = device or torch.device("cpu")
    cases = {}
    for name, net in nets.items():
        own = precision if isinstance(precision, str) else precision[name]
        cases[name, "train"] = train_case(net, batch, own, device)
        cases[name, "infer"] = infer_case(net, batch, own, device)
    rates = interleave(cases, repeats, min_seconds, device, warmup)
    return {name: (median(rates[name, "train"]), median(rates[name, "infer"])) for name in nets}


@torch.inference_mode()
def measure_inference(net: nn.Module, input_shape, device: torch.device, *, batch_size: int = 256,
                      repeats: int = 5, warmup: int = 2, latency_iters: int = 10) -> dict:
    """Throughput (images/s) at ``batch_size`` and latency (ms) at batch 1, fp32, of ``net`` as it
    is (mode, layout): medians of ``repeats`` interleaved timings after ``warmup`` untimed passes
    (the first passes pay for allocation). A throughput repeat is one batch, a latency repeat
    ``latency_iters`` single images."""
    batch = torch.randn(batch_size, *input_shape, device=device)
    single = batch[:1].clone()
    cases = {"batch": Case(lambda: net(batch), work=batch_size, warmup=warmup, fixed_steps=1),
             "single": Case(lambda: net(single), work=1, warmup=warmup, fixed_steps=latency_iters)}
    seconds = interleave_seconds(cases, repeats, 0.0, device, warmup)
    return {"images_per_sec": batch_size / median(seconds["batch"]), "throughput_batch_size": batch_size,
            "latency_ms": median(seconds["single"]) * 1e3, "repeats": repeats, "precision": "fp32",
            "threads": torch.get_num_threads()}
