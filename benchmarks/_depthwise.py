"""Table 4: what makes the depthwise / grouped-convolution models fast here, measured side by side.

MobileNetV2 and ShuffleNetV2 spend their time in depthwise 3x3 convolutions (groups = channels)
and 1x1 convolutions on large activations: little arithmetic per byte, so memory layout, the
convolution backend and the batch size matter more than for ResNets. Each setting changes one
thing from train.py's default (channels_last, oneDNN on, training batch, all threads, default
precision); all settings of a model are timed round-robin in the same run and reported as
images/s and as the ratio to the default. torch.compile (inductor) only with ``--compile``:
its compile time, the first call's time less one step, is a column of its own.
"""
from __future__ import annotations

import copy
import sys
import time
from contextlib import ExitStack, contextmanager

import torch

from convzoo.models import create_model
from convzoo.training.timing import infer_case, interleave, median, run_steps, train_case


@contextmanager
def num_threads(n: int):
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def settings(opts, default: str) -> list[dict]:
    """Each setting: a name and what it changes from the default."""
    b, threads = opts.batch_size, torch.get_num_threads()
    out = [{"setting": f"default: channels_last, oneDNN, batch {b}, {threads} threads, {default}"},
           {"setting": "NCHW (contiguous)", "channels_last": False},
           {"setting": "oneDNN off", "mkldnn": False},
           {"setting": "NCHW + oneDNN off", "channels_last": False, "mkldnn": False},
           {"setting": f"batch {max(1, b // 2)}", "batch": max(1, b // 2), "train_only": True},
           {"setting": f"batch {2 * b}", "batch": 2 * b, "train_only": True}]
    if threads > 1:
        out.append({"setting": "1 thread", "threads": 1})
    other = "bf16-mixed" if default == "32-true" else "32-true"
    out.append({"setting": f"{other} autocast" if other != "32-true" else "32-true", "precision": other})
    if opts.compile:
        out.append({"setting": "torch.compile (inductor)", "compile": True})
    return out


def _context(s: dict):
    def enter():
        stack = ExitStack()
        if not s.get("mkldnn", True):
            stack.enter_context(torch.backends.mkldnn.flags(enabled=False))
        if "threads" in s:
            stack.enter_context(num_threads(s["threads"]))
        return stack

    return enter


def _compile_seconds(case, device) -> float:
    """Time of the first call (compilation included) less one later call."""
    first = run_steps(case, 1, device)
    return max(0.0, first - run_steps(case, 1, device))


def _cases(net, s: dict, opts, default: str, name: str) -> tuple[dict, float | None]:
    """The setting's train (and infer) cases; for torch.compile also the compile seconds."""
    cases, compile_s = {}, 0.0
    kwargs = dict(channels_last=s.get("channels_last", True), context=_context(s))
    for kind, make, batch in (("train", train_case, s.get("batch", opts.batch_size)),
                              ("infer", infer_case, opts.infer_batch_size)):
        if kind == "infer" and s.get("train_only"):
            continue
        model = copy.deepcopy(net)
        if s.get("compile"):
            model.compile()  # in place, as ClassificationModule(compile=True) does
        cases[kind] = make(model, batch, s.get("precision", default), opts.device, **kwargs)
        if s.get("compile"):
            start = time.perf_counter()
            compile_s += _compile_seconds(cases[kind], opts.device)
            print(f"  compiled {name} ({kind}) in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    return cases, (compile_s if s.get("compile") else None)


def depthwise_rows(names: list[str], opts, default: str) -> list[dict]:
    rows, infer_key = [], f"infer img/s @{opts.infer_batch_size}"
    for name in names:
        torch.manual_seed(0)
        net = create_model(name)
        chosen, cases, compile_s, failed = settings(opts, default), {}, {}, {}
        for i, s in enumerate(chosen):
            try:
                mine, compile_s[i] = _cases(net, s, opts, default, name)
            except Exception as err:  # e.g. inductor without a working C++ compiler: report, go on
                failed[i] = f"{type(err).__name__}: {str(err).splitlines()[0][:80] if str(err) else ''}"
                continue
            cases.update({(i, kind): case for kind, case in mine.items()})
        timed = interleave(cases, opts.repeats, opts.min_seconds, opts.device, opts.warmup)
        rates = {k: median(v) for k, v in timed.items()}
        for i, s in enumerate(chosen):
            train, infer = rates.get((i, "train")), rates.get((i, "infer"))
            rows.append({"model": name, "setting": s["setting"] + (f" (failed: {failed[i]})" if i in failed else ""),
                         "train img/s": train, "train vs default": train and train / rates[(0, "train")],
                         infer_key: infer, "infer vs default": infer and infer / rates[(0, "infer")],
                         "compile s (train + infer)": compile_s.get(i)})
        print(f"  measured {name} in {len(chosen)} settings", file=sys.stderr, flush=True)
    return rows


def winners(rows: list[dict]) -> list[dict]:
    """Per model: the fastest setting for training and for inference, with its ratio to the default."""
    out = []
    infer_key = next(k for k in rows[0] if k.startswith("infer img/s"))
    for name in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == name]
        best_train = max((r for r in mine if r["train img/s"] is not None), key=lambda r: r["train img/s"])
        best_infer = max((r for r in mine if r[infer_key] is not None), key=lambda r: r[infer_key])
        out.append({"model": name, "fastest training": best_train["setting"],
                    "train vs default": best_train["train vs default"],
                    "fastest inference": best_infer["setting"], "infer vs default": best_infer["infer vs default"]})
    return out
