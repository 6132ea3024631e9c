"""The record one budgeted training run of a benchmark (``time_to_accuracy.py``, ``compare.py``)
leaves: a few KB of JSON that the report is rebuilt from, so the records are committed and the run
folders (checkpoints, events: megabytes) are not.

A record holds what the command was (experiment, budget, seed, overrides), what it cost (wall
seconds from launch to exit, images seen, FLOPs), what it reached (train.py's metrics.json less
its paths), the recipe as composed (config.yaml), the validation curve against wall-clock seconds
since launch (the TensorBoard events), the calibration's choice and what it cost (the run folder's
calibration.json: the rates timed, torch.compile's seconds, the seconds spent timing), and the
machine. Records live in one folder per machine, ``<results>/<machine slug>/<name>.json``: timings
from different processors never share a table unless asked to.
"""
from __future__ import annotations

import hashlib
import json
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import torch

from convzoo.training.budget import parse_budget
from convzoo.training.checkpoint_io import temp_path
from convzoo.training.machine import cpu_name, has_native_bf16, usable_cores
from convzoo.training.runs import Run, portable_metrics, read_scalars


def machine() -> dict:
    return {"cpu": cpu_name(), "native_bf16": has_native_bf16(), "cores": usable_cores(),
            "torch": torch.__version__}


def machine_slug(cpu: str, native_bf16: bool) -> str:
    """'AMD EPYC 9R14 96-Core Processor (family 25, ...)' -> 'amd-epyc-9r14-bf16': the processor
    line without its trade marks, clock, core count and generation numbers, plus how it trains
    (bf16 where it multiplies bf16 natively, else fp32), since that decides the recipe's speed."""
    name = cpu.split(" (family")[0].split("@")[0]
    name = re.sub(r"\((R|TM)\)|\bCPU\b|\bProcessor\b|\b\d+-Core\b", " ", name, flags=re.IGNORECASE)
    words = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return f"{words or 'cpu'}-{'bf16' if native_bf16 else 'fp32'}"


def record_name(*parts) -> str:
    """'fast', '10min', 'seed0' -> 'fast_10min_seed0.json' (anything unsafe in a file name -> _)."""
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", "_".join(str(p) for p in parts)) + ".json"


def fingerprint(node) -> str:
    """A short hash of a config (plain containers): a record whose fingerprint differs from the
    config a run would compose today is stale (its model or recipe has changed since). Keys set to
    null are left out: a new option that is off by default changes no result."""
    def settled(n):
        if isinstance(n, dict):
            return {k: settled(v) for k, v in n.items() if v is not None}
        return [settled(v) for v in n] if isinstance(n, list) else n

    text = json.dumps(settled(node), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def launch(train_args: list[str], runs_dir: Path, root: Path) -> dict:
    """Run ``python train.py <train_args>`` (from ``root``, its run folder under ``runs_dir``) to the
    end and time it from launch to exit; the new run folder, the wall time and the command as a
    user would type it. A failed run stops the benchmark with the end of its stderr."""
    if not any(a.startswith("callbacks.progress_bar=") for a in train_args):
        train_args = [*train_args, "callbacks.progress_bar=null"]  # a progress bar in a captured stream is noise
    command = shlex.join(["python", "train.py", *train_args])
    print(f"# {command}", flush=True)
    before = set(runs_dir.iterdir()) if runs_dir.is_dir() else set()
    launched, start = time.time(), time.perf_counter()
    done = subprocess.run([sys.executable, "train.py", *train_args, f"paths.log_dir={runs_dir.parents[1]}"],
                          cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{command} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    new = sorted(set(runs_dir.iterdir()) - before) if runs_dir.is_dir() else []
    if len(new) != 1:
        raise SystemExit(f"expected one new run folder under {runs_dir}, found {len(new)}")
    return {"run_dir": new[0], "command": command, "launched": launched, "wall_seconds": wall}


def budget_fields(text: str) -> dict:
    """The budget as given and as a number: seconds for a time budget, training FLOPs for a FLOP one."""
    budget = parse_budget(text)
    return {"budget": budget.text, "budget_kind": budget.kind,
            "budget_seconds": budget.amount if budget.kind == "time" else None,
            "budget_flops": budget.amount if budget.kind == "flop" else None}


def recipe(cfg: dict) -> dict:
    """The settings that decide a recipe's speed and accuracy, from the composed config."""
    def get(*keys):
        node = cfg
        for key in keys:
            node = node.get(key) if isinstance(node, dict) else None
        return node

    return {"model": get("model", "name"), "batch_size": get("data", "batch_size"),
            "data": get("data", "_target_"), "optimizer": get("optimizer", "_target_"), "lr": get("optimizer", "lr"),
            "scheduler": get("scheduler", "_target_"), "precision": get("trainer", "precision")}


def make_record(run_dir: Path, *, experiment: str, budget: str, seed: int, overrides: list[str], command: str,
                benchmark_command: str, launched: float, wall_seconds: float, **extra) -> dict:
    """The record of a finished run from its folder; ``launched`` is ``time.time()`` at launch,
    the origin of the validation curve's seconds; ``extra`` fields are added as they are."""
    run = Run(run_dir)
    metrics, calibration = portable_metrics(run.metrics), run.calibration
    points = read_scalars(run_dir, ["val/acc"]).get("val/acc", [])
    return {"experiment": experiment, **budget_fields(budget), "seed": seed, "overrides": list(overrides),
            "command": command, "benchmark_command": benchmark_command,
            "wall_seconds": round(wall_seconds, 2), "metrics": metrics, "recipe": recipe(run.cfg),
            "val_curve": [[round(wall - launched, 2), round(value, 5)] for _, value, wall in points],
            **({"calibration": calibration} if calibration else {}), "machine": machine(), **extra}


def same_run(record: dict, experiment: str, budget: str, seed: int, overrides: list[str]) -> bool:
    """Whether ``record`` answers this command: a grid resumed later skips it."""
    return (record.get("experiment"), record.get("budget"), record.get("seed"), record.get("overrides")) == \
        (experiment, budget, seed, list(overrides))


def write_record(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)  # renamed onto the record: an interrupted write never leaves half a record
    text = json.dumps(record, indent=1)
    text = re.sub(r"\[\s+([^\s,\[\]]+),\s+([^\s,\[\]]+)\s+\]", r"[\1, \2]", text)  # a curve point on one line
    tmp.write_text(text + "\n")
    tmp.replace(path)


def load_records(folder: Path) -> list[dict]:
    """Every record under ``folder`` (a machine's folder, or the results folder of all machines)."""
    records = []
    for path in sorted(Path(folder).rglob("*.json")):
        record = json.loads(path.read_text())
        if isinstance(record, dict) and "val_curve" in record and "wall_seconds" in record:
            records.append(record)
    return records
