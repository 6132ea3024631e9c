"""The comparison: every family of the zoo trained at one budget, one recipe (``experiment=compare``),
then a leaderboard, the zoo table's accuracy column and three plots, all rebuilt from small
committed records. Each machine has its own board (speeds differ, so do the rankings at equal
time); a report covers every board: README holds each one's table and the zoo table a column each.

    python benchmarks/compare.py                        # train what is missing or stale, then report
    python benchmarks/compare.py --models resnet20 --seeds 0 1 2    # only these
    python benchmarks/compare.py --report --readme      # no training: tables, plots and README from the records
    python benchmarks/compare.py -- budget=20min        # Hydra overrides for every run after --

Each (model, seed) is one ``python train.py experiment=compare model=<m> seed=<s>`` command (the
shared CIFAR-10 JPEG data when present), timed from launch to exit, then the network's inference
speed (batch 256) and latency (batch 1) are measured in this process. Runs go one after another,
never in parallel (they are timings), and each leaves a record in
``docs/results/compare/<machine>/<model>_<budget>_seed<s>.json``. A record is kept while the config its
command composes today (model, recipe, budget, data) has the fingerprint the record was trained
with; a changed model YAML or recipe makes it stale, and the next call re-trains it. So the table
fills across sittings, and a new model costs one run.

By default: every model of the sweep in configs/experiment/compare.yaml at seed 0, then seeds 1
and 2 of the models in SPREAD, which show the spread a ranking must exceed.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere: the project's packages are importable

from benchmarks._compare_report import report, update_readme  # noqa: E402
from benchmarks._records import (fingerprint, launch, load_records, machine, machine_slug, make_record,  # noqa: E402
                                 record_name, write_record)
from benchmarks.time_to_accuracy import data_overrides  # noqa: E402
from convzoo.training.machine import summary  # noqa: E402

RESULTS = ROOT / "docs" / "results" / "compare"
SPREAD = ("resnet20", "mobilenet_v2_x1_0", "shufflenet_v2_x1_0")
EXCLUDED = ("paths", "hydra", "logger", "ckpt_path", "optimized_metric", "profile")


def shown(path: Path) -> str:
    """A path as the log shows it: relative to the repository when inside it."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def compose(overrides: list[str], *, hydra: bool = False):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return hydra_compose("train", overrides=overrides, return_hydra_config=hydra)


def sweep_models() -> list[str]:
    """The models that ``python train.py -m experiment=compare`` trains (its sweeper's list)."""
    cfg = compose(["experiment=compare"], hydra=True)
    return [m.strip() for m in str(cfg.hydra.sweeper.params.model).split(",")]


def composed(overrides: list[str]) -> dict:
    """What decides a run's result: the composed config less logging, paths, the progress bar, the
    profiler, and progressive crops while they are off (``size: null``), as if absent."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.to_container(compose(overrides), resolve=False)
    for key in EXCLUDED:
        cfg.pop(key, None)
    callbacks = cfg.get("callbacks") or {}
    for key in ("progress_bar", "profiler"):
        callbacks.pop(key, None)
    if (callbacks.get("progressive") or {}).get("size") is None:
        callbacks.pop("progressive", None)
    return cfg


def run_overrides(model: str, seed: int, extra: list[str]) -> list[str]:
    """The overrides of one leaderboard run: its train.py command line and its fingerprint's config."""
    return ["experiment=compare", f"model={model}", f"seed={seed}", *extra]


def inference_speed(model: str, channels_last: bool, batch_size: int) -> dict:
    """Throughput at batch 256 and latency at batch 1 of the model in eval mode (fp32, weights
    untrained: speed does not depend on them), as the run trained it (memory format)."""
    import torch

    from convzoo.models.registry import create_model
    from convzoo.training.timing import measure_inference

    net = create_model(model).eval()
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    return measure_inference(net, (3, 32, 32), torch.device("cpu"), batch_size=batch_size, repeats=5)


def run_one(model: str, seed: int, extra: list[str], results: Path, log_root: Path, force: bool,
            benchmark_command: str, infer_batch: int) -> None:
    from convzoo.models.families import model_family

    overrides = run_overrides(model, seed, extra)
    config = composed(overrides)
    key = fingerprint(config)
    path = results / record_name(model, config["budget"], f"seed{seed}")
    if path.exists() and not force:
        old = json.loads(path.read_text())
        if old.get("fingerprint") == key:
            print(f"# kept {shown(path)} (up to date; --force re-runs it)", flush=True)
            return
        print(f"# stale {shown(path)}: its model or recipe changed since it was trained", flush=True)
    run = launch(overrides, log_root / results.name / path.stem / "train" / "runs", ROOT)
    record = make_record(run["run_dir"], experiment="compare", budget=str(config["budget"]), seed=seed,
                         overrides=extra, command=run["command"], benchmark_command=benchmark_command,
                         launched=run["launched"], wall_seconds=run["wall_seconds"], model=model,
                         family=model_family(model), fingerprint=key, config=config)
    record["inference"] = inference_speed(model, bool(record["metrics"].get("channels_last", True)), infer_batch)
    write_record(path, record)
    print(f"# {model} seed {seed}: {run['wall_seconds']:.0f} s, val acc "
          f"{record['metrics'].get('val/acc', float('nan')):.4f}: {shown(path)}", flush=True)


def current(records: list[dict]) -> tuple[list[dict], list[str]]:
    """The records whose config, composed today with the overrides they were run with, has the
    fingerprint they were trained with (the tables show only these), and the names of the stale
    ones: a leaderboard never mixes runs of an old recipe with runs of the new."""
    kept, stale = [], []
    for r in records:
        config = composed(run_overrides(r["model"], r["seed"], r.get("overrides", [])))
        (kept if r.get("fingerprint") == fingerprint(config) else stale).append(r)
    return kept, sorted(f"{r['model']} seed {r['seed']}" for r in stale)


def plan(models: list[str] | None, seeds: list[int] | None) -> list[tuple[str, int]]:
    """(model, seed) in training order: seed 0 of every model first, so a sitting cut short
    still leaves a whole leaderboard, then the spread's seeds."""
    if models is not None or seeds is not None:
        return [(m, s) for s in (seeds or [0]) for m in (models or sweep_models())]
    return [(m, 0) for m in sweep_models()] + [(m, s) for s in (1, 2) for m in SPREAD]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description="Every family at one budget: the leaderboard; see the docstring.")
    parser.add_argument("--models", type=lambda s: s.split(","), default=None,
                        help="comma-separated (default: configs/experiment/compare.yaml's sweep)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None,
                        help=f"default: 0 for every model, and 1 2 for {', '.join(SPREAD)}")
    parser.add_argument("--results", type=Path, default=None,
                        help="where this machine's records go (default docs/results/compare/<machine>)")
    parser.add_argument("--boards", type=Path, default=None,
                        help="the folder of every machine's records folder, each one leaderboard "
                             "(default: the parent of --results)")
    parser.add_argument("--log-dir", type=Path, default=ROOT / "logs" / "compare",
                        help="where the run folders go (not committed)")
    parser.add_argument("--force", action="store_true", help="re-run what has an up-to-date record")
    parser.add_argument("--report", action="store_true", help="no training: report the records")
    parser.add_argument("--readme", nargs="?", type=Path, const=ROOT / "README.md", default=None, metavar="PATH",
                        help="also rewrite README's leaderboard and the zoo table's accuracy column")
    parser.add_argument("--infer-batch", type=int, default=256, help="batch of the inference throughput")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every run (after --), e.g. budget=20min")
    args = parser.parse_args(argv)
    extra = [o for o in args.overrides if o != "--"]
    if any(o.lstrip("+~").startswith(("experiment=", "model=", "seed=", "paths.log_dir=")) for o in extra):
        parser.error(f"give models with --models and seeds with --seeds, not as overrides: {extra}")
    from convzoo.models.registry import list_models

    unknown = sorted(set(args.models or []) - set(list_models()))
    if unknown:
        parser.error(f"--models: unknown {', '.join(unknown)}; known models: {', '.join(list_models())}")
    here = machine()
    results = args.results or RESULTS / machine_slug(here["cpu"], here["native_bf16"])
    command = shlex.join(["python", "benchmarks/compare.py", *argv])
    print(f"# {command}\n# {summary()}", flush=True)
    if not args.report:
        extra = data_overrides(extra) + extra
        for model, seed in plan(args.models, args.seeds):
            run_one(model, seed, extra, results, args.log_dir.resolve(), args.force, command, args.infer_batch)
    boards, root = {}, args.boards or results.parent  # every machine's leaderboard
    for folder in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        records, stale = current([r for r in load_records(folder) if r.get("experiment") == "compare"])
        if stale:
            print(f"# {folder.name}: left out of the tables, stale (their model or recipe changed since): "
                  f"{', '.join(stale)}; python benchmarks/compare.py re-trains them", flush=True)
        if records:
            boards[folder] = records
    if not boards:
        parser.error(f"no up-to-date comparison records under {root}")
    sections, accuracy = {}, {}
    for folder, records in boards.items():
        text, sections[folder.name], column = report(records, folder, readme=args.readme)
        budget = "/".join(sorted({r["budget"] for r in records}))
        accuracy[f"val acc ({budget}, {folder.name})"] = column
        print(f"## {folder.name}\n{text}")
    if args.readme is not None:
        update_readme(args.readme, sections, accuracy)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
