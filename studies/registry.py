"""The study reports: a results table and a plot per study, generated from the runs' own logs.

    convzoo study <study> <sweep folder> [<sweep folder> ...] [--out docs/studies] [--markdown]
    convzoo study all logs/train/multiruns        # every study whose runs are found there
    convzoo study record <sweep folder> --out docs/results/studies/<study>/<machine>

(``python -m convzoo.studies`` is the same command.) Each study is ``python train.py -m
experiment=<study>`` (its YAML states the budget) and a module here that declares its ``TITLE`` and
its ``report(runs, out, *, repeats, batch) -> (markdown, figure paths)``; optional module attributes:
``TASK`` (the runs it reads: classifier by default), ``FOLDERS`` (the folders its command names),
``NEEDS_RUNS`` (False: it reports without runs), ``REFERENCE_STUDIES`` (with ``all``, those studies'
runs of the same recipe join it), ``reference_models()`` (the only models a reference study's runs join
with, where not all of them), ``FIGURE_ALT`` and ``RECORD_FILES`` (files of a run folder,
besides its metrics, config and scalars, that its report reads: ``record`` keeps them). A single
study reads every run of its task under the folders given (so ``highway <highway sweep>
<degradation sweep>`` adds the plain and
residual nets of the same budget as references); ``all`` sorts runs by the ``study`` key their
experiment config sets. Each run folder holds ``config.yaml``, ``metrics.json`` and its TensorBoard
events (``train.py``). Output: the markdown table(s) on stdout (``--markdown``: a whole README
section) and ``<out>/<study>.png`` and ``<out>/<study>.md``.

``record`` keeps each run found under the folders as a record of a few KB (``convzoo.training.runs.
save_record``: metrics, config, scalars) in ``<out>/<run folder name>``; a study reports from record
folders as from the logs, so its committed records remake its table and plot on a fresh clone.
"""
from __future__ import annotations

import re
from importlib import import_module
from pathlib import Path

from convzoo.training import runs as convzoo_runs
from convzoo.training.runs import CLASSIFIER

from .common import Run, find_runs, label_runs, recipe

__all__ = ["STUDIES", "TITLES", "report", "report_all", "main"]

# A new study is a module of this package and its name here (the order of ``all`` and of README).
STUDIES = {name: import_module(f"convzoo.studies.{name}")
           for name in ("degradation", "highway", "efficiency", "checkerboard", "dilation", "pooling")}
TITLES = {name: module.TITLE for name, module in STUDIES.items()}
DATA = "data=folder data.root=../shared/datasets/cifar10-jpeg"


def _task(module) -> str:
    return getattr(module, "TASK", CLASSIFIER)


def report(study: str, folders, out: Path, *, repeats: int = 5, batch: int = 128, runs: list[Run] | None = None) -> str:
    """The study's markdown section (commands, tables, what they show, the plot); also written to
    ``<out>/<study>.md`` next to ``<out>/<study>.png``."""
    if study not in STUDIES:
        raise ValueError(f"unknown study {study!r}; expected one of: {', '.join(STUDIES)} (or all)")
    module, out = STUDIES[study], Path(out)
    runs = find_runs(folders, _task(module)) if runs is None else runs
    runs = label_runs([r for r in runs if joins(module, r)])
    if not runs and getattr(module, "NEEDS_RUNS", True):
        raise ValueError(f"no {_task(module)} runs (config.yaml + metrics.json) under {', '.join(map(str, folders))}; "
                         f"train them with: python train.py -m experiment={study} {DATA}")
    body, figures = module.report(runs, out, repeats=repeats, batch=batch)
    commands = (f"```bash\npython train.py -m experiment={study} {launched_with(runs)}\n"
                f"convzoo study {study} {folders_named(module, folders)} --out {out}\n```\n\n")
    alt = getattr(module, "FIGURE_ALT", study)
    text = f"#### {module.TITLE}\n\n" + commands + body + "".join(f"\n\n![{alt}]({p})" for p in figures) + "\n"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{study}.md").write_text(text)
    return text


def joins(module, run: Run) -> bool:
    """Whether a run found with the study's own joins its report: all do, but a reference study's
    runs only with the models the study names in ``reference_models()``, where it does (dilation takes
    the degradation study's resnet20, not its plain nets)."""
    pick = getattr(module, "reference_models", None)
    return pick is None or run.cfg.get("study") not in getattr(module, "REFERENCE_STUDIES", ()) or \
        run.model.get("name") in pick()


def launched_with(runs: list[Run]) -> str:
    """The overrides that every run of the sweep was given (what the study's multirun was launched
    with, less the swept model and the experiment), or the shared data override where none were saved."""
    saved = [r.overrides for r in runs if r.overrides]
    if not saved:
        return DATA
    def kept(o):
        return not o.startswith(("model=", "experiment=", "hydra.", "callbacks.progress_bar=")) and \
            all(o in other for other in saved)
    return " ".join(o for o in saved[0] if kept(o))


def folders_named(module, folders) -> str:
    """The folders as given where they are committed records (under docs/), else the study's placeholder."""
    given = [Path(f) for f in folders]
    if given and all(not f.is_absolute() and f.parts[:1] == ("docs",) for f in given):
        return " ".join(map(str, given))
    return getattr(module, "FOLDERS", "<the sweep folder>")


def report_all(folders, out: Path, *, repeats: int = 5, batch: int = 128) -> str:
    """Every study with runs under ``folders`` (told apart by their config's ``study`` key), and
    those that report without runs."""
    found = {task: find_runs(folders, task) for task in {_task(m) for m in STUDIES.values()}}
    parts = []
    for study, module in STUDIES.items():
        runs = found[_task(module)]
        mine = [r for r in runs if r.cfg.get("study") == study]
        references = getattr(module, "REFERENCE_STUDIES", ())
        if mine and references:
            recipes = {recipe(m) for m in mine}
            mine += [r for r in runs if r.cfg.get("study") in references and recipe(r) in recipes]
        if mine or not getattr(module, "NEEDS_RUNS", True):
            parts.append(report(study, folders, out, repeats=repeats, batch=batch, runs=mine))
    return "\n".join(parts)


def record(folders, out: Path) -> str:
    """Save every run under ``folders`` as a record in ``<out>/<run folder name>``; what was saved."""
    found = convzoo_runs.find_runs(folders)
    if not found:
        raise ValueError(f"no runs (metrics.json) under {', '.join(map(str, folders))}")
    names = [run.name for run in found]
    if len(set(names)) < len(names):
        raise ValueError(f"two runs share a folder name ({', '.join(sorted({n for n in names if names.count(n) > 1}))}); "
                         "record one sweep folder at a time")
    extra = sorted({name for module in STUDIES.values() for name in getattr(module, "RECORD_FILES", ())})
    lines = []
    for run in found:
        dest = convzoo_runs.save_record(run, Path(out) / run.name, extra_files=extra)
        size = sum(f.stat().st_size for f in dest.iterdir())
        lines.append(f"{run.path} -> {dest} ({size / 1024:.1f} KB)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="convzoo study", description=__doc__.split("\n")[0])
    parser.add_argument("study", choices=[*STUDIES, "all", "record"])
    parser.add_argument("folders", nargs="*", type=Path, help="sweep (or run) folders holding the study's runs")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for the PNG and .md files (default docs/studies); with record, for the records")
    parser.add_argument("--markdown", action="store_true", help="print the whole README section, not just the tables")
    parser.add_argument("--repeats", type=int, default=5,
                        help="efficiency: timed rounds per net for the measured speeds (0: skip the measurement)")
    parser.add_argument("--batch", type=int, default=128, help="efficiency: batch size of the measured speeds")
    args = parser.parse_args(argv)
    if not args.folders and (args.study in ("all", "record") or getattr(STUDIES[args.study], "NEEDS_RUNS", True)):
        parser.error(f"{args.study} needs at least one sweep folder")
    if args.study == "record":
        if args.out is None:
            parser.error("record needs --out, the folder for the records (such as docs/results/studies/<study>/<machine>)")
        try:
            print(record(args.folders, args.out))
        except (ValueError, FileNotFoundError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        return 0
    args.out = args.out or Path("docs/studies")
    try:
        kwargs = dict(repeats=args.repeats, batch=args.batch)
        text = (report_all(args.folders, args.out, **kwargs) if args.study == "all" else
                report(args.study, args.folders, args.out, **kwargs))
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if not args.markdown:  # the tables and what they show, without the commands and image links
        text = "\n".join(line for line in text.splitlines()
                         if not line.startswith(("![", "```", "python ", "convzoo ")))
    print(re.sub(r"\n{3,}", "\n\n", text).strip())
    print(f"wrote {args.out}/", file=sys.stderr)
    return 0
