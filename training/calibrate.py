"""Choose how a run trains on the machine at hand: precision, memory format and torch.compile.

No single setting is fastest for every model: on a CPU without native bf16, bf16 autocast is
9-14x slower than fp32; channels_last wins for some depthwise nets and loses for others;
torch.compile fuses batch norm and activations, which pays for some nets on some runs (eff_shuffle
1.07x on a 2-core EPYC, resnet20 1.12x) and slows others (eff_separable 0.85x), and costs up to
90 s to compile on 2 cores (docs/profile.md, docs/peers.md). So
``trainer.precision=auto``, ``module.channels_last=auto`` and ``module.compile=auto`` are settled
by measurement: a few training steps of each candidate on random data shaped like the run's
batches, timed round-robin (``timing.interleave``, 5 repeats of at least a second), the fastest
kept if it beats the usual setting (channels_last, eager) by ``margin`` (5%: the same setting timed
twice on a shared 2-core VM differs by a few percent, docs/defaults.md). torch.compile is tried only
in the fastest eager setting and only when the run is long enough to pay its compile time back,
and kept only when it is ``margin`` faster and saves more than twice its compile time.

The measurements are cached per model config, input shape, batch size, machine and torch version in one
JSON file (``calibration.cache``, under ``~/.cache/convzoo`` unless told), so later runs and resumed
runs reuse it at no cost. A run too short to repay a calibration (tests, ``fast_dev_run``) and
finding nothing cached takes the static defaults: channels_last, bf16 only where the hardware
does it natively, no compile. The choice and why are logged and written to the run folder.
"""
from __future__ import annotations

import copy
import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from convzoo.data.folder import default_cache_dir
from .checkpoint_io import temp_path
from .device import PRECISIONS, canonical_precision
from .machine import cpu_name, has_native_bf16
from .timing import interleave, median, run_steps, train_case

log = logging.getLogger(__name__)
AUTO = "auto"


@dataclass(frozen=True)
class Setting:
    precision: str      # Lightning's name: 32-true, bf16-mixed, 16-mixed
    channels_last: bool
    compile: bool = False

    def label(self) -> str:
        return (f"{self.precision}, {'channels_last' if self.channels_last else 'contiguous'}"
                f"{', compiled' if self.compile else ''}")


@dataclass
class Choice:
    setting: Setting
    source: str                                     # "fixed", "cached", "measured", "default: ..."
    rates: dict[str, float] = field(default_factory=dict)  # images/s per setting label
    compile_seconds: float | None = None
    note: str = ""
    seconds: float | None = None                    # wall time this run spent measuring (None: it measured nothing)

    def describe(self) -> str:
        measured = "; ".join(f"{k} {v:,.0f} img/s" for k, v in sorted(self.rates.items(), key=lambda kv: -kv[1]))
        return (f"training setting: {self.setting.label()} ({self.source})"
                + (f"; measured {measured}" if measured else "")
                + (f"; compile {self.compile_seconds:.0f} s" if self.compile_seconds is not None else "")
                + (f"; {self.note}" if self.note else ""))

    def to_dict(self) -> dict:
        return {"setting": asdict(self.setting), "label": self.setting.label(), "source": self.source,
                "rates": self.rates, "compile_seconds": self.compile_seconds, "seconds": self.seconds,
                "note": self.note}


def _flag(value, name: str) -> list[bool]:
    """A true / false / auto option: ``auto`` -> both candidates, else that one (checked)."""
    if str(value) == AUTO:
        return [True, False]
    if not isinstance(value, bool):
        raise ValueError(f"{name} should be true, false or auto, got {value!r}")
    return [value]


def eager_candidates(precision, channels_last, device: torch.device) -> list[Setting]:
    """The eager settings worth timing. bf16 (or fp16 on a GPU) only where the hardware runs it
    natively: elsewhere it is emulated, an order of magnitude slower, and not worth a step."""
    if str(precision) == AUTO:
        fast = canonical_precision(AUTO, device)
        precisions = list(dict.fromkeys([fast, "32-true"]))
        if device.type == "cpu" and not has_native_bf16():
            precisions = ["32-true"]
    else:
        precisions = [_precision(precision, device)]
    layouts = _flag(channels_last, "module.channels_last")
    return [Setting(p, cl) for p in precisions for cl in layouts]


def _precision(precision, device: torch.device) -> str:
    """Lightning's name for ``precision``; one convzoo does not time (``64-true``, ``bf16-true``, ...)
    is passed to Lightning as it is, and the run is not calibrated."""
    try:
        return canonical_precision(precision, device)
    except ValueError:
        return str(precision)


def default_setting(precision, channels_last, compile_, device: torch.device) -> Setting:
    """What a run that is not calibrated trains with: the static defaults for whatever is ``auto``."""
    return Setting(_precision(precision, device),
                   True if str(channels_last) == AUTO else bool(channels_last),
                   False if str(compile_) == AUTO else bool(compile_))


def cache_key(model_cfg: dict, input_shape, batch_size: int, device: torch.device, candidates) -> str:
    """What a choice depends on: the net, the batch, the machine, the software, the candidates."""
    facts = {"model": model_cfg, "input": list(input_shape), "batch": batch_size, "device": str(device.type),
             "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
             "cpu": cpu_name(), "capability": torch.backends.cpu.get_cpu_capability(),
             "threads": torch.get_num_threads(), "torch": torch.__version__, "candidates": candidates}
    return hashlib.sha256(json.dumps(facts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def default_cache_path() -> Path:
    """Beside the decoded data sets: $CONVZOO_CACHE_DIR, else ~/.cache/convzoo."""
    return Path(default_cache_dir()) / "calibration.json"


def read_cache(path: Path) -> dict:
    """The cached choices; an unreadable or corrupt cache counts as empty (it is only a cache)."""
    try:
        data = json.loads(Path(path).read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def write_cache(path: Path, key: str, record: dict) -> None:
    """Add one choice; written to a temporary file and renamed, so a crash never leaves half a file."""
    path = Path(path)
    data = read_cache(path)
    data[key] = record
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_path(path)
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        tmp.replace(path)
    except OSError as err:  # a read-only home: the run goes on, uncached
        log.warning("could not write the calibration cache %s: %s", path, err)


def time_settings(net: nn.Module, settings: list[Setting], batch_size: int, input_shape, num_classes: int,
                  device: torch.device, repeats: int = 5, warmup: int = 2,
                  min_seconds: float = 1.0) -> dict[Setting, float]:
    """Training images/s of each setting (median of ``repeats`` timings of at least ``min_seconds``
    each, round-robin), each on
    its own copy of ``net``; the caller's net and RNG state are left as they were."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        cases = {s: train_case(copy.deepcopy(net), batch_size, s.precision, device, channels_last=s.channels_last,
                               input_shape=tuple(input_shape), num_classes=num_classes) for s in settings}
        rates = interleave(cases, repeats, min_seconds, device, warmup)
    return {s: median(v) for s, v in rates.items()}


def time_compiled(net: nn.Module, setting: Setting, batch_size: int, input_shape, num_classes: int,
                  device: torch.device, repeats: int = 5, warmup: int = 2,
                  min_seconds: float = 1.0) -> tuple[float, float]:
    """(compile seconds, images/s) of ``net`` compiled in ``setting``: the first step's time less a
    later step's is the compile time (inductor's cache makes the run's own compile cheaper)."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        model = copy.deepcopy(net)
        model.compile()
        case = train_case(model, batch_size, setting.precision, device, channels_last=setting.channels_last,
                          input_shape=tuple(input_shape), num_classes=num_classes)
        first = run_steps(case, 1, device)
        rate = median(interleave({"c": case}, repeats, min_seconds, device, warmup)["c"])
    return max(0.0, first - batch_size / rate), rate


def choose(net: nn.Module, model_cfg: dict, *, precision, channels_last, compile_, batch_size: int,
           input_shape, num_classes: int, planned_steps: int, device: torch.device, cache: Path | None = None,
           min_steps: int = 1000, compile_min_minutes: float = 15.0, margin: float = 1.05,
           enabled: bool = True, planned_seconds: float | None = None, min_seconds: float = 120.0) -> Choice:
    """The setting a run of ``planned_steps`` steps trains with; see the module docstring. The cache
    keeps measurements, not decisions: a short and a long run of the same model share the eager
    timings, and each decides for itself whether compiling pays. A run sized in time (a time budget)
    gives ``planned_seconds`` instead: it is calibrated when it lasts ``min_seconds`` or more, and its
    steps are what the fastest eager setting does in that time."""
    _flag(compile_, "module.compile")
    fallback = default_setting(precision, channels_last, compile_, device)
    candidates = eager_candidates(precision, channels_last, device)
    try_compile = str(compile_) == AUTO
    if any(s.precision not in PRECISIONS for s in candidates):
        return Choice(fallback, f"default: precision {fallback.precision} is not one calibration times")
    if len(candidates) == 1 and not try_compile:
        only = candidates[0]
        return Choice(Setting(only.precision, only.channels_last, bool(compile_)), "fixed")
    cache = Path(cache) if cache else default_cache_path()
    key = cache_key(model_cfg, input_shape, batch_size, device, [s.label() for s in candidates])
    record = read_cache(cache).get(key) or {}
    known = record.get("rates") if isinstance(record.get("rates"), dict) else {}
    long_enough = planned_steps >= min_steps if planned_seconds is None else planned_seconds >= min_seconds
    may_measure = enabled and long_enough
    start, measured = time.perf_counter(), False
    if all(s.label() in known for s in candidates):
        source = "cached"
    elif may_measure:
        known.update({s.label(): r for s, r in time_settings(net, candidates, batch_size, input_shape,
                                                              num_classes, device).items()})
        source, measured = "measured", True
    else:
        why = ("calibration off" if not enabled else f"run of {planned_steps} steps < calibration.min_steps={min_steps}"
               if planned_seconds is None else f"run of {planned_seconds:.0f} s < calibration.min_seconds={min_seconds:g}")
        return Choice(fallback, f"default: {why}")

    best = max(candidates, key=lambda s: known[s.label()])
    usual = Setting(fallback.precision, fallback.channels_last)
    if usual in candidates and known[best.label()] < margin * known[usual.label()]:
        best = usual  # within the noise of a few steps: keep the setting every other run uses
    eager_rate = known[best.label()]
    if planned_seconds is not None:
        planned_steps = int(planned_seconds * eager_rate / batch_size)
    compiled = Setting(best.precision, best.channels_last, True)
    run_minutes = planned_steps * batch_size / eager_rate / 60
    choice = Choice(best, source, {s.label(): known[s.label()] for s in candidates}, record.get("compile_seconds"))
    if try_compile and compiled.label() not in known and may_measure and run_minutes >= compile_min_minutes:
        choice.compile_seconds, known[compiled.label()] = time_compiled(net, best, batch_size, input_shape,
                                                                        num_classes, device)
        measured = True
    if try_compile and compiled.label() in known:
        rate = choice.rates[compiled.label()] = known[compiled.label()]
        saved = planned_steps * batch_size * (1 / eager_rate - 1 / rate)
        # A run compiles a training graph and an evaluation graph: count the compile time twice.
        if rate >= margin * eager_rate and saved > 2 * (choice.compile_seconds or 0.0):
            choice.setting = compiled
        choice.note = (f"compiled {rate / eager_rate:.2f}x eager, {saved / 60:.1f} min saved over a "
                       f"{run_minutes:.0f} min run for {choice.compile_seconds or 0:.0f} s of compiling")
    elif try_compile:
        choice.note = (f"compile not tried: a {run_minutes:.1f} min run (< calibration.compile_min_minutes="
                       f"{compile_min_minutes:g})")
    if measured:
        choice.seconds = round(time.perf_counter() - start, 1)
        choice.note += f"; calibrated in {choice.seconds:.0f} s"
        write_cache(cache, key, {"rates": known, "compile_seconds": choice.compile_seconds})
    else:
        choice.note += f"; from {cache}"
    return choice
