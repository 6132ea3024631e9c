"""What folding batch norm into the convolutions does to inference speed, in PyTorch and in
onnxruntime, measured side by side (``convzoo export <model or checkpoint> --time``).

Four forms of one net take turns (``timing.interleave``): PyTorch eager as trained and with batch norm
folded (``fuse_conv_bn``), and onnxruntime on the ONNX graph exported without and with the folding.
Latency is at batch 1, throughput at ``batch``; fp32, contiguous (NCHW) inputs, the threads torch
uses. It prints a table and asserts nothing.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from convzoo.models.fuse import fuse_conv_bn
from convzoo.models.onnx_export import INPUT, export_onnx, onnx_session

from .machine import summary
from .tables import records_table
from .timing import Case, interleave, median


def _torch_case(net, x: torch.Tensor) -> Case:
    return Case(lambda: net(x), work=x.shape[0], context=torch.inference_mode)


def _onnx_case(session, x: torch.Tensor) -> Case:
    feed = {INPUT: x.numpy()}
    return Case(lambda: session.run(None, feed), work=x.shape[0])


def fused_timing(net: torch.nn.Module, *, batch: int = 256, repeats: int = 7, min_seconds: float = 0.5,
                 input_shape=(3, 32, 32)) -> str:
    """The table: per runtime, ms at batch 1 and images/s at ``batch``, unfused and fused, and their ratios."""
    net = net.float().eval()
    forms = {("PyTorch", "unfused"): net, ("PyTorch", "fused"): fuse_conv_bn(net)}
    with tempfile.TemporaryDirectory() as tmp:
        for fused in (False, True):
            path = export_onnx(net, Path(tmp) / f"{fused}.onnx", input_shape=input_shape, fuse=fused)
            forms["onnxruntime", "fused" if fused else "unfused"] = onnx_session(path)
        cases = {}
        for size in (1, batch):
            x = torch.randn(size, *input_shape)
            for (runtime, form), target in forms.items():
                make = _torch_case if runtime == "PyTorch" else _onnx_case
                cases[runtime, form, size] = make(target, x)
        rates = {key: median(values) for key, values in interleave(cases, repeats, min_seconds, torch.device("cpu")).items()}
    rows = []
    for runtime in ("PyTorch", "onnxruntime"):
        ms = {form: 1e3 / rates[runtime, form, 1] for form in ("unfused", "fused")}
        ips = {form: rates[runtime, form, batch] for form in ("unfused", "fused")}
        rows.append({"runtime": runtime, "ms bs1 unfused": ms["unfused"], "ms bs1 fused": ms["fused"],
                     "latency ratio": ms["fused"] / ms["unfused"], f"img/s bs{batch} unfused": ips["unfused"],
                     f"img/s bs{batch} fused": ips["fused"], "throughput ratio": ips["fused"] / ips["unfused"]})
    name = getattr(net, "name", type(net).__name__)
    return (f"{name}: {summary()}; fp32, NCHW, medians of {repeats} interleaved repeats of at least "
            f"{min_seconds:g} s\n\n{records_table(rows)}")
