"""ONNX out: a net as an ONNX graph for runtimes outside PyTorch (onnxruntime, TensorRT, OpenVINO).

``torch.onnx.export(..., dynamo=True)`` traces the net with ``torch.export`` (a dynamic batch
dimension, so one file serves any batch size) after batch norm is folded into the convolutions
(``fuse_conv_bn``): an inference graph has no use for batch statistics, and a runtime then sees
one conv where there were two ops. torch.onnx's own graph optimiser folds them too when
``optimize=True``; folding first makes the graph the same either way. ``check_onnx`` runs the file
in onnxruntime and compares its logits with PyTorch's.
"""
from __future__ import annotations

import logging
import os
import warnings
from contextlib import contextmanager, redirect_stdout
from io import StringIO
from pathlib import Path

import torch
from torch import nn

from .fuse import fuse_conv_bn

INPUT, OUTPUT = "images", "logits"


def _needs(package: str):
    import importlib

    try:
        return importlib.import_module(package)
    except ImportError:
        raise ImportError(f"ONNX export needs {package}: pip install 'convzoo[export]' "
                          f"(onnx, onnxscript, onnxruntime)") from None


@contextmanager
def _quiet():
    # the exporter prints its progress ("[torch.onnx] Obtain model graph ...") and logs each pass
    level = logging.getLogger("torch.onnx").level
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    try:
        with redirect_stdout(StringIO()), warnings.catch_warnings():
            # blocks that record a statistic for monitoring (HighwayBlock's gate mean) set an attribute
            # in forward, which torch.export reports; the exported graph does not need it
            warnings.filterwarnings("ignore", message="The tensor attributes .* were assigned during export")
            yield
    finally:
        logging.getLogger("torch.onnx").setLevel(level)


def export_onnx(net: nn.Module, path: str | os.PathLike, *, input_shape=(3, 32, 32), fuse: bool = True,
                optimize: bool = True) -> Path:
    """Write ``net`` (fp32, eval mode, batch norm folded unless ``fuse=False``) to ``path`` as ONNX with
    input ``images`` (N, C, H, W) and output ``logits``, N dynamic. ``net`` itself is not changed."""
    for package in ("onnx", "onnxscript"):
        _needs(package)
    import copy

    net = copy.deepcopy(net).float().eval()
    if fuse:
        net = fuse_conv_bn(net, inplace=True)
    for module in net.modules():
        # In-place activations cost torch.export's functionalisation about 5x the time with a dynamic
        # batch (mobilenet_v2_x0_5: 10.6 s against 2.1 s); the graph computes the same either way.
        if isinstance(getattr(module, "inplace", None), bool):
            module.inplace = False
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.randn(2, *input_shape)  # 2, not 1: torch.export specialises a size-1 dimension
    with _quiet():
        torch.onnx.export(net, (example,), str(path), dynamo=True, input_names=[INPUT], output_names=[OUTPUT],
                          dynamic_shapes=({0: torch.export.Dim("batch")},), optimize=optimize,
                          external_data=False, verbose=False)
    return path


def onnx_session(path: str | os.PathLike, threads: int | None = None):
    """An onnxruntime CPU session of the file (``threads``: intra-op threads, default torch's count)."""
    ort = _needs("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.log_severity_level = 3  # errors only
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_onnx(session, x: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(session.run([OUTPUT], {INPUT: x.detach().cpu().float().numpy()})[0])


@torch.inference_mode()
def check_onnx(path: str | os.PathLike, net: nn.Module, x: torch.Tensor, atol: float = 1e-4) -> float:
    """Largest absolute difference between onnxruntime's logits for ``x`` and ``net``'s (fp32, eval
    mode); a ValueError when it exceeds ``atol``."""
    expected = net.float().eval()(x)
    diff = (run_onnx(onnx_session(path), x) - expected).abs().max().item()
    if not diff <= atol:
        raise ValueError(f"{path}: onnxruntime's logits differ from PyTorch's by up to {diff:.3g} (> {atol:g})")
    return diff
