"""Training speed of one model family at other widths, side by side: what each stage's width costs.

    python benchmarks/widths.py                                        # fastnet's variants (about 2 min)
    python benchmarks/widths.py --model fastnet --widths 64,128,128 32,128,256 --repeats 5
    python benchmarks/widths.py --quick                                # smoke test

A conv costs ``M^2 K^2 C_in C_out`` MACs (M: its output size), so a stage's width costs in proportion
to its spatial size: on fastnet, the first group (31x31 and 15x15) against the third (7x7 and 3x3).
MACs are not time, though: on a CPU a conv with few channels keeps the vector units less busy, and
the table prints both, with the rate of MACs each variant sustains. Each variant is the model's config
with ``family.widths`` replaced (``create_model(model, family={"widths": [...]})``); the step is
``convzoo.training.timing.train_case`` (forward, loss, backward, an SGD step) on a random batch, in the
precision train.py's ``auto`` picks here, channels_last. The variants take turns (round-robin
repeats) so machine noise hits all; the first is the baseline of the ratio. Muon's orthogonalisation,
which the fast recipe adds per step and which grows with the filters' sizes, is not in the step: the
time-to-accuracy records' images seen show it. It prints numbers and asserts nothing.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

from benchmarks._args import parse, run_options  # noqa: E402
from convzoo.models import create_model, model_config  # noqa: E402
from convzoo.models.complexity import complexity  # noqa: E402
from convzoo.training.device import canonical_precision  # noqa: E402
from convzoo.training.machine import summary  # noqa: E402
from convzoo.training.tables import records_table  # noqa: E402
from convzoo.training.timing import interleave, median, train_case  # noqa: E402

WIDTHS = ["64,128,128", "64,128,256", "48,128,256", "32,128,256", "32,128,384", "32,192,256", "32,256,256",
          "64,256,256"]
QUICK = {"widths": ["8,16,16", "8,16,32"], "batch_size": 8, "repeats": 1, "min_seconds": 0.05}


def widths_list(p: argparse.ArgumentParser, text: str) -> list[int]:
    try:
        widths = [int(w) for w in text.split(",")]
    except ValueError:
        p.error(f"--widths: {text!r} is not comma-separated integers (e.g. 32,128,256)")
    if any(w < 1 for w in widths):
        p.error(f"--widths: {text!r} has a width below 1")
    return widths


def stage_macs(report, stages: int) -> list[int]:
    """MACs per stage (``stages.<i>.*`` layers) of one image, from a net's complexity report."""
    return [sum(r.macs for r in report.rows if r.name == f"stages.{i}" or r.name.startswith(f"stages.{i}."))
            for i in range(stages)]


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(prog="python benchmarks/widths.py", description=__doc__.split("\n")[0])
    p.add_argument("--model", default="fastnet", help="a zoo model whose config has family.widths")
    p.add_argument("--widths", nargs="+", default=WIDTHS, help="variants, each comma-separated (first: baseline)")
    p.add_argument("--batch-size", type=int, default=512, help="the fast recipe's batch for fastnet")
    p.add_argument("--precision", default="auto", help="auto (as train.py: bf16-mixed where native), fp32, bf16")
    p.add_argument("--repeats", type=int, default=5, help="round-robin repeats (median)")
    p.add_argument("--min-seconds", type=float, default=1.0, help="each repeat times steps for at least this")
    run_options(p, QUICK)
    opts = parse(p, argv, QUICK, positive=("repeats", "batch_size"))
    if "widths" not in (model_config(opts.model).get("family") or {}):
        p.error(f"--model {opts.model}: its config has no family.widths to vary")
    precision = canonical_precision(opts.precision, opts.device)
    variants = [widths_list(p, text) for text in opts.widths]
    cases, sizes = {}, {}
    for widths in variants:
        key = ",".join(map(str, widths))
        net = create_model(opts.model, family={"widths": widths})
        report = complexity(net)
        sizes[key] = (report.total_params, report.total_macs, stage_macs(report, len(widths)))
        cases[key] = train_case(net.to(opts.device), opts.batch_size, precision, opts.device)
    rates = interleave(cases, opts.repeats, opts.min_seconds, opts.device)
    base = median(rates[next(iter(rates))])
    rows = []
    for key, values in rates.items():
        params, macs, per_stage = sizes[key]
        rate = median(values)
        rows.append({"widths": key, "params": params, "MACs (M)": macs / 1e6,
                     "MACs per stage (M)": " / ".join(f"{m / 1e6:.1f}" for m in per_stage),
                     "train img/s": rate, "spread": f"{min(values):,.0f}-{max(values):,.0f}",
                     f"x {next(iter(rates))}": rate / base,
                     "train GMAC/s": 3 * macs * rate / 1e9})  # forward + backward: about 3x the forward's MACs
    text = (f"{summary()}; {opts.model} at other widths; {precision}, channels_last, batch {opts.batch_size}, "
            f"medians of {opts.repeats} round-robin repeats of at least {opts.min_seconds:g} s\n\n"
            + records_table(rows))
    print(text)
    if opts.out:
        Path(opts.out).write_text(text + "\n")
    return rows


if __name__ == "__main__":
    main()
