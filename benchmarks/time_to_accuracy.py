"""Accuracy of a recipe at several budgets, over seeds, end to end: each (budget, seed) is one
``python train.py experiment=<e> budget=<b> seed=<s>`` command, timed from its launch (imports and
data loading included) to its exit. A time-budgeted run plans its steps to end within its budget
on the machine at hand, so the table says what accuracy each budget buys here.

    python benchmarks/time_to_accuracy.py --budgets 5min 10min 20min --seeds 0 1 2
    python benchmarks/time_to_accuracy.py --budgets 10min --seeds 0 -- model=resnet20   # overrides after --
    python benchmarks/time_to_accuracy.py --report --out docs/results/time_to_accuracy/amd-epyc-fp32.md \\
        --plot docs/results/time_to_accuracy/amd-epyc-fp32.png                          # tables, no training

Runs go one after another (never in parallel: they are timings). Each leaves a small JSON record in
``--results`` (default ``docs/results/time_to_accuracy/<machine>/``, committed) and its run folder
under ``--log-dir`` (not committed). A record that exists for the same experiment, budget, seed and
overrides is kept, not re-run (``--force`` re-runs it), so a grid can be filled over several sittings.
``--report [DIR]`` rebuilds the tables from the records alone: per budget, recipe and model, the runs'
validation accuracy (mean ± std, best), wall time against the budget (whether every run ended within
±3% of it: neither over nor leaving time unused), images seen, machine and precision; then one row per run.
The shared CIFAR-10 JPEG data is used when present and no ``data=`` override is given.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere: the project's packages are importable

from benchmarks._records import (launch, load_records, machine, machine_slug, make_record,  # noqa: E402
                                 record_name, same_run, write_record)
from convzoo.training.budget import parse_budget  # noqa: E402
from convzoo.training.machine import summary  # noqa: E402
from convzoo.training.tables import format_number, markdown_table  # noqa: E402
from convzoo.training.timing import spread  # noqa: E402

SHARED = ROOT.parent / "shared" / "datasets" / "cifar10-jpeg"
RESULTS = ROOT / "docs" / "results" / "time_to_accuracy"
ON_BUDGET = 0.03  # a time-budgeted run within this fraction of its budget, either side, used it as planned
RESERVED = ("experiment=", "budget=", "seed=", "paths.log_dir=")  # set by the benchmark itself


def default_results() -> Path:
    here = machine()
    return RESULTS / machine_slug(here["cpu"], here["native_bf16"])


def data_overrides(overrides: list[str]) -> list[str]:
    if SHARED.is_dir() and not any(o.startswith(("data=", "+data=")) for o in overrides):
        return ["data=folder", f"data.root={os.path.relpath(SHARED, ROOT)}"]
    return []


def run_one(experiment: str, budget: str, seed: int, overrides: list[str], results: Path, log_root: Path,
            force: bool, benchmark_command: str) -> None:
    """Launch one training command and write its record, unless a record of it exists."""
    path = results / record_name(experiment, budget, f"seed{seed}")
    if path.exists() and not force:
        old = json.loads(path.read_text())
        if same_run(old, experiment, budget, seed, overrides):
            print(f"# kept {path.relative_to(results.parent)} (exists; --force re-runs it)")
            return
        raise SystemExit(f"{path} holds a run with overrides {old.get('overrides')}, not {overrides}; "
                         "--force replaces it, --results DIR keeps both")
    runs_dir = log_root / results.name / path.stem / "train" / "runs"
    recipe = [] if experiment == "none" else [f"experiment={experiment}"]  # none: train.yaml's plain recipe
    run = launch([*recipe, f"budget={budget}", f"seed={seed}", *overrides], runs_dir, ROOT)
    record = make_record(run["run_dir"], experiment=experiment, budget=budget, seed=seed, overrides=overrides,
                         command=run["command"], benchmark_command=benchmark_command, launched=run["launched"],
                         wall_seconds=run["wall_seconds"])
    write_record(path, record)
    print(f"# {run['wall_seconds']:.0f} s, val acc {record['metrics'].get('val/acc', float('nan')):.4f}: {path}", flush=True)


def budget_order(record: dict) -> tuple:
    return (record["machine"]["cpu"], record["experiment"], optimizer(record), record["budget_kind"] != "time",
            record["budget_seconds"] or record["budget_flops"] or 0.0, record["budget"], tta(record), record["seed"])


def group_key(record: dict) -> tuple:
    m = record["machine"]
    return (machine_slug(m["cpu"], m["native_bf16"]), record["experiment"], model(record), optimizer(record),
            tta(record), record["budget"], tuple(record["overrides"]))


def model(record: dict) -> str:
    """The model the run trained, as composed: a recipe's default model can change while its
    experiment name and overrides stay the same."""
    return str(record["recipe"].get("model", "-"))


def optimizer(record: dict) -> str:
    """The optimizer's class name, as the run logged it: a recipe's optimizer can change while its
    experiment name and overrides stay the same."""
    return str(record["metrics"].get("optimizer", "-"))


def tta(record: dict) -> str:
    """The final evaluation's test-time augmentation, as the run logged it ('flip', 'flip+translate1';
    '-' for a run that did not log it): what a recipe's last validation measures changes with it."""
    m = record["metrics"]
    if "tta_flip" not in m:
        return "-"
    views = ["flip"] if m.get("tta_flip") else []
    if m.get("final_tta_translate"):
        views.append(f"translate{m['final_tta_translate']}")
    return "+".join(views) or "none"


def ratio(record: dict) -> float | None:
    """Wall time over a time budget (None for a FLOP budget, which is not a deadline)."""
    return record["wall_seconds"] / record["budget_seconds"] if record["budget_seconds"] else None


def acc(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def budget_table(records: list[dict]) -> str:
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault(group_key(r), []).append(r)
    rows = []
    for (slug, experiment, net, opt, views, budget, overrides), runs in groups.items():
        accs = [r["metrics"].get("val/acc") for r in runs if r["metrics"].get("val/acc") is not None]
        walls = [r["wall_seconds"] for r in runs]
        ratios = [ratio(r) for r in runs if ratio(r) is not None]
        precisions = sorted({str(r["metrics"].get("precision", r["recipe"].get("precision"))) for r in runs})
        images = [r["metrics"].get("train_images_seen", 0) for r in runs]
        rows.append([budget, experiment, net, opt, views, len(runs),
                     f"{statistics.fmean(accs):.4f} ± {spread(accs):.4f}" if accs else "-",
                     acc(max(accs)) if accs else "-", f"{statistics.fmean(walls):.0f}", f"{max(walls):.0f}",
                     f"{max(ratios):.3f}" if ratios else None,
                     ("yes" if all(abs(q - 1) <= ON_BUDGET for q in ratios) else "no") if ratios else None,
                     format_number(round(statistics.fmean(images))), slug, ", ".join(precisions),
                     " ".join(o for o in overrides if not o.startswith(("data=", "data.root="))) or "-"])
    header = ["budget", "experiment", "model", "optimizer", "final TTA", "runs", "val acc (mean ± std)", "best run's val acc", "wall mean (s)",
              "wall max (s)", "max wall / budget", f"all within ±{ON_BUDGET:.0%}", "images seen (mean)", "machine",
              "precision", "overrides"]
    return markdown_table(header, rows, "lllllrrrrrrlrlll")


def run_table(records: list[dict]) -> str:
    rows = []
    for r in records:
        m, q = r["metrics"], ratio(r)
        rows.append([r["budget"], r["seed"], acc(m.get("val/acc")), acc(m.get("val/acc_best")),
                     f"{r['wall_seconds']:.0f}", None if q is None else f"{q:.3f}", len(r["val_curve"]),
                     format_number(m.get("train_images_seen")), f"{m.get('train_flops', 0):.3g}",
                     model(r), optimizer(r), tta(r), m.get("precision"), m.get("channels_last"),
                     m.get("compile")])
    header = ["budget", "seed", "val acc", "best val acc", "wall (s)", "wall / budget", "validations", "images seen",
              "train FLOPs", "model", "optimizer", "final TTA", "precision", "channels_last", "compile"]
    return markdown_table(header, rows, "lrrrrrrrrllllll")


def report(records: list[dict]) -> str:
    records = sorted(records, key=budget_order)
    commands = list(dict.fromkeys(r["benchmark_command"] for r in records))
    machines = list(dict.fromkeys("{cpu}, native bf16 {bf16}, {cores} cores, torch {torch}".format(
        **r["machine"], bf16="yes" if r["machine"]["native_bf16"] else "no") for r in records))
    lines = ["Made by:", "", *(f"    {c}" for c in commands), "", "On:", "", *(f"- {m}" for m in machines), "",
             budget_table(records), "", run_table(records)]
    return "\n".join(lines) + "\n"


def plot(records: list[dict], out: Path) -> None:
    """Validation accuracy against wall-clock minutes since launch, one colour per budget."""
    from convzoo.training.reporting import plt  # Agg backend

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    colours: dict[str, str] = {}
    for r in sorted(records, key=budget_order):
        first = r["budget"] not in colours
        colour = colours.setdefault(r["budget"], f"C{len(colours) % 10}")
        curve = r["val_curve"]
        ax.plot([t / 60 for t, _ in curve], [a for _, a in curve], "o-", ms=3, lw=1, color=colour,
                label=f"budget {r['budget']}" if first else None)
        if first and r["budget_seconds"]:
            ax.axvline(r["budget_seconds"] / 60, color=colour, ls=":", lw=1)
    ax.set(xlabel="wall-clock minutes since launch", ylabel="validation accuracy", xlim=(0, None))
    ax.legend(loc="best")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description="Accuracy of a recipe at several budgets over seeds, each run "
                                     "timed end to end; see the module docstring.")
    parser.add_argument("--budgets", nargs="+", default=["5min", "10min", "20min"],
                        help="train.py budgets: 5min 10min 2e15flop ...")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--experiment", default="fast", help="configs/experiment/<name>.yaml; none: the plain recipe")
    parser.add_argument("--results", type=Path, default=None,
                        help="the records' folder (default docs/results/time_to_accuracy/<machine>)")
    parser.add_argument("--log-dir", type=Path, default=ROOT / "logs" / "time_to_accuracy",
                        help="where the run folders go (not committed)")
    parser.add_argument("--force", action="store_true", help="re-run budgets and seeds that have a record")
    parser.add_argument("--report", nargs="?", const="", default=None, metavar="DIR",
                        help="no training: the tables of the records in DIR (default: --results)")
    parser.add_argument("--out", type=Path, default=None, help="also write the tables to this markdown file")
    parser.add_argument("--plot", type=Path, default=None, help="draw accuracy against time into this PNG")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for train.py (after --)")
    args = parser.parse_args(argv)
    overrides = [o for o in args.overrides if o != "--"]
    for budget in args.budgets:
        try:
            parse_budget(budget)
        except ValueError as err:
            parser.error(f"--budgets: {err}")
    if any(o.lstrip("+~").startswith(RESERVED) for o in overrides):
        parser.error("give budgets with --budgets, seeds with --seeds and the experiment with --experiment, "
                     f"not as overrides: {overrides}")
    results = args.results or default_results()
    print(f"# {shlex.join(['python', 'benchmarks/time_to_accuracy.py', *argv])}")
    print(f"# {summary()}")
    if args.report is None:
        overrides = data_overrides(overrides) + overrides
        command = shlex.join(["python", "benchmarks/time_to_accuracy.py", *argv])
        for budget in args.budgets:
            for seed in args.seeds:
                # resolved: train.py runs from the repository root, whatever this command's folder
                run_one(args.experiment, budget, seed, overrides, results, args.log_dir.resolve(), args.force, command)
    folder = Path(args.report) if args.report else results
    records = load_records(folder)
    if not records:
        parser.error(f"no time-to-accuracy records under {folder}")
    text = report(records)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    if args.plot is not None:
        plot(records, args.plot)
        print(f"plot: {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
