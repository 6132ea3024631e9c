"""convzoo's efficient models against plain peers, side by side: the speed targets of the zoo.

    python benchmarks/peers.py                          # the full run, alone on the machine (minutes: it
                                                        # calibrates, and may compile, each model)
    python benchmarks/peers.py --out docs/peers.md      # also write the markdown
    python benchmarks/peers.py --cache ~/.cache/convzoo/calibration.json   # reuse training's calibration
    python benchmarks/peers.py --quick                  # smoke test: batch 8, one repeat, no calibration

What one number is: training images/s of one optimizer step on a fixed random CIFAR batch as
train.py takes it (``timing.train_case``: forward under autocast, cross-entropy, backward, SGD
Nesterov), the median of ``--repeats`` repeats of at least ``--min-seconds``, taken round-robin.

- Peers: kuangliu/pytorch-cifar's ShuffleNetV2 and MobileNetV2 (benchmarks/_peers.py) in every
  plain setting a user of that repository could pick, the candidates convzoo's calibration times:
  fp32 (and bf16 autocast where the CPU multiplies bf16 natively) x channels_last / contiguous.
  The peer's number is its best setting; all are reported.
- Ours: in the setting ``training/calibrate.py`` picks for a 30-epoch CIFAR-10 run
  (``--planned-steps`` 30 x 390 at batch 128) with precision, memory format and torch.compile all
  ``auto``, as ``python train.py model=X`` trains by default. The calibration is measured afresh
  (a temporary cache) unless ``--cache`` names one. A compiled net compiles in its first warm-up
  step, outside the timed steps; the compile seconds are reported beside the setting.
- Side by side: each model and its peer's settings are timed in one ``timing.interleave`` call;
  the eff_* models (each in its own calibrated setting) in another.

Tables: machine, sizes (params and MACs of ours and the peers), calibrated settings, the two
comparisons, and the targets with pass / FAIL: ours >= 1.5x its peer's best for
shufflenet_v2_x1_0 and mobilenet_v2_x1_0, eff_separable >= 2x and eff_shuffle >= 1x the training
speed of eff_standard. It prints numbers and asserts nothing about them.
"""
from __future__ import annotations

import argparse
import copy
import shlex
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

import torch  # noqa: E402

from benchmarks._args import parse, run_options, zoo_names  # noqa: E402
from benchmarks._peers import PEERS  # noqa: E402
from convzoo.models.complexity import complexity  # noqa: E402
from convzoo.training.calibrate import choose, eager_candidates  # noqa: E402
from convzoo.training.device import canonical_precision  # noqa: E402
from convzoo.training.machine import machine_rows  # noqa: E402
from convzoo.training.tables import records_table  # noqa: E402
from convzoo.training.timing import as_train_py, interleave, median, run_steps, train_case  # noqa: E402

INPUT, CLASSES = (3, 32, 32), 10
# planned_steps 0: too short to calibrate, so the quick run takes calibrate's defaults and never compiles
QUICK = dict(repeats=1, min_seconds=0.0, warmup=1, batch_size=8, planned_steps=0)
# (numerator, denominator, minimum): a ratio of training images/s that the zoo promises
EFF_TARGETS = (("eff_separable", "eff_standard", 2.0), ("eff_shuffle", "eff_standard", 1.0))
PEER_TARGET = 1.5


def parse_args(argv=None) -> argparse.Namespace:
    class Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
        pass

    p = argparse.ArgumentParser(description=__doc__, formatter_class=Formatter)
    p.add_argument("--repeats", type=int, default=5, help="timed repeats per case; tables give the median")
    p.add_argument("--min-seconds", type=float, default=2.0, help="each repeat runs enough steps to last this long")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps before each case is timed")
    p.add_argument("--batch-size", type=int, default=128, help="training batch (as data.batch_size)")
    p.add_argument("--planned-steps", type=int, default=30 * 390,
                   help="length of the run the calibration chooses for (30 CIFAR-10 epochs at batch 128)")
    p.add_argument("--cache", default=None, help="calibration cache to read and extend (default: a fresh temporary one)")
    p.add_argument("--peer-models", default=",".join(PEERS), help=f"comma-separated, from {', '.join(PEERS)}")
    p.add_argument("--eff-models", default="eff_*", help="comma-separated names or patterns of the efficiency study")
    run_options(p, QUICK)
    opts = parse(p, argv, QUICK)
    opts.peer_models = [m.strip() for m in opts.peer_models.split(",") if m.strip()]
    unknown = sorted(set(opts.peer_models) - set(PEERS))
    if unknown:
        p.error(f"--peer-models: no peer for {', '.join(unknown)}; choose from {', '.join(PEERS)}")
    opts.eff_models = zoo_names(p, opts.eff_models, "--eff-models") if opts.eff_models else []
    missing = sorted({a for t in EFF_TARGETS for a in t[:2]} - set(opts.eff_models))
    if opts.eff_models and missing:
        p.error(f"--eff-models: the targets need {', '.join(missing)} too")
    return opts


def build(name: str):
    """Our model ``name`` and its config as train.py passes it to the calibration (resolved, with the
    data's classes and channels), so a shared ``--cache`` serves both."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from convzoo.models.registry import model_config

    cfg = OmegaConf.to_container(model_config(name), resolve=True)
    cfg.update(num_classes=CLASSES, in_chans=INPUT[0])
    torch.manual_seed(0)
    return instantiate(cfg), cfg


def sizes(names: list[str]) -> list[dict]:
    """Params and MACs per image of ours and the peer: the nets compared are the same size."""
    rows = []
    for name in names:
        ours, peer = (complexity(net, INPUT) for net in (build(name)[0], PEERS[name][0]()))
        rows.append({"model": name, "peer": PEERS[name][1], "params ours": ours.total_params,
                     "params peer": peer.total_params, "MACs ours (M)": ours.total_macs / 1e6,
                     "MACs peer (M)": peer.total_macs / 1e6})
    return rows


def calibrated(name: str, opts, cache: Path):
    """(our case, its setting's label, the calibration's account) in the setting a long run trains with."""
    net, cfg = build(name)
    compile_ = "auto" if getattr(opts, "compile", "auto") == "auto" else False
    choice = choose(net, cfg, precision="auto", channels_last="auto", compile_=compile_, batch_size=opts.batch_size,
                    input_shape=INPUT, num_classes=CLASSES, planned_steps=opts.planned_steps, device=opts.device,
                    cache=cache)
    setting, label = choice.setting, choice.setting.label()
    if setting.compile:
        net.compile()  # in place, as the training module does
    case = train_case(net, opts.batch_size, setting.precision, opts.device, channels_last=setting.channels_last)
    if setting.compile:  # compile now, so that the warm-up and timed steps see only compiled steps
        start = time.perf_counter()
        run_steps(case, 1, opts.device)
        label += f" ({time.perf_counter() - start:.0f} s to compile)"
    print(f"  {name}: {choice.describe()}", file=sys.stderr, flush=True)
    return case, label, {"model": name, "setting": label, "calibration": choice.describe()}


def beside_every_setting(net, name: str, opts, cache: Path):
    """``net`` in every eager setting and our ``name`` in its calibrated one (key ``"ours"``), timed
    in one interleave call: (settings, rates by label, our label, calibration row, best label)."""
    settings = eager_candidates("auto", "auto", opts.device)
    cases = {s.label(): train_case(copy.deepcopy(net), opts.batch_size, s.precision, opts.device,
                                   channels_last=s.channels_last) for s in settings}
    cases["ours"], ours_label, calibration = calibrated(name, opts, cache)
    rates = {k: median(v) for k, v in interleave(cases, opts.repeats, opts.min_seconds, opts.device,
                                                   opts.warmup).items()}
    return settings, rates, ours_label, calibration, max((s.label() for s in settings), key=rates.get)


def peer_rows(name: str, opts, cache: Path) -> tuple[list[dict], dict, float]:
    """Our ``name`` and every setting of its peer, timed in one interleave call; (rows, the
    calibration row, ours / the peer's best)."""
    peer, peer_label = PEERS[name]
    torch.manual_seed(0)
    settings, rates, ours_label, calibration, best = beside_every_setting(peer(), name, opts, cache)
    rows = [{"model": name, "implementation": "convzoo", "setting": ours_label, "train img/s": rates["ours"],
             "vs peer best": rates["ours"] / rates[best]}]
    rows += [{"model": name, "implementation": peer_label, "setting": s.label() + (" (best)" if s.label() == best else ""),
              "train img/s": rates[s.label()], "vs peer best": rates[s.label()] / rates[best]} for s in settings]
    return rows, calibration, rates["ours"] / rates[best]


def eff_rows(names: list[str], opts, cache: Path) -> tuple[list[dict], list[dict], dict[str, float]]:
    """The efficiency study's models, each in its calibrated setting, timed in one interleave call."""
    cases, labels, calibrations = {}, {}, []
    for name in names:
        cases[name], labels[name], row = calibrated(name, opts, cache)
        calibrations.append(row)
    rates = {k: median(v) for k, v in interleave(cases, opts.repeats, opts.min_seconds, opts.device,
                                                   opts.warmup).items()}
    base = rates.get("eff_standard")
    rows = [{"model": n, "setting": labels[n], "train img/s": rates[n], "vs eff_standard": base and rates[n] / base}
            for n in names]
    return rows, calibrations, rates


def targets(peer_ratios: dict[str, float], eff_rates: dict[str, float]) -> list[dict]:
    """The goals, each with the ratio this run measured (or ``not measured``)."""
    def row(goal, value, minimum):
        result = "not measured" if value is None else ("pass" if value >= minimum else "FAIL")
        return {"target": goal, "measured": value, "goal": f">= {minimum:g}", "result": result}

    out = [row(f"{name} training img/s / {PEERS[name][1]} best", peer_ratios.get(name), PEER_TARGET)
           for name in PEERS]
    for top, bottom, minimum in EFF_TARGETS:
        ratio = eff_rates[top] / eff_rates[bottom] if top in eff_rates and bottom in eff_rates else None
        out.append(row(f"{top} training img/s / {bottom}", ratio, minimum))
    return out


def main(argv=None) -> dict[str, list[dict]]:
    """Measure, print the markdown tables; returns {table name: rows}."""
    opts = parse_args(argv)
    command = "python benchmarks/peers.py " + shlex.join(sys.argv[1:] if argv is None else list(argv))
    default = canonical_precision("auto", opts.device)
    tables, out = {"machine": machine_rows(opts.device, default)}, []

    def emit(title: str, name: str, note: str = "") -> None:
        out.append(f"### {title}\n\n{records_table(tables[name])}\n" + (f"\n{note}\n" if note else ""))
        print(out[-1], flush=True)
        if opts.out:  # rewritten after every table: a long run stopped halfway keeps what it measured
            Path(opts.out).write_text("\n".join(out))

    emit(f"Machine\n\n`{command}`", "machine")
    tables["sizes"] = sizes(opts.peer_models)
    emit("Sizes at 3x32x32 (models.complexity)", "sizes",
         "The MobileNetV2 peer has 4 projection shortcuts and one 1x1 conv more than the paper's network.")
    peer_ratios, eff_rates, tables["calibration"], tables["peers"] = {}, {}, [], []
    with tempfile.TemporaryDirectory() as tmp, as_train_py():
        cache = Path(opts.cache).expanduser() if opts.cache else Path(tmp) / "calibration.json"
        for name in opts.peer_models:
            rows, calibration, peer_ratios[name] = peer_rows(name, opts, cache)
            tables["peers"] += rows
            tables["calibration"].append(calibration)
        if opts.eff_models:
            tables["efficiency"], calibrations, eff_rates = eff_rows(opts.eff_models, opts, cache)
            tables["calibration"] += calibrations
    emit(f"Our settings: what the calibration picks for a {opts.planned_steps:,}-step run at batch "
         f"{opts.batch_size}", "calibration")
    if tables["peers"]:
        emit(f"Training img/s, batch {opts.batch_size}, ours (calibrated) against every setting of the peer; "
             f"each model's cases interleaved, medians of {opts.repeats}", "peers")
    if opts.eff_models:
        emit(f"Efficiency study: training img/s, batch {opts.batch_size}, each model calibrated, all interleaved, "
             f"medians of {opts.repeats}", "efficiency")
    tables["targets"] = targets(peer_ratios, eff_rates)
    emit("Targets", "targets")
    return tables


if __name__ == "__main__":
    main()
