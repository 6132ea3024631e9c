"""Training runs on disk: finding them under a log folder and reading what each one wrote.

A run folder is what train.py leaves behind: ``metrics.json`` (the summary, always),
``config.yaml`` (the composed config, resolved), TensorBoard event files, ``checkpoints/`` and,
after evaluate.py, ``eval.json``. ``find_runs`` turns a folder tree into ``Run`` objects in job
order; a ``Run`` reads its files lazily, so listing a thousand runs for a leaderboard never
opens their event files. ``read_scalars`` is the only reader of TensorBoard events.

``save_record`` keeps a few KB of a run, small enough to commit: its metrics, its config and its
scalars as JSON (``scalars.json``, in place of the event files). A record folder is read like the
run folder it came from, so a report made from the logs is made again from the records on a
fresh clone, where the logs are gone.
"""
from __future__ import annotations

import itertools
import json
import math
import os
import re
from collections.abc import Iterable
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

CLASSIFIER, AUTOENCODER = "classifier", "autoencoder"
SCALARS_FILE = "scalars.json"  # a record's scalars, in place of the run's event files
# metrics.json entries that name files of the run folder: meaningless once the logs are gone
PATH_KEYS = ("best_checkpoint",)
# small files of a run folder that every record keeps as they are: the calibration's measured
# rates and choice (why a run trained compiled or not, in bf16 or fp32)
RECORD_FILES = ("calibration.json",)


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
    ``evaluation`` (eval.json) and ``calibration`` (calibration.json; each {} if absent or unreadable)
    and ``scalars`` (its events), each read on first use. ``label`` is free for a report to name the run by."""

    def __init__(self, path: str | Path, cfg: dict | None = None, metrics: dict | None = None, label: str = ""):
        self.path, self.label = Path(path), label
        self._cfg, self._metrics, self._scalars, self._evaluation = cfg, metrics, None, None
        self._overrides: list[str] | None = None

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
    def overrides(self) -> list[str]:
        """The command-line overrides the run was launched with (Hydra's ``.hydra/overrides.yaml``,
        a record's ``overrides.yaml``); [] where neither was saved."""
        if self._overrides is None:
            saved = [p for p in (self.path / ".hydra" / "overrides.yaml", self.path / "overrides.yaml") if p.is_file()]
            self._overrides = [str(o) for o in OmegaConf.load(saved[0])] if saved else []
        return self._overrides

    @property
    def cfg(self) -> dict:
        if self._cfg is None:
            saved = read_config(self.path)
            self._cfg = {} if saved is None else OmegaConf.to_container(saved, resolve=True)
        return self._cfg

    def _optional_json(self, name: str) -> dict:
        try:
            return json.loads((self.path / name).read_text())
        except (OSError, ValueError):  # none yet, or half written: the run is still worth listing
            return {}

    @property
    def evaluation(self) -> dict:
        if self._evaluation is None:
            self._evaluation = self._optional_json("eval.json")
        return self._evaluation

    @property
    def calibration(self) -> dict:
        """train.py's choice of precision, memory format and torch.compile, the rates it timed and
        the seconds it spent (``training/calibrate.py``'s ``Choice.to_dict``)."""
        return self._optional_json("calibration.json")

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
        """Every scalar tag of the run's TensorBoard events (a record's ``scalars.json``):
        ``tag -> [(step, value), ...]`` by step."""
        if self._scalars is None:
            saved = self.path / SCALARS_FILE
            if saved.is_file():
                self._scalars = {t: [(int(s), float(v)) for s, v in points]
                                 for t, points in json.loads(saved.read_text()).items()}
            else:
                self._scalars = {t: [(s, v) for s, v, _ in points] for t, points in read_scalars(self.path).items()}
        return self._scalars

    def curve(self, tag: str) -> tuple[list[float], list[float]]:
        """(thousands of training images seen, values) of a per-epoch tag."""
        batch = (self.cfg.get("data") or {}).get("batch_size") or 1
        points = self.scalars.get(tag, [])
        return [s * batch / 1000 for s, _ in points], [v for _, v in points]

    def timed_curve(self, tag: str) -> tuple[list[float], list[float]]:
        """(minutes of fitting at each epoch's end, values) of a per-epoch tag: the epochs'
        ``train/epoch_seconds`` (their validation included) summed, so runs of different speeds
        share one time axis."""
        seconds = list(itertools.accumulate(v for _, v in self.scalars.get("train/epoch_seconds", [])))
        values = [v for _, v in self.scalars.get(tag, [])]
        n = min(len(seconds), len(values))
        return [t / 60 for t in seconds[:n]], values[:n]

    def last(self, tag: str) -> float | None:
        """The tag's last logged value; metrics.json's where the events lack it."""
        points = self.scalars.get(tag)
        return points[-1][1] if points else number(self.metrics.get(tag))


def number(value):
    """``value`` if it is a finite number (not a bool), else None: metrics.json may hold NaN or text."""
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) else None


def portable_metrics(metrics: dict) -> dict:
    """``metrics`` less the entries that name files of the run folder (the best checkpoint, any
    absolute path): what still means something once the logs are gone."""
    return {k: v for k, v in metrics.items() if k not in PATH_KEYS and not (isinstance(v, str) and os.path.isabs(v))}


def thin(points: list, most: int) -> list:
    """At most ``most`` (>= 2) of ``points``, evenly spaced, the first and the last kept."""
    if len(points) <= most:
        return list(points)
    return [points[i] for i in sorted({round(k * (len(points) - 1) / (most - 1)) for k in range(most)})]


def save_record(run: Run, dest: str | Path, *, max_points: int = 256, extra_files: Iterable[str] = ()) -> Path:
    """Write the record of ``run`` to the folder ``dest``: ``metrics.json`` (less file paths),
    ``config.yaml`` (the run folder's absolute path replaced by ``<run>``), ``overrides.yaml`` (its
    command line, where Hydra saved one) and ``scalars.json`` (every
    TensorBoard scalar as ``[step, value]``; a tag of more than ``max_points`` points, such as the
    per-step loss of a long run, thinned evenly, its first and last points kept), and those of
    ``RECORD_FILES`` (its calibration) and ``extra_files`` (names in the run folder, such as a study's
    figure data) that the run has. Files
    of an older record there are replaced; each is written whole or not at all."""
    if max_points < 2:
        raise ValueError(f"max_points={max_points}: a record keeps at least a tag's first and last points (>= 2)")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    config = (run.path / "config.yaml").read_text() if (run.path / "config.yaml").is_file() else None
    files = {"metrics.json": json.dumps(portable_metrics(run.metrics), indent=1) + "\n",
             SCALARS_FILE: json.dumps({t: [[s, round(v, 6)] for s, v in thin(points, max_points)]
                                       for t, points in run.scalars.items()}, separators=(",", ":")) + "\n"}
    if config is not None:
        files["config.yaml"] = config.replace(str(run.path.resolve()), "<run>")
    if run.overrides:
        files["overrides.yaml"] = "".join(f"- {json.dumps(o)}\n" for o in run.overrides)
    files.update({name: (run.path / name).read_bytes() for name in (*RECORD_FILES, *extra_files)
                  if (run.path / name).is_file()})
    for name, content in files.items():
        tmp = dest / f".{name}.tmp"
        tmp.write_bytes(content.encode() if isinstance(content, str) else content)
        tmp.replace(dest / name)
    return dest


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
