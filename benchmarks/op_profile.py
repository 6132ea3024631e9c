"""Where a training step's time goes: torch.profiler per operator, per model, precision and memory format.

    python benchmarks/op_profile.py                                   # the efficient families (long)
    python benchmarks/op_profile.py --models mobilenet_v1 --precisions fp32 --formats channels_last
    python benchmarks/op_profile.py --steps 2 --warmup 1 --out docs/profile.md
    python benchmarks/op_profile.py --quick --models eff_separable    # smoke test: batch 8, one step

The step is ``convzoo.training.timing.train_case``, what train.py does per batch: forward under the
precision's autocast, cross-entropy, backward, SGD (Nesterov) step, on a random CIFAR-sized batch,
channels_last or contiguous (NCHW) weights and inputs. After ``--warmup`` untimed steps, ``--steps``
steps run under the CPU profiler (``record_shapes=True``); each is timed by ``timing.run_steps``
(perf_counter), so the step time printed is the median of the *profiled* steps, profiler overhead
included; the last warm-up step, unprofiled, is printed beside it to show that overhead. Shares
(% of step) are of the mean profiled step, since the self times are summed over all profiled steps.

Per operator: self CPU time (time in the op itself, not its children) per step, and its phase: an
op is ``backward`` if an ancestor is an autograd node (``autograd::engine::evaluate_function: ...``),
``optimizer`` under ``Optimizer.step``/``zero_grad``, else ``forward`` (the loss included).
Convolutions are labelled by kind from the shapes of their outermost convolution op (input C,
weight [O, C/g, k, k]): ``dense`` (g = 1), ``grouped`` (1 < g < C), ``depthwise`` (g = C).
Classes: every event takes the class of its outermost ancestor (or itself) whose name matches one
(see CLASSES), so the im2col copies inside a slow convolution count as convolution, and the copy a
channel shuffle's reshape makes counts as shuffle; ``copies`` are the copies and layout conversions
outside those (autocast casts, .contiguous(), clones). It prints numbers and asserts nothing.
"""
from __future__ import annotations

import argparse
import re
import shlex
import sys
import time
from collections import defaultdict
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

from convzoo.training.device import canonical_precision  # noqa: E402
from convzoo.training.machine import machine_rows  # noqa: E402
from convzoo.training.tables import records_table  # noqa: E402
from convzoo.training.timing import as_train_py, median, run_steps, train_case  # noqa: E402

MODELS = ("mobilenet_v1,mobilenet_v2_x1_0,shufflenet_v1_g3,shufflenet_v2_x1_0,eff_standard,eff_separable,"
          "eff_grouped,eff_grouped_shuffle,eff_shuffle")
FORMATS = ("channels_last", "contiguous")
QUICK = dict(batch=8, warmup=1, steps=1, top=3)
# (class, pattern on the lower-cased event name); the first match names an event's class
CLASSES = [("optimizer", r"^optimizer\."),
           ("conv", r"conv"),
           ("batch norm", r"batch_?norm"),
           ("activation", r"relu|hardtanh|clamp|silu|gelu|sigmoid|threshold|hardswish|elu|tanh|mish"),
           ("cat/shuffle", r"aten::cat\b|catbackward|shuffle|aten::(split|chunk|stack|reshape|permute|transpose)\b|"
                           r"(reshape|permute|transpose|view|unsafeview)\w*backward"),
           ("copies", r"copy|contiguous|aten::to\b|clone|reorder|to_dense|to_mkldnn"),
           ("loss", r"cross_entropy|log_softmax|nll_loss")]
SHARES = ("conv", "copies", "batch norm", "activation", "cat/shuffle", "optimizer", "loss", "other")


def parse_args(argv=None) -> argparse.Namespace:
    class Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
        pass

    p = argparse.ArgumentParser(description=__doc__, formatter_class=Formatter)
    p.add_argument("--models", default=MODELS, help="comma-separated zoo model names")
    p.add_argument("--precisions", default="fp32,bf16", help="comma-separated: fp32 (32-true), bf16 (bf16-mixed)")
    p.add_argument("--formats", default=",".join(FORMATS), help=f"comma-separated, from {', '.join(FORMATS)}")
    p.add_argument("--steps", type=int, default=5, help="profiled steps per setting")
    p.add_argument("--warmup", type=int, default=3, help="untimed, unprofiled steps first (oneDNN set-up)")
    p.add_argument("--top", type=int, default=8, help="operators per table, by self CPU time")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--quick", action="store_true", help="smoke test: " + ", ".join(f"{k}={v}" for k, v in QUICK.items()))
    p.add_argument("--out", default=None, help="also write the markdown to this file")
    opts = p.parse_args(argv)
    if opts.quick:
        vars(opts).update(QUICK)
    opts.device = torch.device("cpu")
    try:
        opts.precisions = list(dict.fromkeys(canonical_precision(s.strip(), opts.device)
                                             for s in opts.precisions.split(",") if s.strip()))
    except ValueError as err:
        p.error(f"--precisions: {err}")
    opts.formats = [s.strip() for s in opts.formats.split(",") if s.strip()]
    if set(opts.formats) - set(FORMATS):
        p.error(f"--formats: unknown {', '.join(sorted(set(opts.formats) - set(FORMATS)))}; choose from {', '.join(FORMATS)}")
    opts.models = [s.strip() for s in opts.models.split(",") if s.strip()]
    for key in ("steps", "warmup", "top", "batch"):
        if getattr(opts, key) < 1:
            p.error(f"--{key} should be >= 1, got {getattr(opts, key)}")
    return opts


@lru_cache(maxsize=None)
def _match(name: str) -> str | None:
    low = name.lower()
    return next((c for c, pattern in CLASSES if re.search(pattern, low)), None)


def _conv_kind(event) -> str | None:
    """'depthwise 3x3', 'grouped 1x1 g=3', 'dense 3x3' from a conv op's recorded input shapes, else None."""
    shapes = getattr(event, "input_shapes", None) or []
    at = 1 if "backward" in event.name.lower() else 0  # convolution_backward(grad_output, input, weight, ...)
    if len(shapes) < at + 2 or len(shapes[at]) < 3 or len(shapes[at + 1]) != len(shapes[at]):
        return None
    channels, per_group, kernel = shapes[at][1], shapes[at + 1][1], shapes[at + 1][2:]
    groups = channels // max(per_group, 1)
    size = "x".join(map(str, kernel))
    if groups == 1:
        return f"dense {size}"
    return f"depthwise {size}" if groups == channels else f"grouped {size} g={groups}"


def classify(event, memo: dict) -> tuple[str, str | None, str | None]:
    """(phase, class, conv kind) of one event: the outermost ancestor that has one decides (memoised
    per event: a slow grouped conv in bf16 makes hundreds of thousands of events)."""
    if id(event) in memo:
        return memo[id(event)][1]
    outer = classify(event.cpu_parent, memo) if event.cpu_parent is not None else ("forward", None, None)
    name = event.name
    phase = ("optimizer" if name.startswith("Optimizer.") else
             "backward" if name.startswith("autograd::engine::evaluate_function") or re.search(r"Backward\d*$", name)
             else "forward")
    klass = outer[1] or _match(name)
    # the outermost conv op with shapes sees the real groups (a slow path loops over groups inside)
    kind = outer[2] or (_conv_kind(event) if klass == "conv" and "conv" in name.lower() else None)
    result = (outer[0] if outer[0] != "forward" else phase, klass, kind)
    memo[id(event)] = (event, result)  # holding the event keeps its id from being reused
    return result


def profile_setting(name: str, precision: str, fmt: str, opts) -> dict:
    """Warm up, then profile ``opts.steps`` steps of one model in one setting; per-op totals per step."""
    from convzoo.models import create_model

    torch.manual_seed(0)
    case = train_case(create_model(name), opts.batch, precision, opts.device, channels_last=fmt == "channels_last")
    warm = [run_steps(case, 1, opts.device) for _ in range(opts.warmup)]
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        seconds = [run_steps(case, 1, opts.device) for _ in range(opts.steps)]
    ops, shares = defaultdict(lambda: [0, 0.0]), defaultdict(float)
    memo: dict = {}
    for event in prof.events():
        phase, klass, kind = classify(event, memo)
        klass = klass or "other"
        label = f"{event.name} [{kind}]" if kind and "conv" in event.name.lower() else event.name
        ops[label, phase][0] += 1
        ops[label, phase][1] += event.self_cpu_time_total / 1e3  # microseconds -> ms
        shares[f"conv {kind}" if kind else klass] += event.self_cpu_time_total / 1e3
    # Self times are summed over all profiled steps, so their shares are of the steps' total (the
    # mean step); the median step is what the tables print as the step time, robust to one slow step.
    step_ms, mean_ms, n = 1e3 * median(seconds), 1e3 * sum(seconds) / len(seconds), opts.steps
    rows = [{"operator": label, "phase": phase, "calls/step": calls / n, "self ms/step": ms / n,
             "% of step": 100 * ms / n / mean_ms} for (label, phase), (calls, ms) in ops.items()]
    rows.sort(key=lambda r: -r["self ms/step"])
    return {"model": name, "precision": precision, "format": fmt, "step ms": step_ms, "mean ms": mean_ms,
            "unprofiled ms": 1e3 * warm[-1], "ops": rows, "shares": {k: v / n for k, v in shares.items()}}


def summary_row(result: dict) -> dict:
    """One line of the summary: the dominant class, each convolution kind counted as a class of its
    own (so a batch norm at 40% beats dense 1x1 at 25% even when all convs add up to 43%), and the
    share of every class, the convolutions' split by kind beside."""
    step, shares = result["mean ms"], result["shares"]
    by_class, kinds = defaultdict(float), {}
    for key, ms in shares.items():
        by_class["conv" if key.startswith("conv") else key] += ms
        if key.startswith("conv "):
            kinds[key[5:]] = 100 * ms / step
    top = max(shares, key=shares.get)
    row = {"model": result["model"], "precision": result["precision"], "format": result["format"],
           "step ms": result["step ms"], "dominant": f"{top} ({100 * shares[top] / step:.0f}%)"}
    row.update({f"{c} %": 100 * by_class.get(c, 0.0) / step for c in SHARES})
    row["conv by kind %"] = ", ".join(f"{k} {v:.0f}" for k, v in sorted(kinds.items(), key=lambda kv: -kv[1]))
    return row


def main(argv=None) -> list[dict]:
    """Profile every model x precision x format, print the markdown; returns one result per setting."""
    opts = parse_args(argv)
    command = "python benchmarks/op_profile.py " + shlex.join(sys.argv[1:] if argv is None else list(argv))
    out: list[str] = []

    def emit(text: str) -> None:
        out.append(text)
        print(text, flush=True)

    emit(f"### Machine\n\n`{command}`\n\n{records_table(machine_rows(opts.device, canonical_precision('auto', opts.device)))}\n")
    results, start = [], time.perf_counter()
    with as_train_py():
        for name in opts.models:
            for precision in opts.precisions:
                for fmt in opts.formats:
                    r = profile_setting(name, precision, fmt, opts)
                    results.append(r)
                    total = sum(op["self ms/step"] for op in r["ops"])
                    s = summary_row(r)
                    emit(f"### {name}: {precision}, {fmt}, batch {opts.batch}\n\n"
                         f"Step {r['step ms']:.1f} ms (median of {opts.steps} profiled steps, mean {r['mean ms']:.1f}, perf_counter; "
                         f"last unprofiled warm-up step {r['unprofiled ms']:.1f} ms); operators' self CPU time "
                         f"sums to {total:.1f} ms/step. Dominant: {s['dominant']}; conv {s['conv %']:.0f}% "
                         f"({s['conv by kind %'] or 'none'}), copies {s['copies %']:.0f}%, "
                         f"batch norm {s['batch norm %']:.0f}%, activation {s['activation %']:.0f}%, "
                         f"cat/shuffle {s['cat/shuffle %']:.0f}%.\n\n{records_table(r['ops'][:opts.top])}\n")
    emit(f"### Summary: share of each step by operator class (% of the mean profiled step)\n\n"
         f"{records_table([summary_row(r) for r in results])}\n\nClasses: an op takes the class of its outermost "
         f"ancestor matching one (conv's internal copies count as conv, a shuffle's reshape copy as cat/shuffle); "
         f"'dominant' counts each convolution kind as a class of its own. "
         f"Wall time of this run: {time.perf_counter() - start:.0f} s.\n")
    if opts.out:
        Path(opts.out).write_text("\n".join(out))
    return results


if __name__ == "__main__":
    main()
