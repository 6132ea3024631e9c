"""Training runs on disk: finding them under a log folder and reading what each one wrote.

A run folder is what train.py leaves behind: ``metrics.json`` (the summary, always),
``config.yaml`` (the composed config, resolved), TensorBoard event files, ``checkpoints/`` and,
after evaluate.py, ``eval.json``. ``find_runs`` turns a folder tree into ``Run`` objects in job
order; a ``Run`` reads its files lazily, so listing a thousand runs for a leaderboard never
opens their event files. ``read_scalars`` is the only reader of TensorBoard events.
"""
from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

CLASSIFIER, AUTOENCODER = "classifier", "autoencoder"


def read_scalars(run_dir: str | Path, tags: Iterable[str] | None = None) -> dict[str, list[tuple[int, float, float]]]:
    """Scalars of the TensorBoard events in ``run_dir``: ``tag -> [(step, value, wall time), ...]``
    sorted by step; every tag, or only ``tags`` (those present)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # slow import

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})  # 0: keep every event
    acc.Reload()
    available = acc.Tags()["scalars"]
    wanted = available if tags is None else [t for t in tags if t in available]
    # by step, and in the order they were logged where a resumed run logged a step twice
    return {t: [(e.step, e.value, e.wall_time) for e in sorted(acc.Scalars(t), key=lambda e: (e.step, e.wall_time))]
            for t in wanted}


def read_config(run_dir: str | Path) -> DictConfig | None:
    """The run's ``config.yaml`` as saved (unresolved), or None when the run has none."""
    path = Path(run_dir) / "config.yaml"
    return OmegaConf.load(path) if path.is_file() else None


class Run:
    """One run folder: ``cfg`` (config.yaml as a dict, {} if absent), ``metrics`` (metrics.json),
    ``evaluation`` (eval.json, {} if absent or unreadable) and ``scalars`` (its events), each read
    on first use. ``label`` is free for a report to name the run by."""

    def __init__(self, path: str | Path, cfg: dict | None = None, metrics: dict | None = None, label: str = ""):
        self.path, self.label = Path(path), label
        self._cfg, self._metrics, self._scalars, self._evaluation = cfg, metrics, None, None

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}{', ' + repr(self.label) if self.label else ''})"

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def metrics(self) -> dict:
        if self._metrics is None:
            self._metrics = json.loads((self.path / "metrics.json").read_text())
        return self._metrics

    @property
    def cfg(self) -> dict:
        if self._cfg is None:
            saved = read_config(self.path)
            self._cfg = {} if saved is None else OmegaConf.to_container(saved, resolve=True)
        return self._cfg

    @property
    def evaluation(self) -> dict:
        if self._evaluation is None:
            try:
                self._evaluation = json.loads((self.path / "eval.json").read_text())
            except (OSError, ValueError):  # none yet, or half written: the run is still worth listing
                self._evaluation = {}
        return self._evaluation

    @property
    def model(self) -> dict:
        return self.cfg.get("model") or {}

    @property
    def task(self) -> str | None:
        """``autoencoder`` (its config's task says so, or its metrics name a decoder), ``classifier``
        (a config with a model and no other task), or None (no config: not a train.py run)."""
        task = self.cfg.get("task")
        if isinstance(task, dict):  # a config group: its name or the module it builds
            task = task.get("name") or task.get("_target_")
        task = str(task or "").lower()
        if "autoenc" in task or "decoder" in self.metrics:
            return AUTOENCODER
        if isinstance(self.cfg.get("model"), dict) and (not task or "classif" in task):
            return CLASSIFIER
        return None

    @property
    def scalars(self) -> dict[str, list[tuple[int, float]]]:
        """Every scalar tag of the run's TensorBoard events: ``tag -> [(step, value), ...]`` by step."""
        if self._scalars is None:
            self._scalars = {t: [(s, v) for s, v, _ in points] for t, points in read_scalars(self.path).items()}
        return self._scalars

    def curve(self, tag: str) -> tuple[list[float], list[float]]:
        """(thousands of training images seen, values) of a per-epoch tag."""
        batch = (self.cfg.get("data") or {}).get("batch_size") or 1
        points = self.scalars.get(tag, [])
        return [s * batch / 1000 for s, _ in points], [v for _, v in points]

    def last(self, tag: str) -> float | None:
        """The tag's last logged value; metrics.json's where the events lack it."""
        points = self.scalars.get(tag)
        return points[-1][1] if points else number(self.metrics.get(tag))


def number(value):
    """``value`` if it is a finite number (not a bool), else None: metrics.json may hold NaN or text."""
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) else None


_JOB = re.compile(r"(\d+)_")


def job_order(run: Run) -> tuple:
    """Sweep folder, then Hydra's job number (``<n>_<model>``: 2 before 10), then name."""
    job = _JOB.match(run.name)
    return str(run.path.parent), int(job.group(1)) if job else 1 << 30, run.name


def find_runs(folders: str | Path | Iterable[str | Path], *, task: str | None = None,
              skipped: list[str] | None = None) -> list[Run]:
    """Every run (a folder holding metrics.json, each folder itself included) under ``folders``,
    in job order. ``task``: only ``classifier`` or only ``autoencoder`` runs. A run whose files
    cannot be read raises, or with a ``skipped`` list is left out and described there."""
    folders = [folders] if isinstance(folders, (str, Path)) else list(folders)
    runs = []
    for folder in map(Path, folders):
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder} is not a folder; give a run or sweep folder such as "
                                    "logs/train/multiruns/<time>")
        for metrics in folder.rglob("metrics.json"):
            run = Run(metrics.parent)
            try:
                if task is None:
                    run.metrics  # noqa: B018 (read now, so that an unreadable run is reported here)
                elif run.task != task:
                    continue
            except (OSError, ValueError) as err:
                if skipped is None:
                    raise ValueError(f"{run.path}: unreadable run ({err})") from err
                skipped.append(f"skipped {run.path}: unreadable metrics.json or config.yaml ({err})")
                continue
            runs.append(run)
    return sorted(runs, key=job_order)


def run_dir_of(ckpt_path: str | Path) -> Path:
    """``<run>/checkpoints/x.ckpt`` -> ``<run>``; a checkpoint elsewhere -> its own folder."""
    parent = Path(ckpt_path).resolve().parent
    return parent.parent if parent.name == "checkpoints" else parent


def find_last_checkpoint(log_dir: str | Path, model_name: str | None, data_target: str | None) -> Path:
    """The newest ``checkpoints/last.ckpt`` under ``log_dir`` of a run that trained ``model_name``
    on the data ``data_target`` builds (as its config.yaml says): what ``ckpt_path=last`` resumes."""
    root, found = Path(log_dir), []
    for ckpt in root.glob("**/checkpoints/last.ckpt"):
        saved = read_config(run_dir_of(ckpt))
        if saved is not None and saved.model.get("name") == model_name and \
                saved.data.get("_target_") == data_target:
            found.append(ckpt)
    if not found:
        raise FileNotFoundError(f"ckpt_path=last: no checkpoints/last.ckpt of model {model_name!r} on "
                                f"{data_target} under {root.resolve()}; give the checkpoint file instead")
    return max(found, key=lambda p: p.stat().st_mtime)
