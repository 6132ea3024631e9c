"""Speed of the zoo on this machine, as markdown tables: medians over repeats, ratios measured in the same run.

    python benchmarks/speed.py                                  # every table, every model (long)
    python benchmarks/speed.py --models resnet20,mobilenet_v2_x1_0 --repeats 5 --tables models,data,trainer
    python benchmarks/speed.py --tables depthwise --compile     # depthwise settings, torch.compile too
    python benchmarks/speed.py --quick                          # smoke test: tiny batches, one repeat

Tables: ``models`` (first the roofs, measured in the same run: the compute peak per precision,
the best of several matmuls and convolutions, and the memory bandwidth, the best of several
streaming kernels; then per model params, MACs, training images/s and, per training precision,
achieved GFLOP/s, arithmetic intensity AI, the roof (the img/s no step can beat: per layer the
larger of compute time and memory time, summed), the share of that time in memory-bound layers,
and the % of the roof reached; inference images/s and % of its roof; latency), ``data`` (our loaders
against torchvision's DataLoader), ``trainer`` (Lightning as train.py runs it against a bare
loop), ``depthwise`` (what makes MobileNetV2 / ShuffleNetV2 fast here), then ``targets``: the issue's goals with pass/fail.
It prints numbers and asserts nothing about them.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

import torch  # noqa: E402

from convzoo.training.machine import machine_rows  # noqa: E402
from convzoo.training.device import canonical_precision  # noqa: E402
from convzoo.training.tables import records_table  # noqa: E402
from convzoo.training.timing import as_train_py  # noqa: E402

TABLES = ("models", "data", "trainer", "depthwise")
QUICK = dict(repeats=1, min_seconds=0.0, warmup=1, batch_size=16, infer_batch_size=32, trainer_steps=2,
             trainer_warmup=1, synthetic_images=512)


def parse_args(argv=None) -> argparse.Namespace:
    class Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
        pass

    p = argparse.ArgumentParser(description=__doc__, formatter_class=Formatter)
    p.add_argument("--tables", default=",".join(TABLES), help=f"comma-separated, from {', '.join(TABLES)}")
    p.add_argument("--models", default="*", help="comma-separated names or patterns (default: every zoo model)")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats per measurement; tables give the median")
    p.add_argument("--min-seconds", type=float, default=2.0, help="each repeat runs enough steps to last this long")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps before each case is timed")
    p.add_argument("--batch-size", type=int, default=128, help="training batch (as data.batch_size)")
    p.add_argument("--infer-batch-size", type=int, default=256)
    p.add_argument("--precisions", default="32-true,auto",
                   help="training precisions of table 1 (auto: what trainer.precision=auto picks here)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto")
    p.add_argument("--data", choices=("auto", "folder", "synthetic"), default="auto",
                   help="table 2's images: the ImageFolder tree at --data-root (auto: when present) or synthetic")
    p.add_argument("--data-root", default="../shared/datasets/cifar10-jpeg", help="relative to the repository root")
    p.add_argument("--synthetic-images", type=int, default=10_000)
    p.add_argument("--workers", type=int, default=2, help="DataLoader worker processes of the reference loaders")
    p.add_argument("--trainer-model", default="resnet20")
    p.add_argument("--trainer-steps", type=int, default=60, help="timed steps per run of table 3")
    p.add_argument("--trainer-warmup", type=int, default=10, help="untimed steps before them")
    p.add_argument("--depthwise-models", default="mobilenet_v2_x1_0,shufflenet_v2_x1_0")
    p.add_argument("--compile", action="store_true", help="table 4 also tries torch.compile (slow to compile)")
    p.add_argument("--quick", action="store_true", help="smoke test: " + ", ".join(f"{k}={v}" for k, v in QUICK.items())
                   + ", synthetic data unless --data folder")
    p.add_argument("--out", default=None, help="also write the markdown to this file")
    opts = p.parse_args(argv)
    if opts.quick:
        for key, value in QUICK.items():
            setattr(opts, key, value)
        opts.data = "synthetic" if opts.data == "auto" else opts.data
    opts.tables = [t.strip() for t in opts.tables.split(",") if t.strip()]
    unknown = sorted(set(opts.tables) - set(TABLES))
    if unknown:
        p.error(f"--tables: unknown {', '.join(unknown)}; choose from {', '.join(TABLES)}")
    for key in ("repeats", "batch_size", "infer_batch_size", "trainer_steps", "synthetic_images"):
        if getattr(opts, key) < 1:
            p.error(f"--{key.replace('_', '-')} should be >= 1, got {getattr(opts, key)}")
    if opts.warmup < 1 or opts.trainer_warmup < 1:
        p.error(f"--warmup and --trainer-warmup should be >= 1, got {opts.warmup} and {opts.trainer_warmup}")
    opts.device = torch.device("cuda" if opts.device == "auto" and torch.cuda.is_available()
                               else "cpu" if opts.device == "auto" else opts.device)
    root = Path(opts.data_root)
    opts.data_root = root if root.is_absolute() else (ROOT / root).resolve()
    return opts


def model_names(spec: str) -> list[str]:
    from convzoo.models import list_models

    names = []
    for part in (s.strip() for s in spec.split(",") if s.strip()):
        found = list_models(part)
        if not found:
            raise SystemExit(f"--models: no zoo model matches {part!r}; known: {', '.join(list_models())}")
        names += [n for n in found if n not in names]
    return names


def targets(results: dict, default: str) -> list[dict]:
    """The issue's goals, each with the value this run measured (or why there is none)."""
    def row(goal, value, minimum, note=""):
        ok = "not measured" if value is None else ("pass" if value >= minimum else "FAIL")
        return {"target": goal, "measured": value, "goal": f">= {minimum:g}", "result": ok, "note": note}

    fp32_note = ("" if default != "32-true" else
                 "n/a: trainer.precision=auto picks 32-true here (no AMX / AVX512-BF16), so default == fp32")
    return [row("fast loader img/s / resnet20 training img/s", results.get("loader_ratio"), 20,
                results.get("loader_note", "")),
            row("Lightning img/s / bare loop img/s", results.get("trainer_ratio"), 0.95),
            {**row("default precision / fp32 training img/s", results.get("precision_ratio"), 2, fp32_note),
             **({"result": "n/a"} if default == "32-true" else {})}]


def _models_table(opts, precisions: list[str], default: str, tables: dict, results: dict, emit) -> None:
    from benchmarks._models import model_rows, roofs

    tables["roofs"], peaks, bandwidth = roofs(opts, list(dict.fromkeys([*precisions, default])))
    emit("Roofs: the best of several kernels, each a ceiling no model step can pass", "roofs")
    tables["models"] = model_rows(model_names(opts.models), opts, precisions, default, peaks, bandwidth)
    same = (f" Default precision here is {default}: the same setting as fp32, so one training column, not two."
            if default == "32-true" else "")
    emit(f"Models: batch {opts.batch_size} training (channels_last, SGD Nesterov), inference at {default}; "
         f"medians of {opts.repeats}", "models",
         "GFLOP/s = 6 x MACs per trained image x img/s; AI = those FLOPs / the bytes the whole step must move "
         "at the least (training.roofline.step_bytes). Roof img/s = batch / the least time of a step: per "
         "layer the larger of 6 x MACs / compute peak and its bytes / bandwidth (output written forward and its "
         "gradient read backward, 8 x its parameter bytes for weights, gradients and SGD momentum), summed "
         "(training.roofline.layer_bound); memory-bound % = the share of that time in layers whose bytes bind. "
         f"% of roof = img/s / roof img/s; inference likewise for the forward pass.{same}")
    r20 = next((r for r in tables["models"] if r["model"] == "resnet20"), {})
    speed = {p: r20.get(k) for p in precisions for k in r20 if k.startswith(f"train img/s {p}")}
    if speed.get(default):
        results["resnet20_train"] = speed[default]
        if speed.get("32-true"):
            results["precision_ratio"] = speed[default] / speed["32-true"]


def _data_table(opts, default: str, tables: dict, results: dict, emit) -> None:
    from benchmarks._data import data_rows
    from benchmarks._models import train_speed

    tables["data"], source = data_rows(opts)
    train = results.get("resnet20_train") or train_speed("resnet20", opts, default)
    results["loader_ratio"] = tables["data"][0]["img/s"] / train
    results["loader_note"] = f"resnet20 trains at {train:,.0f} img/s ({default}, batch {opts.batch_size})"
    emit(f"Data: batch {opts.batch_size} training batches per second", "data",
         f"Images: {source}. Fast loader / resnet20 training ({train:,.0f} img/s, {default}): "
         f"{results['loader_ratio']:.1f}x.")


def main(argv=None) -> dict[str, list[dict]]:
    """Run the chosen tables, print them as markdown; returns {table name: rows}."""
    opts = parse_args(argv)
    default = canonical_precision("auto", opts.device)
    precisions = list(dict.fromkeys(canonical_precision(p.strip(), opts.device) for p in opts.precisions.split(",")))
    command = "python benchmarks/speed.py " + shlex.join(sys.argv[1:] if argv is None else list(argv))
    tables, results, out = {"machine": machine_rows(opts.device, default)}, {}, []

    def emit(title: str, name: str, note: str = "") -> None:
        text = f"### {title}\n\n{records_table(tables[name])}\n" + (f"\n{note}\n" if note else "")
        out.append(text)
        print(text, flush=True)

    with as_train_py():
        emit(f"Machine\n\n`{command}`", "machine")
        if "models" in opts.tables:
            _models_table(opts, precisions, default, tables, results, emit)
        if "data" in opts.tables:
            _data_table(opts, default, tables, results, emit)
        if "trainer" in opts.tables:
            from benchmarks._trainer import trainer_rows

            tables["trainer"], results["trainer_ratio"], note = trainer_rows(opts, default)
            emit(f"Trainer overhead: interleaved repeats (A B A B ...), medians of {opts.repeats}", "trainer", note)
        if "depthwise" in opts.tables:
            from benchmarks._depthwise import depthwise_rows, winners

            tables["depthwise"] = depthwise_rows(model_names(opts.depthwise_models), opts, default)
            emit(f"Depthwise / grouped models: one change at a time from train.py's default, side by side, "
                 f"medians of {opts.repeats}", "depthwise")
            tables["depthwise winners"] = winners(tables["depthwise"])
            emit("Fastest setting per model", "depthwise winners")
    tables["targets"] = targets(results, default)
    emit("Targets", "targets")
    if opts.out:
        Path(opts.out).write_text("\n".join(out))
    return tables


if __name__ == "__main__":
    main()
