"""What ``cpu_allocator=retain`` (training/allocator.py) buys: each model timed in fresh processes,
glibc's default allocator against retain, taken in turn (A B A B ...), since an allocator setting
holds for a whole process and cannot be undone inside one.

    python benchmarks/allocator.py --out docs/allocator.md          # the models below, 3 repeats
    python benchmarks/allocator.py --models resnet20 --repeats 5
    python benchmarks/allocator.py --quick                          # smoke test

One process measures, for one model in fp32 and channels_last: an evaluation pass before any
training (eval-mode forward of a batch with flip test-time augmentation, as validation runs it:
the median of ``--eval-batches`` batches, what Lightning's sanity check sees), then training steps
(``timing.train_case``, warm-up first, at least ``--min-seconds``), then the same evaluation again;
and its peak resident memory. Tables give medians over the repeats and the ratios retain / default.
It prints numbers and asserts nothing about them.
"""
from __future__ import annotations

import argparse
import json
import resource
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

from benchmarks._args import parse, run_options, zoo_names  # noqa: E402

MODELS = "resnet20,resnet56,highway_19,preact_resnet18,mobilenet_v2_x1_0,shufflenet_v2_x1_0,eff_separable"
QUICK = dict(repeats=1, min_seconds=0.0, warmup=1, batch_size=8, eval_batch_size=8, eval_batches=1)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=MODELS, help="comma-separated names or patterns")
    p.add_argument("--repeats", type=int, default=3, help="processes per model and setting")
    p.add_argument("--min-seconds", type=float, default=3.0, help="timed training per process")
    p.add_argument("--warmup", type=int, default=2, help="untimed training steps first")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--eval-batch-size", type=int, default=512, help="as data.eval_batch_size")
    p.add_argument("--eval-batches", type=int, default=3, help="evaluation batches timed before and after training")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)  # one measurement: 'model,setting'
    run_options(p, QUICK)
    opts = parse(p, argv, QUICK, positive=("repeats", "batch_size", "warmup", "eval_batch_size", "eval_batches"))
    opts.names = zoo_names(p, opts.models)
    return opts


def measure(model: str, setting: str, opts) -> dict:
    """One process's figures (run in a child: the allocator is chosen before anything is allocated)."""
    from convzoo.training.allocator import set_cpu_allocator

    allocation = set_cpu_allocator(setting)
    applied = f"{allocation.choice} ({allocation.detail})"
    import torch

    from convzoo.models import create_model
    from convzoo.training.metrics import tta_logits
    from convzoo.training.timing import Case, calibrate, interleave_seconds, median, run_steps, train_case

    torch.manual_seed(0)
    net = create_model(model).to(memory_format=torch.channels_last)
    x = torch.randn(opts.eval_batch_size, 3, 32, 32).contiguous(memory_format=torch.channels_last)

    def evaluate() -> float:  # images/s of eval batches with flip TTA, as validation runs them; no warm-up
        net.eval()
        case = Case(lambda: tta_logits(net, x, True).argmax(1), work=opts.eval_batch_size, context=torch.no_grad,
                    warmup=0, fixed_steps=1)
        seconds = interleave_seconds({"eval": case}, opts.eval_batches, 0.0, opts.device)["eval"]
        net.train()
        return opts.eval_batch_size / median(seconds)

    before = evaluate()
    case = train_case(net, opts.batch_size, "32-true", opts.device)
    calibrate(case, opts.min_seconds, opts.device, opts.warmup)
    train = case.work * case.steps / run_steps(case, case.steps, opts.device)
    after = evaluate()
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"applied": applied, "eval_before": before, "train": train, "eval_after": after, "peak_mib": peak_mib}


def child(model: str, setting: str, opts) -> dict:
    sizes = [f"--{k.replace('_', '-')}={getattr(opts, k)}"
             for k in ("min_seconds", "warmup", "batch_size", "eval_batch_size", "eval_batches")]
    command = [sys.executable, __file__, f"--models={model}", *sizes, f"--device={opts.device}",
               f"--child={model},{setting}"]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def table(rows: list[dict]) -> str:
    head = ["model", "train img/s default", "retain", "ratio", "eval img/s before training default", "retain",
            "ratio", "eval img/s after training default", "retain", "ratio", "peak MiB default", "retain"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for r in rows:
        cells = [r["model"]]
        for key in ("train", "eval_before", "eval_after"):
            a, b = r["default"][key], r["retain"][key]
            cells += [f"{a:,.0f}", f"{b:,.0f}", f"{b / a:.2f}"]
        cells += [f"{r['default']['peak_mib']:,.0f}", f"{r['retain']['peak_mib']:,.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    argv = list(sys.argv[1:] if argv is None else argv)
    opts = parse_args(argv)
    if opts.child:
        model, setting = opts.child.split(",")
        print(json.dumps(measure(model, setting, opts)))
        return ""
    from convzoo.training.machine import summary
    from convzoo.training.timing import median

    rows = []
    for model in opts.names:
        runs = {"default": [], "retain": []}
        for _ in range(opts.repeats):
            for setting in runs:  # in turn, so load on the machine hits both
                runs[setting].append(child(model, setting, opts))
        row = {"model": model}
        for setting, measured in runs.items():
            row[setting] = {k: median([m[k] for m in measured]) for k in measured[0] if k != "applied"}
        rows.append(row)
        print(f"# {model}: retain/default training {row['retain']['train'] / row['default']['train']:.2f}x "
              f"({runs['retain'][0]['applied']})", flush=True)
    command = shlex.join(["python", "benchmarks/allocator.py", *argv])
    text = (f"`{command}`\n\n{summary()}; fp32, channels_last, training batch {opts.batch_size}, evaluation "
            f"batch {opts.eval_batch_size} with flip TTA; medians of {opts.repeats} processes per setting, "
            f"taken in turn.\n\n{table(rows)}\n")
    print(text)
    if opts.out:
        Path(opts.out).write_text(text)
    return text


if __name__ == "__main__":
    main()
