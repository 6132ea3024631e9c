"""Table 1: every zoo model's size, training and inference speed, and MFU against the matmul peak.

A training step is what ``train.py`` does per batch, minus the Lightning loop (table 3 measures
that): ``training.timing.train_case``, channels_last weights and batch, forward under the
precision's autocast, cross-entropy with label smoothing 0.1, backward, SGD step (Nesterov
momentum 0.9, weight decay 5e-4 off norms and biases, as configs/optimizer/sgd.yaml). Inputs are
random: speed does not depend on the pixels. MFU = achieved FLOP/s / matmul peak, with FLOPs =
2 x MACs per image forward and 3 x that for a training step (backward ~ 2 x forward: input and
weight gradients).
"""
from __future__ import annotations

import copy
import sys

import torch

from convzoo.models import create_model
from convzoo.models.complexity import complexity
from convzoo.training.timing import infer_case, interleave, median, train_case


def size_of(name: str) -> tuple[int, int]:
    """(parameters, MACs per 3x32x32 image) from ``models.complexity``."""
    report = complexity(create_model(name), (3, 32, 32))
    return report.total_params, report.total_macs


def model_rows(names: list[str], opts, precisions: list[str], default: str,
               peaks: dict[str, float]) -> list[dict]:
    """One row per model. ``precisions``: training precisions to measure (the default among them)."""
    rows = []
    for name in names:
        params, macs = size_of(name)
        torch.manual_seed(0)
        net = create_model(name)
        cases = {f"train {p}": train_case(copy.deepcopy(net), opts.batch_size, p, opts.device) for p in precisions}
        cases["infer"] = infer_case(copy.deepcopy(net), opts.infer_batch_size, default, opts.device)
        cases["latency"] = infer_case(copy.deepcopy(net), 1, default, opts.device)
        cases["latency"].min_seconds = opts.min_seconds / 4  # hundreds of calls already: a short repeat will do
        timed = interleave(cases, opts.repeats, opts.min_seconds, opts.device, opts.warmup)
        rates = {k: median(v) for k, v in timed.items()}
        row = {"model": name, "params": params, "MACs/img (M)": macs / 1e6}
        for p in precisions:
            mark = " = default" if p == default else ""
            row[f"train img/s {p}{mark}"] = rates[f"train {p}"]
            row[f"train MFU % {p}"] = 100 * 6 * macs * rates[f"train {p}"] / peaks[p]
        if default in precisions and "32-true" in precisions and default != "32-true":
            row["default / fp32"] = rates[f"train {default}"] / rates["train 32-true"]
        row[f"infer img/s @{opts.infer_batch_size}"] = rates["infer"]
        row["infer MFU %"] = 100 * 2 * macs * rates["infer"] / peaks[default]
        row["latency @1 (ms)"] = 1e3 / rates["latency"]
        rows.append(row)
        print(f"  measured {name}", file=sys.stderr, flush=True)
    return rows


def train_speed(name: str, opts, precision: str) -> float:
    """Median training images/s of one model (for table 2 when table 1 was not run)."""
    torch.manual_seed(0)
    case = train_case(create_model(name), opts.batch_size, precision, opts.device)
    return median(interleave({"train": case}, opts.repeats, opts.min_seconds, opts.device, opts.warmup)["train"])

