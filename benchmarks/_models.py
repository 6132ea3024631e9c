"""Table 1: the machine's roofs, then every zoo model's size, training and inference speed against them.

A training step is what ``train.py`` does per batch, minus the Lightning loop (table 3 measures
that): ``training.timing.train_case``, channels_last weights and batch, forward under the
precision's autocast, cross-entropy with label smoothing 0.1, backward, SGD step (Nesterov
momentum 0.9, weight decay 5e-4 off norms and biases, as configs/optimizer/sgd.yaml). Inputs are
random: speed does not depend on the pixels.

Per training precision the models table gives the achieved GFLOP/s (6 x MACs per image x img/s:
forward, input and weight gradients), the whole step's arithmetic intensity AI (those FLOPs over
the bytes the step must move at the least, ``training.roofline.step_bytes``), and the roof: the
img/s no step could beat, from the least time each layer takes at its own roof (the larger of its
compute time at the peak and its memory time at the bandwidth, ``training.roofline.layer_bound``),
with the share of that time spent on memory-bound layers, and the achieved share of the roof.
Inference gets its share of the forward pass's roof. The roofs are measured in the same run: the
best of several matmuls and convolutions, and of several streaming kernels (``training.roofline``).
"""
from __future__ import annotations

import copy
import sys

import torch

from convzoo.models import create_model
from convzoo.models.complexity import complexity
from convzoo.training.device import PRECISIONS
from convzoo.training.roofline import compute_peak, layer_bound, memory_bandwidth, step_bytes
from convzoo.training.timing import infer_case, interleave, median, train_case

INPUT = (3, 32, 32)
QUICK_PEAK = dict(matmuls=(256, 512), convs=((64, 16),), batch=8)  # --quick: small kernels, quick to time
QUICK_STREAM = dict(megabytes=(1, 8))


def _dtype(precision: str) -> torch.dtype:
    """What a precision computes in (activations included): autocast's dtype, or fp32."""
    return PRECISIONS[precision] or torch.float32


def roofs(opts, precisions: list[str]) -> tuple[list[dict], dict[str, float], float]:
    """(table rows, compute peak FLOP/s per precision, memory bandwidth bytes/s)."""
    peak_sizes, stream_sizes = (QUICK_PEAK, QUICK_STREAM) if opts.quick else ({}, {})
    seconds = max(opts.min_seconds, 0.05)  # even in --quick: one call of a small kernel times its dispatch
    rows, peaks = [], {}
    for p in precisions:
        peaks[p], shape = compute_peak(_dtype(p), opts.device, opts.repeats, seconds, opts.warmup, **peak_sizes)
        rows.append({"roof": f"compute peak {p}", "value": peaks[p] / 1e9, "unit": "GFLOP/s", "won by": shape})
    bandwidth, kernel = memory_bandwidth(opts.device, opts.repeats, seconds, opts.warmup, **stream_sizes)
    rows.append({"roof": "memory bandwidth", "value": bandwidth / 1e9, "unit": "GB/s", "won by": kernel})
    return rows, peaks, bandwidth


def model_rows(names: list[str], opts, precisions: list[str], default: str,
               peaks: dict[str, float], bandwidth: float) -> list[dict]:
    """One row per model. ``precisions``: training precisions to measure (the default among them)."""
    rows = []
    for name in names:
        torch.manual_seed(0)
        net = create_model(name)
        report = complexity(net, INPUT)
        cases = {f"train {p}": train_case(copy.deepcopy(net), opts.batch_size, p, opts.device) for p in precisions}
        cases["infer"] = infer_case(copy.deepcopy(net), opts.infer_batch_size, default, opts.device)
        cases["latency"] = infer_case(copy.deepcopy(net), 1, default, opts.device)
        cases["latency"].min_seconds = opts.min_seconds / 4  # hundreds of calls already: a short repeat will do
        timed = interleave(cases, opts.repeats, opts.min_seconds, opts.device, opts.warmup)
        rates = {k: median(v) for k, v in timed.items()}
        macs = report.total_macs
        row = {"model": name, "params": report.total_params, "MACs/img (M)": macs / 1e6}
        for p in precisions:
            mark = " = default" if p == default else ""
            intensity = 6 * macs * opts.batch_size / step_bytes(report, opts.batch_size, INPUT,
                                                                activation_itemsize=_dtype(p).itemsize)
            seconds, memory_share = layer_bound(report, opts.batch_size, peaks[p], bandwidth,
                                                activation_itemsize=_dtype(p).itemsize)
            ceiling = opts.batch_size / seconds
            row.update({f"train img/s {p}{mark}": rates[f"train {p}"], f"GFLOP/s {p}": 6 * macs * rates[f"train {p}"] / 1e9,
                        f"AI {p}": intensity, f"roof img/s {p}": ceiling, f"memory-bound % {p}": 100 * memory_share,
                        f"% of roof {p}": 100 * rates[f"train {p}"] / ceiling})
        if default in precisions and "32-true" in precisions and default != "32-true":
            row["default / fp32"] = rates[f"train {default}"] / rates["train 32-true"]
        row[f"infer img/s @{opts.infer_batch_size}"] = rates["infer"]
        seconds, _ = layer_bound(report, opts.infer_batch_size, peaks[default], bandwidth, train=False,
                                 activation_itemsize=_dtype(default).itemsize)
        row["infer % of roof"] = 100 * rates["infer"] * seconds / opts.infer_batch_size
        row["latency @1 (ms)"] = 1e3 / rates["latency"]
        rows.append(row)
        print(f"  measured {name}", file=sys.stderr, flush=True)
    return rows


def train_speed(name: str, opts, precision: str) -> float:
    """Median training images/s of one model (for table 2 when table 1 was not run)."""
    torch.manual_seed(0)
    case = train_case(create_model(name), opts.batch_size, precision, opts.device)
    return median(interleave({"train": case}, opts.repeats, opts.min_seconds, opts.device, opts.warmup)["train"])
