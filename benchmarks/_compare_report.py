"""The comparison's report, from its records alone (``benchmarks/compare.py``): the leaderboard (one
row per model, mean and spread over seeds), one row per run, three plots, and, on request, README's
leaderboard section and the zoo table's accuracy column.

Files, beside the machine's folder of records ``docs/results/compare/<machine>/``:
``<machine>.md`` (the tables), ``<machine>_acc_vs_macs.png``, ``<machine>_acc_vs_cost.png`` (accuracy
against measured seconds per epoch of training, the Pareto front marked) and ``<machine>_curves.png``
(every model's validation accuracy against wall-clock minutes since launch, seed 0).
"""
from __future__ import annotations

import re
import statistics
from pathlib import Path

from convzoo.models.complexity import si
from convzoo.training.tables import format_number, markdown_table
from convzoo.training.timing import spread


def markers(board: str) -> tuple[str, str]:
    """README's lines around one machine's leaderboard (``board``: the name of its records' folder)."""
    return f"<!-- leaderboard {board} -->", f"<!-- /leaderboard {board} -->"


def models(records: list[dict]) -> list[dict]:
    """One entry per model and budget: its runs' accuracies and costs, best mean accuracy first."""
    by_model: dict[tuple, list[dict]] = {}
    for r in records:
        by_model.setdefault((r["model"], r["budget"]), []).append(r)
    rows = []
    for (name, budget), runs in by_model.items():
        runs.sort(key=lambda r: r["seed"])
        accs = [r["metrics"]["val/acc"] for r in runs if r["metrics"].get("val/acc") is not None]
        m, inf = runs[0]["metrics"], runs[0].get("inference", {})
        # images seen over the fit's seconds, validation passes included: defined for every run, even
        # one that stops inside its first epoch (an epoch's own img/s then holds the final validation)
        rates = [r["metrics"]["train_images_seen"] / r["metrics"]["fit_seconds"] for r in runs
                 if r["metrics"].get("fit_seconds") and r["metrics"].get("train_images_seen")]
        rows.append({"model": name, "budget": budget, "family": runs[0]["family"], "runs": runs, "accs": accs,
                     "acc": statistics.fmean(accs) if accs else None, "params": m.get("params"), "macs": m.get("macs"),
                     "train_rate": statistics.median(rates) if rates else None,
                     "infer_rate": inf.get("images_per_sec"), "latency_ms": inf.get("latency_ms"),
                     "images": statistics.fmean(r["metrics"].get("train_images_seen", 0) for r in runs),
                     "epochs": statistics.fmean(r["metrics"].get("epochs_trained", 0) for r in runs),
                     # fit seconds per epoch of the run's own training split (train.py's epochs_trained)
                     "epoch_seconds": statistics.median(r["metrics"]["fit_seconds"] / r["metrics"]["epochs_trained"]
                                                        for r in runs) if all(r["metrics"].get("epochs_trained")
                                                                              for r in runs) else None,
                     "flops": statistics.fmean(r["metrics"].get("train_flops", 0) for r in runs),
                     "wall": max(r["wall_seconds"] for r in runs), "precision": m.get("precision")})
    rows.sort(key=lambda row: (row["acc"] is None, -(row["acc"] or 0.0), row["model"]))
    return rows


def pct(value) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def leaderboard_table(rows: list[dict]) -> str:
    body = []
    for rank, row in enumerate(rows, 1):
        acc = pct(row["acc"]) + (f" ± {100 * spread(row['accs']):.2f}" if len(row["accs"]) > 1 else "")
        body.append([rank, row["model"], row["family"], si(row["params"]), si(row["macs"]), row["budget"], acc,
                     len(row["runs"]),
                     format_number(row["train_rate"]), format_number(row["infer_rate"]),
                     None if row["latency_ms"] is None else f"{row['latency_ms']:.2f}",
                     format_number(round(row["images"])), f"{row['epochs']:.2f}",
                     f"{row['flops']:.3g}", f"{row['wall']:.0f}"])
    header = ["#", "model", "family", "params", "MACs", "budget", "val acc (mean ± std)", "seeds", "fit img/s",
              "infer img/s", "latency ms @1", "images seen", "epochs", "train FLOPs", "wall s (max)"]
    return markdown_table(header, body, "rlllrlrrrrrrrrr")


def run_table(records: list[dict]) -> str:
    body = []
    for r in sorted(records, key=lambda r: (r["model"], r["budget"], r["seed"])):
        m = r["metrics"]
        body.append([r["model"], r["budget"], r["seed"], pct(m.get("val/acc")), pct(m.get("val/acc_best")), f"{r['wall_seconds']:.0f}",
                     len(r["val_curve"]), format_number(m.get("train_images_seen")),
                     f"{m.get('fit_seconds', 0):.0f}", m.get("precision"), r["fingerprint"]])
    header = ["model", "budget", "seed", "val acc", "best val acc", "wall (s)", "validations", "images seen", "fit (s)",
              "precision", "config fingerprint"]
    return markdown_table(header, body, "llrrrrrrrll")


def header(records: list[dict]) -> list[str]:
    machines = sorted({"{cpu}, native bf16 {bf16}, {cores} cores, torch {torch}".format(
        **r["machine"], bf16="yes" if r["machine"]["native_bf16"] else "no") for r in records})
    budgets = sorted({r["budget"] for r in records})
    commands = list(dict.fromkeys(r["benchmark_command"] for r in records))
    return [f"Budget {', '.join(budgets)} per run, recipe `experiment=compare` (configs/experiment/compare.yaml), "
            "CIFAR-10 (shared JPEG copy), 45k/5k split; validation accuracy with flip test-time augmentation. "
            "Fit img/s: images seen over the fit's seconds, validation passes included (step speeds alone: "
            "docs/defaults.md). Inference: fp32, eval mode, batch {} and batch 1, medians of 5.".format(
                "/".join(sorted({str(r["inference"]["throughput_batch_size"]) for r in records}))), "",
            "On: " + "; ".join(machines), "", "Made by:", "", *(f"    {c}" for c in commands)]


def pareto(rows: list[dict]) -> list[dict]:
    """The models no other model beats on both accuracy and seconds per epoch (fastest first)."""
    front, best = [], -1.0
    for row in sorted((r for r in rows if r["acc"] is not None and r["epoch_seconds"]), key=lambda r: r["epoch_seconds"]):
        if row["acc"] > best:
            front.append(row)
            best = row["acc"]
    return front


def plots(rows: list[dict], records: list[dict], stem: Path) -> list[Path]:
    from convzoo.training.reporting import plt  # Agg backend

    families = sorted({row["family"] for row in rows})
    colour = {f: f"C{i % 10}" for i, f in enumerate(families)}
    made = []
    for x_key, xlabel, suffix in (("macs", "MACs per image (log)", "acc_vs_macs"),
                                  ("epoch_seconds", "measured fit seconds per epoch, validation included (log)", "acc_vs_cost")):
        fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=100)
        for row in rows:
            x = row[x_key]
            if row["acc"] is None or not x:
                continue
            ax.scatter(x, 100 * row["acc"], color=colour[row["family"]], s=30, zorder=3)
            ax.annotate(row["model"], (x, 100 * row["acc"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
        if x_key == "epoch_seconds":
            front = pareto(rows)
            ax.plot([r["epoch_seconds"] for r in front], [100 * r["acc"] for r in front], "k--", lw=1,
                    label="Pareto front", zorder=2)
            ax.legend(loc="best", fontsize=8)
        ax.set(xscale="log", xlabel=xlabel, ylabel="validation accuracy (%)")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        made.append(stem.with_name(f"{stem.name}_{suffix}.png"))
        fig.savefig(made[-1])
        plt.close(fig)
    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=100)
    members: dict[str, int] = {}  # a family's models share its colour and differ in line and marker
    for r in sorted(records, key=lambda r: r["model"]):
        if r["seed"] == 0 and r["val_curve"]:
            k = members[r["family"]] = members.get(r["family"], -1) + 1
            ax.plot([t / 60 for t, _ in r["val_curve"]], [100 * a for _, a in r["val_curve"]], ms=4, lw=1,
                    marker="os^Dv"[k % 5], ls=("-", "--", ":", "-.")[k % 4], color=colour[r["family"]],
                    label=r["model"])
    ax.set(xlabel="wall-clock minutes since launch", ylabel="validation accuracy (%)", xlim=(0, None))
    ax.legend(loc="best", fontsize=6, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    made.append(stem.with_name(f"{stem.name}_curves.png"))
    fig.savefig(made[-1])
    plt.close(fig)
    return made


def update_readme(readme: Path, sections: dict[str, str], accuracy: dict[str, dict[str, str]]) -> None:
    """Replace each board's leaderboard in README (between its markers) and the zoo table (the table
    under ``| model | params | paper |``), whose accuracy columns are ``accuracy``'s (heading -> model -> cell)."""
    from convzoo.cli import zoo_markdown, zoo_rows

    text = readme.read_text()
    for board, section in sections.items():
        start_mark, end_mark = markers(board)
        if start_mark not in text or end_mark not in text:
            raise SystemExit(f"{readme} has no section for the {board} leaderboard: put the lines "
                             f"'{start_mark}' and '{end_mark}' where its table should go")
        start, end = text.index(start_mark) + len(start_mark), text.index(end_mark)
        text = text[:start] + "\n" + section + "\n" + text[end:]
    zoo = re.search(r"^\| model \| params \| paper \|.*\n(\|.*\n)+", text, flags=re.MULTILINE)
    if zoo is None:
        raise SystemExit(f"{readme} has no zoo table (a line starting '| model | params | paper |')")
    text = text[:zoo.start()] + zoo_markdown(zoo_rows(), accuracy=accuracy) + "\n" + text[zoo.end():]
    readme.write_text(text)


def report(records: list[dict], results: Path, readme: Path | None = None) -> tuple[str, str, dict[str, str]]:
    """One board's tables (written to ``<results>.md``, and returned) and plots; with ``readme``, also
    its README section and its zoo column (model -> mean accuracy), for ``update_readme``."""
    rows = models(records)
    stem = results.parent / results.name
    images = plots(rows, records, stem)
    head, table = header(records), leaderboard_table(rows)
    text = "\n".join([*head, "", table, "", run_table(records)]) + "\n"
    stem.with_suffix(".md").write_text(text)
    section = ""
    if readme is not None:
        links = " · ".join(f"[{p.stem[len(stem.name) + 1:]}]({p.relative_to(readme.parent)})" for p in images)
        section = "\n".join([*head, "", table, "",
                             f"Plots: {links}. Every run: [{stem.with_suffix('.md').name}]"
                             f"({stem.with_suffix('.md').relative_to(readme.parent)})."])
    return text, section, {row["model"]: pct(row["acc"]) for row in rows}
