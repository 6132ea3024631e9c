"""What folding batch norm into the convolutions does to inference speed, and where onnxruntime
stands, measured side by side (``convzoo export <model or checkpoint> --time``).

Three forms of one net take turns (``timing.interleave``): PyTorch eager as trained, PyTorch eager
with batch norm folded (``fuse_conv_bn``), and onnxruntime on the exported graph. There is no
"unfolded" ONNX form to time: torch.onnx's graph optimiser folds batch norm into the convolutions by
itself (resnet20: 19 BatchNormalization nodes with ``optimize=False``, none with the default), and
onnxruntime does it again when it loads a graph. Latency is at batch 1, throughput at ``batch``;
fp32, contiguous (NCHW) inputs, the threads torch uses. It prints a table and asserts nothing.
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

FORMS = ("PyTorch eager", "PyTorch eager, batch norm folded", "onnxruntime (exported graph)")


def _torch_case(net, x: torch.Tensor) -> Case:
    return Case(lambda: net(x), work=x.shape[0], context=torch.inference_mode)


def _onnx_case(session, x: torch.Tensor) -> Case:
    feed = {INPUT: x.numpy()}
    return Case(lambda: session.run(None, feed), work=x.shape[0])


def fused_timing(net: torch.nn.Module, *, batch: int = 256, repeats: int = 7, min_seconds: float = 0.5,
                 input_shape=(3, 32, 32)) -> str:
    """The table: per form, ms at batch 1, images/s at ``batch``, and its speed-up over PyTorch eager at both."""
    net = net.float().eval()
    with tempfile.TemporaryDirectory() as tmp:
        session = onnx_session(export_onnx(net, Path(tmp) / "model.onnx", input_shape=input_shape))
        targets = dict(zip(FORMS, (net, fuse_conv_bn(net), session)))
        cases = {}
        for size in (1, batch):
            x = torch.randn(size, *input_shape)
            for form, target in targets.items():
                cases[form, size] = (_onnx_case if target is session else _torch_case)(target, x)
        timed = interleave(cases, repeats, min_seconds, torch.device("cpu"))
    rates = {key: median(values) for key, values in timed.items()}
    base = FORMS[0]
    rows = [{"form": form, "ms bs1": 1e3 / rates[form, 1], f"img/s bs{batch}": rates[form, batch],
             "speed-up bs1": rates[form, 1] / rates[base, 1],
             f"speed-up bs{batch}": rates[form, batch] / rates[base, batch]} for form in FORMS]
    name = getattr(net, "name", type(net).__name__)
    return (f"{name}: {summary()}; fp32, NCHW, medians of {repeats} interleaved repeats of at least "
            f"{min_seconds:g} s\n\n{records_table(rows)}")
