"""Time to accuracy of a recipe over seeds, end to end: each seed is one ``python train.py`` command,
timed from its launch (imports and data loading included) to its exit.

    python benchmarks/time_to_accuracy.py                       # experiment=fast, seeds 0 1 2
    python benchmarks/time_to_accuracy.py --seeds 0 --target 0.9 -- trainer.max_epochs=4
    python benchmarks/time_to_accuracy.py --report logs/time_to_accuracy   # tables from earlier runs

Prints one row per seed (final and best validation accuracy, wall time, time to the target) and
one row per epoch (mean and standard deviation over seeds of the accuracy and of the time since
launch), and draws validation accuracy against wall-clock minutes for every seed.
Arguments after ``--`` go to train.py as Hydra overrides. The shared CIFAR-10 JPEG data is used
when present (``data=folder data.root=../shared/datasets/cifar10-jpeg``).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere: the project's packages are importable

from convzoo.training.machine import summary  # noqa: E402
from convzoo.training.runs import read_scalars  # noqa: E402
from convzoo.training.tables import markdown_table  # noqa: E402
from convzoo.training.timing import spread  # noqa: E402

SHARED = ROOT.parent / "shared" / "datasets" / "cifar10-jpeg"


def run_seed(seed: int, log_dir: Path, experiment: str, overrides: list[str]) -> dict:
    """Launch one training command; returns its record (also saved as seed<seed>.json)."""
    seed_dir = log_dir / f"seed{seed}"
    given_data = any(o.startswith("data=") for o in overrides)
    data = ["data=folder", f"data.root={SHARED}"] if SHARED.is_dir() and not given_data else []
    command = [sys.executable, str(ROOT / "train.py"), f"experiment={experiment}", f"seed={seed}", *data,
               f"paths.log_dir={seed_dir}", "callbacks.progress_bar=null", *overrides]
    start = time.time()
    done = subprocess.run(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.time() - start
    if done.returncode != 0:
        raise SystemExit(f"seed {seed} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    runs = sorted((seed_dir / "train" / "runs").iterdir())
    record = {"seed": seed, "start": start, "wall_seconds": wall, "run_dir": str(runs[-1]), "command": command}
    (log_dir / f"seed{seed}.json").write_text(json.dumps(record, indent=2))
    return record


def val_curve(record: dict) -> list[tuple[float, float]]:
    """[(seconds since launch, val/acc)] per validation, in order."""
    points = read_scalars(record["run_dir"], ["val/acc"]).get("val/acc", [])
    return [(wall - record["start"], value) for _, value, wall in points]


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), spread(values)


def report(records: list[dict], target: float, budget: float, out: Path | None) -> str:
    curves = {r["seed"]: val_curve(r) for r in records}
    rows = []
    for r in records:
        curve = curves[r["seed"]]
        hit = next((t for t, a in curve if a >= target), None)
        rows.append([r["seed"], f"{curve[-1][1]:.4f}", f"{max(a for _, a in curve):.4f}", f"{r['wall_seconds']:.0f}",
                     "not reached" if hit is None else f"{hit:.0f}"])
    lines = [markdown_table(["seed", "final val acc", "best val acc", "wall time (s)", f"time to {target:.0%} (s)"],
                            rows, "rrrrr")]
    finals = [curves[r["seed"]][-1][1] for r in records]
    walls = [r["wall_seconds"] for r in records]
    (acc_mean, acc_std), (wall_mean, wall_std) = mean_std(finals), mean_std(walls)
    lines += ["", f"final val acc {acc_mean:.4f} ± {acc_std:.4f} (mean ± std over {len(records)} seeds); "
                  f"wall time {wall_mean:.0f} ± {wall_std:.0f} s (budget {budget:.0f} s); "
                  f"target {target:.0%} {'met' if acc_mean >= target and max(walls) <= budget else 'NOT met'}", ""]
    epochs = min(len(c) for c in curves.values())
    per_epoch = []
    for i in range(epochs):
        t_mean, _ = mean_std([curves[s][i][0] for s in curves])
        a_mean, a_std = mean_std([curves[s][i][1] for s in curves])
        per_epoch.append([i + 1, f"{t_mean:.0f}", f"{a_mean:.4f} ± {a_std:.4f}"])
    lines.append(markdown_table(["epoch", "time since launch (s)", "val acc (mean ± std)"], per_epoch, "rrr"))
    if out is not None:
        from convzoo.training.reporting import plt  # Agg backend
        fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
        for seed, curve in curves.items():
            ax.plot([t / 60 for t, _ in curve], [a for _, a in curve], "o-", ms=3, label=f"seed {seed}")
        ax.axhline(target, color="gray", ls="--", lw=1, label=f"target {target:.0%}")
        ax.axvline(budget / 60, color="gray", ls=":", lw=1, label=f"{budget / 60:.0f} min")
        ax.set(xlabel="wall-clock minutes since launch", ylabel="validation accuracy", xlim=(0, None))
        ax.legend(loc="lower right")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out)
        plt.close(fig)
        lines.append(f"\nplot: {out}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="fast")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--target", type=float, default=0.91)
    parser.add_argument("--budget", type=float, default=600.0, help="seconds of wall time per run")
    parser.add_argument("--log-dir", type=Path, default=ROOT / "logs" / "time_to_accuracy")
    parser.add_argument("--out", type=Path, default=None, help="PNG of accuracy against time")
    parser.add_argument("--report", type=Path, default=None, help="only report the records in this folder")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for train.py (after --)")
    args = parser.parse_args(argv)
    if not 0 < args.target <= 1:
        parser.error(f"--target should be an accuracy in (0, 1], got {args.target}")
    print(f"# {' '.join(['python benchmarks/time_to_accuracy.py', *(argv if argv is not None else sys.argv[1:])])}")
    print(f"# {summary()}")
    if args.report is not None:
        records = [json.loads(p.read_text()) for p in sorted(args.report.glob("seed*.json"))]
        if not records:
            parser.error(f"no seed*.json records in {args.report}")
    else:
        args.log_dir.mkdir(parents=True, exist_ok=True)
        records = [run_seed(s, args.log_dir, args.experiment, args.overrides) for s in args.seeds]
    print(report(records, args.target, args.budget, args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
