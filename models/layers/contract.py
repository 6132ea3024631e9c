"""The block contract: what every block registered with ``@register_block`` receives and provides.

``Net`` builds each block of a spec as ``cls(in_channels, out_channels, stride=s, **args)`` and
reads back only what ``Block`` lists; the optional members are read here and nowhere else
(``channel_args``, ``reduction``, ``own_init``). ``check_block`` tests one registered block against
the contract (tests/test_blocks.py runs it over every block); run it on a block of your own before
using it in a spec.
"""
from __future__ import annotations

import inspect
from typing import Callable, Protocol, runtime_checkable

import torch
from torch import nn

from ..registry import get_block

# Names other libraries use for what ours call norm_layer / act_layer.
_FOREIGN_NAMES = {"norm": "norm_layer", "norm_type": "norm_layer", "bn": "norm_layer",
                  "act": "act_layer", "activation": "act_layer", "activation_layer": "act_layer",
                  "act_type": "act_layer", "nonlinearity": "act_layer"}


@runtime_checkable
class Block(Protocol):
    """A block maps ``(N, in_channels, H, W)`` to ``(N, out_channels, H / stride, W / stride)``.

    Receives ``__init__(in_channels, out_channels, *, stride=1, <own arguments>, norm_layer="bn",
    act_layer="relu")``:
      - ``in_channels``, ``out_channels`` first, positional. A block whose output width is fixed by
        its input or by its own arguments (a pool, Inception's branch sum) takes ``out_channels=None``.
      - ``stride`` by keyword, always passed by ``Net`` (1 unless the spec says otherwise): a block
        that cannot downsample rejects any other value; an upsampling block reads it as its factor.
      - Its own arguments by keyword; ``norm_layer`` / ``act_layer`` (a name, a module class or None,
        see ``make_norm`` / ``make_act``) where it has a norm / an activation, under those names.
      - It checks its arguments when built and raises ``ValueError`` naming the argument.
    Provides:
      - ``in_channels``, ``out_channels`` (ints): ``Net`` chains blocks by ``out_channels``.
      - ``stride``: how much it downsamples, an int or an ``(h, w)`` pair.
      - ``forward`` keeps channels_last: a channels_last input gives a channels_last output (an
        NCHW copy would make every conv after it run in the slower layout).
    Optional:
      - ``channel_args``, a class attribute: the names of further constructor arguments that are
        channel counts (``Bottleneck``'s ``width``); a net's ``width_mult`` scales them like
        ``out_channels``. Every argument named ``*_channels`` belongs there.
      - ``scale_factor``: an upsampling block's factor; the net's reduction is divided by it.
      - ``init_weights()``: called after ``Net``'s generic init (Kaiming convs, norms at 1 and 0),
        so a block's own rule (a gate bias, a zero-initialised residual branch) wins.
    """

    in_channels: int
    out_channels: int
    stride: int | tuple[int, int]

    def forward(self, x: torch.Tensor) -> torch.Tensor: ...


def channel_args(cls: type) -> tuple[str, ...]:
    """The constructor arguments of block class ``cls`` that ``width_mult`` scales."""
    return tuple(getattr(cls, "channel_args", ()))


def reduction(block: nn.Module) -> float:
    """How much ``block`` shrinks H (and W): its stride, or 1 / scale_factor for an upsampling block."""
    factor = getattr(block, "scale_factor", None)
    if factor is not None:
        return 1 / factor
    stride = block.stride
    return stride[0] if isinstance(stride, tuple) else stride


def own_init(module: nn.Module) -> Callable[[], None] | None:
    """``module``'s own ``init_weights``, to run after the generic init; None if it has none."""
    init = getattr(module, "init_weights", None)
    return init if callable(init) else None


def _positive(value) -> bool:
    values = value if isinstance(value, tuple) else (value,)
    return all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values)


def _signature_problems(cls: type) -> list[str]:
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]  # without self
    names = [p.name for p in params]
    problems = []
    if names[:2] != ["in_channels", "out_channels"]:
        problems.append(f"constructor should start (in_channels, out_channels, ...), got ({', '.join(names[:2])})")
    if "stride" not in names:
        problems.append("constructor takes no stride argument")
    for p in params[2:]:
        if p.kind is p.POSITIONAL_ONLY or (p.kind is p.POSITIONAL_OR_KEYWORD and p.default is p.empty):
            problems.append(f"constructor argument {p.name} should be keyword, or positional with a default")
        if p.name in _FOREIGN_NAMES:
            problems.append(f"constructor argument {p.name} should be called {_FOREIGN_NAMES[p.name]}")
    scaled = channel_args(cls)
    if isinstance(getattr(cls, "channel_args", ()), str) or not all(isinstance(a, str) for a in scaled):
        problems.append(f"channel_args should be a tuple of argument names, got {cls.channel_args!r}")
        return problems
    unknown = [a for a in scaled if a not in names]
    if unknown:
        problems.append(f"lists channel_args {unknown} that its constructor does not take")
    unscaled = [n for n in names if n.endswith("_channels") and n not in ("in_channels", "out_channels")
                and n not in scaled]
    if unscaled:
        problems.append(f"takes channel counts {unscaled} that are missing from channel_args")
    return problems


def _instance_problems(block: nn.Module, in_channels: int, out_channels: int | None, size: int) -> list[str]:
    problems = [f"has no {attr} attribute" for attr in ("in_channels", "out_channels", "stride")
                if not hasattr(block, attr)]
    if problems:
        return problems
    if block.in_channels != in_channels:
        problems.append(f"reports in_channels={block.in_channels!r}, built with {in_channels}")
    if isinstance(block.out_channels, tuple) or not _positive(block.out_channels):
        problems.append(f"out_channels should be an integer >= 1, got {block.out_channels!r}")
    elif out_channels is not None and block.out_channels != out_channels:
        problems.append(f"reports out_channels={block.out_channels}, built with {out_channels}")
    if not _positive(block.stride):
        problems.append(f"stride should be an integer >= 1 or a pair of them, got {block.stride!r}")
    factor = getattr(block, "scale_factor", None)
    if factor is not None and not (isinstance(factor, (int, float)) and factor > 0):
        problems.append(f"scale_factor should be a number > 0, got {factor!r}")
    if hasattr(block, "init_weights") and own_init(block) is None:
        problems.append("has an init_weights that is not callable")
    if problems:
        return problems
    for training in (True, False):
        x = torch.randn(2, in_channels, size, size).contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            y = block.train(training)(x)  # (N, out_channels, size / r, size / r)
        mode = "training" if training else "eval"
        if y.dim() != 4 or y.shape[1] != block.out_channels:
            problems.append(f"gives shape {tuple(y.shape)} in {mode} mode, but out_channels={block.out_channels}")
            break
        if not y.is_contiguous(memory_format=torch.channels_last):
            problems.append(f"turns a channels_last input into an NCHW output in {mode} mode")
        r = reduction(block)
        if abs(size / y.shape[2] - r) > 0.25 * r:  # valid convs and odd pools round the size a little
            problems.append(f"maps size {size} to {y.shape[2]}, not what its stride/scale_factor ({r:g}) says")
    return problems


def check_block(name: str, in_channels: int, out_channels: int | None = None, *, size: int = 16,
                **args) -> list[str]:
    """Everything block ``name`` breaks of the contract when built as ``cls(in_channels,
    out_channels, **args)`` and run on a ``size`` x ``size`` input; [] when it keeps it."""
    cls = get_block(name)
    prefix = f"block {name!r} ({cls.__name__})"
    problems = _signature_problems(cls)
    try:
        block = cls(in_channels, out_channels, **args)
    except Exception as err:  # noqa: BLE001 - reported, with the arguments that failed
        call = ", ".join([repr(in_channels), repr(out_channels)] + [f"{k}={v!r}" for k, v in args.items()])
        problems.append(f"cannot be built as {cls.__name__}({call}): {err}")
    else:
        if not isinstance(block, nn.Module):
            problems.append(f"builds a {type(block).__name__}, not an nn.Module")
        else:
            problems += _instance_problems(block, in_channels, out_channels, size)
    return [f"{prefix} {p}" for p in problems]
