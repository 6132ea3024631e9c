"""Per-layer complexity: output shapes, parameters, MACs, activation memory, receptive field.

``complexity(model, (3, 32, 32))`` runs one forward pass (eval mode, no grad; every module's
train/eval flag is restored) and returns a ``ComplexityReport``: one ``LayerStats`` row per call
of a leaf module (a module called twice gives two rows) plus totals. What is counted, exactly:

- MACs (multiply-accumulates; FLOPs = 2 x MACs), per torch op wherever it runs, added to the leaf
  module running it (ops outside any leaf, e.g. a functional conv in a parent, reach the totals
  only). N = batch: conv1d/2d/3d ``N C_out prod(out spatial) (C_in/groups) prod(K)``, i.e.
  ``H_out W_out K^2 (C_in/groups) C_out`` per image; conv_transpose ``N C_in prod(in spatial)
  (C_out/groups) prod(K)``; linear ``in * out`` per output vector (times all leading dims);
  matmul/mm/bmm/addmm/baddbmm ``output elements * inner dim``. FlopCounterMode counts these same
  ops, so ``total_macs`` equals ``flop_counter_macs``. NOT counted: biases, norms, activations,
  pooling, interpolation, elementwise ops (residual adds, gates, shuffles), softmax, attention
  kernels, and ops inside a Python function that is itself one ``__torch_function__`` op.
- MACs and activation bytes cover the whole batch (``batch_size=1``: per image).
- params: per row the leaf's own parameters; ``total_params`` counts each parameter once
  (= ``sum(p.numel() for p in model.parameters())``), however often its module runs.
- activation bytes: per row the leaf's output tensors; the total sums only outputs that do not
  alias an input (in-place ReLU, Identity, views add nothing): roughly what backprop keeps.

Receptive field (theoretical, Araujo et al., Distill 2019) in input pixels: a TorchFunctionMode
tags each tensor (by identity) with (size r, jump j) per trailing spatial dim, (1, 1) on the input.
conv, pool, unfold: ``r += D (K-1) j; j *= S``; conv_transpose: r grows by the widest run of input
pixels one output reads, ``j /= S``; interpolate: ``r += (taps-1) j`` (nearest 1, linear 2, bicubic
4), ``j *= in/out``, so j may be fractional (floats throughout; r can then be a pixel short unless
the scale is 2); adaptive pools: widest window, ``j *= in/out``. Any other op (add, cat, norm, view)
takes the max r and max j over its tagged inputs: branches give the max over paths. An output with
no spatial extent left (1x1 map or < 3 dims: global pool, flatten, squeeze-excite) is *global*
(``rf_global``; size = jump = the input's largest spatial size). Other sizes are not capped at the
input (padding lets windows overhang). Rows give the max over dims. Matmul (attention) mixing is missed.
"""
from __future__ import annotations

import math
import re
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import FlopCounterMode
from torch.utils.weak import WeakIdKeyDictionary

from convzoo.checks import check_positive

GLOBAL = "global"
_CONV = {"conv1d", "conv2d", "conv3d"}
_CONV_T = {"conv_transpose1d", "conv_transpose2d", "conv_transpose3d"}
_MATMUL = {"matmul", "__matmul__", "mm", "bmm", "addmm", "baddbmm"}
_POOL = {f"{p}_pool{n}d{s}" for p in ("max", "avg", "lp") for n in (1, 2, 3) for s in ("", "_with_indices")}
_TAPS = {"nearest": 1, "nearest-exact": 1, "linear": 2, "bilinear": 2, "trilinear": 2, "bicubic": 4}


@dataclass
class LayerStats:
    name: str                  # module path in the model
    type: str                  # class name
    output_shape: tuple        # first output tensor, batch excluded
    params: int                # the module's own parameters
    macs: int
    activation_bytes: int      # all output tensors
    rf_size: float | None      # receptive field of the output (None: no spatial input)
    rf_jump: float | None      # distance in input pixels between neighbouring outputs
    rf_global: bool = False    # the output sees the whole input


@dataclass
class ComplexityReport:
    rows: list[LayerStats]
    total_params: int
    total_macs: int
    total_activation_bytes: int
    rf_size: float | None      # receptive field of the model's output
    rf_jump: float | None
    rf_global: bool
    other_macs: int = 0        # MACs of ops outside any leaf module (included in total_macs)

    @property
    def max_local_rf(self) -> float | None:
        """Largest non-global receptive field of any row (what a global pool summarises)."""
        return max((r.rf_size for r in self.rows if r.rf_size is not None and not r.rf_global), default=None)

    def to_dicts(self) -> list[dict]:
        return [asdict(r) for r in self.rows]

    def table(self, max_rows: int | None = None) -> str:
        head = ("layer", "type", "output", "params", "MACs", "act", "RF", "jump")
        shown = self.rows if max_rows is None else self.rows[:max_rows]
        body = [(r.name, r.type, "x".join(map(str, r.output_shape)), f"{r.params:,}", si(r.macs),
                 si(r.activation_bytes) + "B", *_rf_text(r.rf_size, r.rf_jump, r.rf_global)) for r in shown]
        total = ("total", "", "", f"{self.total_params:,}", si(self.total_macs),
                 si(self.total_activation_bytes) + "B", *_rf_text(self.rf_size, self.rf_jump, self.rf_global))
        widths = [max(len(row[i]) for row in (head, *body, total)) for i in range(len(head))]

        def line(row):  # text columns left-aligned, numbers right-aligned
            return "  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))

        rule = "-" * len(line(head))
        lines = [line(head), rule, *map(line, body)]
        if len(shown) < len(self.rows):
            lines.append(f"... {len(self.rows) - len(shown)} more rows")
        lines += [rule, line(total)]
        if self.other_macs:
            lines.append(f"(total includes {si(self.other_macs)} MACs of ops outside leaf modules)")
        return "\n".join(s.rstrip() for s in lines)

    def __str__(self) -> str:
        return self.table()


def si(n: float) -> str:
    """1234567 -> '1.23M' (G, M, K suffixes)."""
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= div:
            return f"{n / div:.2f}{unit}"
    return f"{n:.0f}"


def _rf_text(size, jump, is_global) -> tuple[str, str]:
    if is_global:
        return GLOBAL, ""
    return ("-", "-") if size is None else (f"{size:g}", f"{jump:g}")


# --- MACs and receptive-field rules, one torch op at a time -----------------------------------

def _tensors(tree) -> list[torch.Tensor]:
    return [t for t in tree_flatten(tree)[0] if isinstance(t, torch.Tensor)]


def _arg(args, kwargs, i, name, default=None):
    return kwargs[name] if name in kwargs else args[i] if len(args) > i else default


def _tup(value, n: int) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * n


def _op_macs(name: str, args, kwargs, out: torch.Tensor) -> int:
    if name in _CONV or name == "linear":  # weight (C_out, C_in / groups, *K) or (out, in)
        return out.numel() * math.prod(_arg(args, kwargs, 1, "weight").shape[1:])
    if name in _CONV_T:  # weight (C_in, C_out / groups, *K); the cost is per *input* pixel
        return args[0].numel() * math.prod(_arg(args, kwargs, 1, "weight").shape[1:])
    if name in _MATMUL:
        return out.numel() * (args[1] if name in ("addmm", "baddbmm") else args[0]).shape[-1]
    return 0


def _merge(anns):
    """Max over paths, per dim (dims aligned from the end; missing dims count as (1, 1))."""
    if GLOBAL in anns:
        return GLOBAL
    n = max(len(a) for a in anns)
    anns = [((1.0, 1.0),) * (n - len(a)) + a for a in anns]
    return tuple((max(a[i][0] for a in anns), max(a[i][1] for a in anns)) for i in range(n))


def _window(ann, spans, scales):
    """A sliding window over the trailing dims: ``r += span * j; j *= scale``."""
    n = len(spans)
    ann = ((1.0, 1.0),) * max(0, n - len(ann)) + ann
    return ann[:len(ann) - n] + tuple((r + s * j, j * c) for (r, j), s, c in zip(ann[len(ann) - n:], spans, scales))


def _transposed_span(k: int, s: int, d: int) -> int:
    """Widest run of input pixels (last - first) that one output pixel of a transposed conv reads."""
    runs = [[(o - t * d) // s for t in range(k) if (o - t * d) % s == 0] for o in range(s)]  # period s
    return max((max(r) - min(r) for r in runs if r), default=0)


def _adaptive_span(i: int, o: int) -> int:
    """Widest window of an adaptive pool from i to o cells, minus one (PyTorch's floor/ceil split)."""
    return max(-(-(c + 1) * i // o) - c * i // o for c in range(o)) - 1


def _propagate(name, args, kwargs, ann, x: torch.Tensor, out: torch.Tensor):
    """Receptive-field tag of ``out``, given the merged tag ``ann`` of the op's inputs (``x``: the first)."""
    if ann == GLOBAL:
        return GLOBAL
    if name in _CONV or name in _CONV_T:
        k = tuple(_arg(args, kwargs, 1, "weight").shape[2:])
        s = _tup(_arg(args, kwargs, 3, "stride", 1), len(k))
        d = _tup(_arg(args, kwargs, 7 if name in _CONV_T else 5, "dilation", 1), len(k))
        ann = (_window(ann, [di * (ki - 1) for ki, di in zip(k, d)], s) if name in _CONV else
               _window(ann, [_transposed_span(*a) for a in zip(k, s, d)], [1 / si for si in s]))
    elif name in _POOL or name == "unfold":  # unfold(input, kernel_size, dilation, padding, stride)
        off, n = int(name.startswith("lp_")), int(re.search(r"(\d)d|$", name).group(1) or 2)
        k = _tup(_arg(args, kwargs, 1 + off, "kernel_size"), n)
        s = _arg(args, kwargs, 4, "stride", 1) if name == "unfold" else _arg(args, kwargs, 2 + off, "stride")
        s = k if s is None or s == [] or s == () else _tup(s, n)  # pools: stride defaults to kernel
        d = _tup(_arg(args, kwargs, 2, "dilation", 1) if name == "unfold" else
                 _arg(args, kwargs, 4, "dilation", 1) if name.startswith("max") else 1, n)
        ann = _window(ann, [di * (ki - 1) for ki, di in zip(k, d)], s)
    elif name == "interpolate" or name.startswith("adaptive_"):
        n = out.ndim - 2
        ins, outs = x.shape[-n:], out.shape[-n:]
        mode = _arg(args, kwargs, 3, "mode", "nearest")
        spans = ([_adaptive_span(i, o) for i, o in zip(ins, outs)] if name.startswith("adaptive_") or mode == "area"
                 else [_TAPS.get(mode, 2) - 1] * n)
        ann = _window(ann, spans, [i / o for i, o in zip(ins, outs)])
    # An output with no spatial extent left summarises the whole map (global pool, flatten, SE).
    if x.ndim >= 3 and math.prod(x.shape[2:]) > 1 and (out.ndim < 3 or math.prod(out.shape[2:]) == 1):
        return GLOBAL
    return ann


class _Tracer(TorchFunctionMode):
    """Counts MACs per op and carries receptive-field tags from each op's inputs to its outputs."""

    def __init__(self):
        super().__init__()
        self.rf = WeakIdKeyDictionary()  # tensor -> GLOBAL or ((size, jump), ...) per spatial dim
        self.stack: list[int] = []       # MACs of the leaf-module calls in progress
        self.other_macs = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)  # the mode is off inside this call: nested ops are not seen
        outs = _tensors(out)
        if not outs:
            return out
        name = getattr(func, "__name__", "")
        macs = _op_macs(name, args, kwargs, outs[0])
        if self.stack:  # inside a leaf module's call
            self.stack[-1] += macs
        else:
            self.other_macs += macs
        ins = [t for t in _tensors((args, kwargs)) if t in self.rf]
        if ins:
            ann = _propagate(name, args, kwargs, _merge([self.rf[t] for t in ins]), ins[0], outs[0])
            for t in outs:
                self.rf[t] = ann
        return out


# --- public entry points ----------------------------------------------------------------------

@contextmanager
def _eval_mode(model: nn.Module):
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, flag in flags:  # per module, so a frozen submodule stays in eval
            m.training = flag


def _example_input(model, input_size, batch_size, device) -> torch.Tensor:
    check_positive("input_size", tuple(input_size))
    check_positive("batch_size", batch_size)
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    return torch.randn(batch_size, *input_size, device=device, dtype=dtype)


def complexity(model: nn.Module, input_size=(3, 32, 32), *, batch_size: int = 1,
               device="cpu") -> ComplexityReport:
    """Per-layer report of one forward pass on a random ``(batch_size, *input_size)`` input.

    The model must already be on ``device``; the input takes the dtype of its parameters.
    """
    x = _example_input(model, input_size, batch_size, device)
    extent = float(max(input_size[1:], default=1))
    tracer, rows, new_bytes, handles = _Tracer(), [], [], []

    def rf_of(t):
        ann = tracer.rf.get(t)
        if ann == GLOBAL:
            return extent, extent, True
        return (max(r for r, _ in ann), max(j for _, j in ann), False) if ann else (None, None, False)

    def on_exit(name):
        def hook(module, args, output):
            macs, outs = tracer.stack.pop(), _tensors(output)
            in_storages = {t.untyped_storage().data_ptr() for t in _tensors(args)}
            sizes = [t.numel() * t.element_size() for t in outs]
            new_bytes.append(sum(b for b, t in zip(sizes, outs) if t.untyped_storage().data_ptr() not in in_storages))
            rows.append(LayerStats(name or type(module).__name__, type(module).__name__,
                                   tuple(outs[0].shape[1:]) if outs else (),
                                   sum(p.numel() for p in module.parameters(recurse=False)), macs, sum(sizes),
                                   *(rf_of(outs[0]) if outs else (None, None, False))))
        return hook

    try:
        for name, module in model.named_modules():
            if next(module.children(), None) is None:
                handles.append(module.register_forward_pre_hook(lambda m, a: tracer.stack.append(0)))
                handles.append(module.register_forward_hook(on_exit(name)))
        with _eval_mode(model), torch.no_grad(), tracer:
            tracer.rf[x] = tuple((1.0, 1.0) for _ in input_size[1:])
            outs = _tensors(model(x))
    finally:
        for h in handles:
            h.remove()
    return ComplexityReport(rows, sum(p.numel() for p in model.parameters()),
                            sum(r.macs for r in rows) + tracer.other_macs, sum(new_bytes),
                            *(rf_of(outs[0]) if outs else (None, None, False)), tracer.other_macs)


def flop_counter_macs(model: nn.Module, input_size=(3, 32, 32), *, batch_size: int = 1, device="cpu") -> float:
    """``FlopCounterMode``'s total FLOPs / 2 for one eval forward pass: a cross-check of our MACs."""
    x = _example_input(model, input_size, batch_size, device)
    with _eval_mode(model), torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() / 2
