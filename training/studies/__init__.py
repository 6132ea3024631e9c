"""The studies: a results table and a plot per study, generated from the runs' own logs.

    python -m training.studies <study> <sweep folder> [<sweep folder> ...] [--out docs/studies] [--markdown]
    python -m training.studies all logs/train/multiruns        # every study whose runs are found there

Studies (each is ``python train.py -m experiment=<study>``; its YAML states the budget):
degradation, highway, efficiency, checkerboard, dilation, pooling. A single study reads every
classifier run under the folders given (so ``highway <highway sweep> <degradation sweep>`` adds the
plain and residual nets of the same budget as references); ``all`` sorts runs by the ``study`` key
their experiment config sets. Each run folder holds ``config.yaml``, ``metrics.json`` and its
TensorBoard events (``train.py``). Output: the markdown table(s) on stdout (``--markdown``: a whole
README section) and ``<out>/<study>.png`` and ``<out>/<study>.md``.
"""
from __future__ import annotations

import re
from pathlib import Path

from .reports import degradation, dilation, efficiency, highway, pooling
from ..runs import AUTOENCODER
from ..runs import find_runs as find_all_runs
from .runs import Run, budget_note, find_runs, label_runs, recipe

__all__ = ["STUDIES", "report", "report_all", "find_runs", "main"]

STUDIES = ("degradation", "highway", "efficiency", "checkerboard", "dilation", "pooling")
REPORTS = {"degradation": degradation, "highway": highway, "efficiency": efficiency, "dilation": dilation,
           "pooling": pooling}
TITLES = {
    "degradation": "Degradation: does the deeper plain net train worse, and the deeper residual net not? "
                   "(He et al. 2016, Fig. 6)",
    "highway": "Highway versus residual; the gate bias; how open the gates end up (Srivastava et al. 2015)",
    "efficiency": "One network, five forms: standard, depthwise-separable, grouped, grouped + shuffle, "
                  "ShuffleNet units",
    "checkerboard": "Checkerboard artifacts of transposed convolutions (Odena et al. 2016)",
    "dilation": "Stride versus dilation: receptive field, cost and accuracy (Yu et al. 2017)",
    "pooling": "Max-pooling versus strided convolution (Springenberg et al. 2015)",
}
DATA = "data=folder data.root=../shared/datasets/cifar10-jpeg"
FOLDERS = {"highway": "<its sweep folder> <the degradation sweep folder>"}  # the references share its budget


def checkerboard(folders, out: Path) -> str:
    """Study 4 belongs to the autoencoder: its own report function, once per sweep folder."""
    try:
        from ..checkerboard import report_checkerboard
    except ImportError:
        try:
            from ..autoencoder import report_checkerboard
        except ImportError:
            raise ValueError("the checkerboard study's report (report_checkerboard in training/checkerboard.py "
                             "or training/autoencoder.py) is not in this tree") from None
    return "\n\n".join(report_checkerboard(Path(f), out) for f in folders)


def report(study: str, folders, out: Path, *, repeats: int = 5, batch: int = 128, runs: list[Run] | None = None) -> str:
    """The study's markdown section (commands, tables, what they show, the plot); also written to
    ``<out>/<study>.md`` next to ``<out>/<study>.png``."""
    if study not in STUDIES:
        raise ValueError(f"unknown study {study!r}; expected one of: {', '.join(STUDIES)} (or all)")
    out = Path(out)
    if study == "checkerboard":
        body, figures = checkerboard(folders, out), []
    else:
        runs = find_runs(folders) if runs is None else label_runs(runs)
        if not runs and study != "dilation":
            raise ValueError(f"no classifier runs (config.yaml + metrics.json) under {', '.join(map(str, folders))}; "
                             f"train them with: python train.py -m experiment={study} {DATA}")
        body, figures = REPORTS[study](runs, out, repeats=repeats, batch=batch)
        if runs:
            body += "\n\n" + budget_note(runs)
    commands = (f"```bash\npython train.py -m experiment={study} {DATA}\n"
                f"python -m training.studies {study} {FOLDERS.get(study, '<the sweep folder>')} --out {out}\n```\n\n")
    text = (f"#### {TITLES[study]}\n\n" + (commands if study != "checkerboard" else "") + body
            + "".join(f"\n\n![{study}]({p})" for p in figures) + "\n")
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{study}.md").write_text(text)
    return text


def report_all(folders, out: Path, *, repeats: int = 5, batch: int = 128) -> str:
    """Every study with runs under ``folders`` (told apart by their config's ``study`` key); the
    dilation study's complexity table always."""
    runs = find_runs(folders)
    parts = []
    for study in STUDIES:
        if study == "checkerboard":
            sweeps = sorted({run.path.parent for run in find_all_runs(folders, task=AUTOENCODER)})
            if sweeps:
                parts.append(report(study, sweeps, out))
            continue
        mine = [r for r in runs if r.cfg.get("study") == study]
        if study == "highway" and mine:  # the degradation study's nets of the same budget are its references
            mine += [r for r in runs if r.cfg.get("study") == "degradation" and recipe(r) in {recipe(m) for m in mine}]
        if mine or study == "dilation":
            parts.append(report(study, folders, out, repeats=repeats, batch=batch, runs=mine))
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m training.studies", description=__doc__.split("\n")[0])
    parser.add_argument("study", choices=[*STUDIES, "all"])
    parser.add_argument("folders", nargs="*", type=Path, help="sweep (or run) folders holding the study's runs")
    parser.add_argument("--out", type=Path, default=Path("docs/studies"), help="folder for the PNG and .md files")
    parser.add_argument("--markdown", action="store_true", help="print the whole README section, not just the tables")
    parser.add_argument("--repeats", type=int, default=5,
                        help="efficiency: timed rounds per net for the measured speeds (0: skip the measurement)")
    parser.add_argument("--batch", type=int, default=128, help="efficiency: batch size of the measured speeds")
    args = parser.parse_args(argv)
    if not args.folders and args.study != "dilation":
        parser.error(f"{args.study} needs at least one sweep folder")
    try:
        kwargs = dict(repeats=args.repeats, batch=args.batch)
        text = (report_all(args.folders, args.out, **kwargs) if args.study == "all" else
                report(args.study, args.folders, args.out, **kwargs))
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if not args.markdown:  # the tables and what they show, without the commands and image links
        text = "\n".join(line for line in text.splitlines() if not line.startswith(("![", "```", "python ")))
    print(re.sub(r"\n{3,}", "\n\n", text).strip())
    print(f"wrote {args.out}/", file=sys.stderr)
    return 0
