"""Is train.py's default setting ever the slow choice? Every zoo model, its default against each setting.

    python benchmarks/defaults.py --out docs/defaults.md        # every model, alone on the machine
    python benchmarks/defaults.py --models "mobilenet*,eff_*"   # some
    python benchmarks/defaults.py --compile auto                # let the calibration try torch.compile too
    python benchmarks/defaults.py --quick                       # smoke test

Per model: the default is the setting ``training/calibrate.py`` picks for a ``--planned-steps``
run with ``trainer.precision``, ``module.channels_last`` (and, with ``--compile auto``,
``module.compile``) left at ``auto`` (benchmarks/peers.py's ``calibrated``); against it, each
single eager setting a user could pick instead: fp32 (and bf16 autocast where the CPU runs bf16
natively) x channels_last / contiguous. All of one model's cases, the default as a case of its own,
are timed in one ``timing.interleave`` call. "chosen / best" compares the chosen setting's own case
with the best setting's (1.0 where the calibration picked the setting that won here too); "re-run /
chosen" is the default case against the case of the same setting, timed twice side by side: the
noise of one measurement, which a calibration of a few steps is subject to as well. By default compile is off (``--compile off``): trying it costs
10-90 s per model on 2 cores; benchmarks/peers.py measures it for the efficient families. It prints
numbers and asserts nothing.
"""
from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

from benchmarks._args import parse, run_options, zoo_names  # noqa: E402
from benchmarks.peers import beside_every_setting, build  # noqa: E402
from convzoo.training.device import canonical_precision  # noqa: E402
from convzoo.training.machine import machine_rows  # noqa: E402
from convzoo.training.tables import records_table  # noqa: E402
from convzoo.training.timing import as_train_py, median  # noqa: E402

TARGET = 0.97
QUICK = dict(repeats=1, min_seconds=0.0, warmup=1, batch_size=8, planned_steps=0)


def parse_args(argv=None) -> argparse.Namespace:
    class Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
        pass

    p = argparse.ArgumentParser(description=__doc__, formatter_class=Formatter)
    p.add_argument("--models", default="*", help="comma-separated names or patterns (default: every zoo model)")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats per case; tables give the median")
    p.add_argument("--min-seconds", type=float, default=1.0, help="each repeat runs enough steps to last this long")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps before each case is timed")
    p.add_argument("--batch-size", type=int, default=128, help="training batch (as data.batch_size)")
    p.add_argument("--planned-steps", type=int, default=30 * 351,
                   help="the run the calibration chooses for (30 epochs of the 45,000-image training split)")
    p.add_argument("--compile", choices=("off", "auto"), default="off", help="module.compile for the calibration")
    p.add_argument("--cache", default=None, help="calibration cache to read and extend (default: a fresh temporary one)")
    run_options(p, QUICK)
    opts = parse(p, argv, QUICK)
    opts.models = zoo_names(p, opts.models)
    return opts


def model_rows(name: str, opts, cache: Path) -> dict:
    """One row: the default setting and its rate, every eager setting's rate, default / best."""
    settings, rates, label, _, best = beside_every_setting(build(name)[0], name, opts, cache)
    rates["default"] = rates.pop("ours")
    chosen = label.split(" (")[0]  # the setting's label, without the compile seconds
    row = {"model": name, "default setting": label, "default img/s": rates["default"]}
    row.update({f"{s.label()} img/s": rates[s.label()] for s in settings})
    row["best single setting"] = best
    if chosen in rates:  # an eager setting: compare its own case, and the re-run as the noise
        row.update({"chosen / best": rates[chosen] / rates[best], "re-run / chosen": rates["default"] / rates[chosen]})
    else:  # compiled: only the default case runs that setting
        row.update({"chosen / best": rates["default"] / rates[best], "re-run / chosen": None})
    print(f"  measured {name}: chosen / best {row['chosen / best']:.3f}", file=sys.stderr, flush=True)
    return row


def main(argv=None) -> list[dict]:
    opts = parse_args(argv)
    command = "python benchmarks/defaults.py " + shlex.join(sys.argv[1:] if argv is None else list(argv))
    default = canonical_precision("auto", opts.device)
    out = [f"### Machine\n\n`{command}`\n\n{records_table(machine_rows(opts.device, default))}\n"]
    print(out[0], flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp, as_train_py():
        cache = Path(opts.cache).expanduser() if opts.cache else Path(tmp) / "calibration.json"
        for name in opts.models:
            rows.append(model_rows(name, opts, cache))
            if opts.out:  # rewritten after every model: a run stopped halfway keeps what it measured
                Path(opts.out).write_text("\n".join([*out, records_table(rows)]))
    ratios = [r["chosen / best"] for r in rows]
    below = [r["model"] for r in rows if r["chosen / best"] < TARGET]
    noise = [abs(r["re-run / chosen"] - 1) for r in rows if r["re-run / chosen"] is not None]
    summary = (f"Chosen / best single setting: min {min(ratios):.3f}, median {median(ratios):.3f} over "
               f"{len(rows)} models; below {TARGET}: {', '.join(below) or 'none'}. The same setting timed twice "
               f"differed by {median(noise) if noise else 0:.1%} (median) and up to {max(noise, default=0):.1%}. "
               f"Batch {opts.batch_size}, "
               f"medians of {opts.repeats} repeats of >= {opts.min_seconds:g} s, each model's cases interleaved; "
               f"calibration for a {opts.planned_steps:,}-step run, compile {opts.compile}.")
    out += [f"### Default against every single setting\n\n{records_table(rows)}\n\n{summary}\n"]
    print(out[-1], flush=True)
    if opts.out:
        Path(opts.out).write_text("\n".join(out))
    return rows


if __name__ == "__main__":
    main()
