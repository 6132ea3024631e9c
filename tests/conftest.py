"""What the tests share, as fixtures: composing train.yaml the way train.py does, the tiny
synthetic run, running train.py or evaluate.py as a user does, the tags a run logged, and the rows
of a printed markdown table.

    def test_x(compose_train, tiny, tmp_path):
        train(compose_train(*tiny, "trainer.max_epochs=1", tmp_path=tmp_path))

Test modules take these as fixture arguments and never import one another.
"""
from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

import convzoo.configs

ROOT = Path(__file__).resolve().parents[1]
# The configs train.py composes (pkg://convzoo.configs): in a checkout, ROOT / "configs".
CONFIG_DIR = Path(convzoo.configs.__file__).parent

# A few seconds of CPU training: 128 synthetic training images in batches of 32 (4 steps an epoch).
TINY = ("data=synthetic", "data.num_samples=192", "data.val_size=64", "data.test_size=64",
        "data.batch_size=32", "trainer.accelerator=cpu", "trainer.precision=32-true",
        "trainer.log_every_n_steps=1", "callbacks.progress_bar=null", "scheduler.warmup_epochs=0")


def _compose_train(*overrides: str, tmp_path: Path | None = None) -> DictConfig:
    """train.yaml with ``overrides``, and the paths Hydra fills in at run time set to ``tmp_path``."""
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=list(overrides), return_hydra_config=True)
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path or "out")
        cfg.paths.log_dir = str(tmp_path or "logs")
        del cfg.hydra
    return cfg


def _run_script(args: list[str], cwd: Path, timeout: int = 600, script: str = "train.py") -> subprocess.CompletedProcess:
    """``python <script> <args>`` in ``cwd``, as a user runs it (full Hydra tracebacks on error)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HYDRA_FULL_ERROR": "1"}
    return subprocess.run([sys.executable, str(ROOT / script), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _event_tags(run_dir: Path) -> set[str]:
    """Every TensorBoard tag under ``run_dir``: scalars, images and tensors (text, hparams).
    training.runs.read_scalars reads scalars only; the image and tensor tags need the accumulator."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # slow import

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    found = acc.Tags()
    return {*found["scalars"], *found["images"], *found["tensors"]}


def _table_rows(text: str, first_cell: str | None = None) -> list[list[str]]:
    """The body rows (header and rule left out) of the markdown tables in ``text``, as stripped cells;
    with ``first_cell``, only the rows whose first cell is that."""
    lines = text.splitlines()
    rows = []
    for line, after in zip(lines, [*lines[1:], ""]):
        if line.startswith("| ") and not after.startswith("|-"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if first_cell is None or cells[0] == first_cell:
                rows.append(cells)
    return rows


@pytest.fixture(autouse=True, scope="session")
def _calibration_cache(tmp_path_factory) -> None:
    """Runs under test keep their calibration cache (training/calibrate.py) out of the user's home."""
    os.environ["CONVZOO_CACHE_DIR"] = str(tmp_path_factory.mktemp("convzoo-cache"))


@pytest.fixture(scope="session")
def config_dir() -> Path:
    """The configs folder (train.yaml, evaluate.yaml and the groups)."""
    return CONFIG_DIR


@pytest.fixture(scope="session")
def compose_train() -> Callable[..., DictConfig]:
    """``compose_train(*overrides, tmp_path=None)``: the config train() gets from train.py.
    (Named for what it composes; a plain ``compose`` would shadow Hydra's in the test modules.)"""
    return _compose_train


@pytest.fixture
def fp32_machine(monkeypatch) -> None:
    """This CPU taken as one without native bf16, whatever it has: the default precision (device.py)
    and the calibration's candidates (calibrate.py) are then fp32 only, so tests of choices and
    tables come out alike on every machine kind CI may draw."""
    monkeypatch.setattr("convzoo.training.calibrate.has_native_bf16", lambda: False)
    monkeypatch.setattr("convzoo.training.device.has_native_bf16", lambda: False)


@pytest.fixture(scope="session")
def tiny() -> tuple[str, ...]:
    """The overrides of a tiny CPU run; a tuple, so no test can change another's."""
    return TINY


@pytest.fixture(scope="session")
def cli() -> Callable[..., subprocess.CompletedProcess]:
    """``cli(args, cwd, timeout=600, script="train.py")``: run train.py or evaluate.py in a subprocess."""
    return _run_script


@pytest.fixture(scope="session")
def event_tags() -> Callable[[Path], set[str]]:
    """``event_tags(run_dir)``: the set of TensorBoard tags (of every kind) a run logged."""
    return _event_tags


@pytest.fixture(scope="session")
def table_rows() -> Callable[..., list[list[str]]]:
    """``table_rows(text, first_cell=None)``: the body rows of the markdown tables a report printed."""
    return _table_rows
