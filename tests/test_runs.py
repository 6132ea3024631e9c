"""training.runs: finding run folders, telling classifier and autoencoder runs apart by what they
wrote, reading their config, metrics, eval.json and TensorBoard scalars, and the checkpoint helpers."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from torch.utils.tensorboard import SummaryWriter

from convzoo.training.runs import (AUTOENCODER, CLASSIFIER, Run, find_last_checkpoint, find_runs, read_scalars,
                                   run_dir_of, save_record, thin)


def write_run(folder: Path, metrics: dict, cfg: dict | None = None, scalars: dict | None = None) -> Path:
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps(metrics))
    if cfg is not None:
        OmegaConf.save(cfg, folder / "config.yaml")
    if scalars:
        with SummaryWriter(str(folder)) as tb:
            for tag, values in scalars.items():
                for step, value in values:
                    tb.add_scalar(tag, value, step)
    return folder


CLASSIFY = {"task": "classification", "model": {"name": "resnet20"}, "data": {"batch_size": 100, "_target_": "d.C10"}}


@pytest.fixture
def sweep(tmp_path) -> Path:
    root = tmp_path / "sweep"
    write_run(root / "10_resnet20", {"model": "resnet20", "val/acc": 0.5}, CLASSIFY,
              {"val/acc": [(20, 0.6), (10, 0.4)], "train/acc_epoch": [(10, 0.3)]})
    write_run(root / "2_resnet20", {"model": "resnet20"}, CLASSIFY)
    write_run(root / "0_ae", {"decoder": "resize", "val/loss": 0.01}, {"task": "autoencoder", "model": {"name": "ae"}})
    write_run(root / "1_ae", {"decoder": "deconv"})  # no config: still an autoencoder by its metrics
    write_run(root / "other", {"model": "x"})  # metrics only: not a train.py run
    return root


def test_find_runs_in_job_order_and_by_task(sweep):
    assert [r.name for r in find_runs(sweep)] == ["0_ae", "1_ae", "2_resnet20", "10_resnet20", "other"]
    assert [r.name for r in find_runs([sweep], task=CLASSIFIER)] == ["2_resnet20", "10_resnet20"]
    assert [r.name for r in find_runs(sweep, task=AUTOENCODER)] == ["0_ae", "1_ae"]
    assert [r.name for r in find_runs(sweep / "2_resnet20")] == ["2_resnet20"]  # the folder itself counts


def test_a_task_config_group_names_the_task(tmp_path):
    run = Run(write_run(tmp_path / "r", {}, {"task": {"_target_": "convzoo.training.autoencode.AutoencoderModule"},
                                             "model": {"name": "ae"}}))
    assert run.task == AUTOENCODER
    assert Run(write_run(tmp_path / "c", {}, {"task": {"name": "classify"}, "model": {}})).task == CLASSIFIER


def test_unreadable_runs_raise_or_are_skipped(sweep):
    (sweep / "2_resnet20" / "metrics.json").write_text("{half")
    with pytest.raises(ValueError, match="2_resnet20: unreadable run"):
        find_runs(sweep)
    skipped = []
    assert [r.name for r in find_runs(sweep, skipped=skipped)] == ["0_ae", "1_ae", "10_resnet20", "other"]
    assert len(skipped) == 1 and "2_resnet20" in skipped[0]
    with pytest.raises(FileNotFoundError, match="missing is not a folder"):
        find_runs(sweep / "missing")


def test_a_run_reads_its_files_lazily(sweep):
    run = Run(sweep / "10_resnet20")
    assert run.cfg["model"]["name"] == "resnet20" and run.model == {"name": "resnet20"}
    assert run.metrics["val/acc"] == 0.5
    assert run.scalars["val/acc"] == [(10, pytest.approx(0.4)), (20, pytest.approx(0.6))]  # by step (float32 events)
    assert run.last("val/acc") == pytest.approx(0.6) and run.last("val/acc_best") is None
    assert run.curve("val/acc") == ([1.0, 2.0], [pytest.approx(0.4), pytest.approx(0.6)])  # step x batch 100 / 1000
    assert run.evaluation == {}
    (run.path / "eval.json").write_text(json.dumps({"acc": 0.7}))
    assert Run(run.path).evaluation == {"acc": 0.7}
    assert Run(sweep / "other").cfg == {} and Run(sweep / "other").task is None


def test_read_scalars_keeps_wall_time_and_picks_tags(sweep):
    scalars = read_scalars(sweep / "10_resnet20", ["val/acc", "absent"])
    assert list(scalars) == ["val/acc"]
    (s0, v0, t0), (s1, v1, t1) = scalars["val/acc"]
    assert (s0, s1) == (10, 20) and t0 > 1e9 and t1 > 1e9


def test_checkpoint_helpers(tmp_path):
    assert run_dir_of(tmp_path / "run" / "checkpoints" / "last.ckpt") == (tmp_path / "run").resolve()
    assert run_dir_of(tmp_path / "elsewhere" / "x.ckpt") == (tmp_path / "elsewhere").resolve()
    for name, model in (("a", "resnet20"), ("b", "resnet20"), ("c", "plain20")):
        write_run(tmp_path / "logs" / name, {}, {**CLASSIFY, "model": {"name": model}})
        (tmp_path / "logs" / name / "checkpoints").mkdir()
        (tmp_path / "logs" / name / "checkpoints" / "last.ckpt").write_bytes(b"x")
    os.utime(tmp_path / "logs" / "a" / "checkpoints" / "last.ckpt", (1e9, 1e9))  # the older of the two
    found = find_last_checkpoint(tmp_path / "logs", "resnet20", "d.C10")
    assert found == tmp_path / "logs" / "b" / "checkpoints" / "last.ckpt"
    with pytest.raises(FileNotFoundError, match="no checkpoints/last.ckpt of model 'resnet20' on d.C100"):
        find_last_checkpoint(tmp_path / "logs", "resnet20", "d.C100")


def test_a_record_reads_like_its_run_and_names_no_file_of_the_logs(tmp_path):
    """save_record: metrics less the checkpoint path, the config with the run folder's path
    replaced, the command line, and the scalars as JSON (a long tag thinned, its ends kept)."""
    run_dir = write_run(tmp_path / "logs" / "0_resnet20",
                        {"val/acc": 0.5, "best_checkpoint": str(tmp_path / "logs" / "0_resnet20" / "checkpoints" / "b.ckpt"),
                         "params": 10},
                        {**CLASSIFY, "trainer": {"default_root_dir": str((tmp_path / "logs" / "0_resnet20").resolve())}},
                        {"val/acc": [(10, 0.4), (20, 0.6)], "train/loss_step": [(s, 1 / s) for s in range(1, 1001)]})
    (run_dir / ".hydra").mkdir()
    (run_dir / ".hydra" / "overrides.yaml").write_text("- model=resnet20\n- trainer.max_epochs=15\n")
    run = Run(run_dir)
    dest = save_record(run, tmp_path / "records" / run.name, max_points=64)
    assert sorted(p.name for p in dest.iterdir()) == ["config.yaml", "metrics.json", "overrides.yaml", "scalars.json"]
    saved = find_runs(tmp_path / "records", task=CLASSIFIER)
    assert [r.name for r in saved] == ["0_resnet20"]
    record = saved[0]
    assert record.metrics == {"val/acc": 0.5, "params": 10}
    assert record.cfg["trainer"]["default_root_dir"] == "<run>" and record.cfg["model"] == CLASSIFY["model"]
    assert record.overrides == ["model=resnet20", "trainer.max_epochs=15"] == run.overrides
    assert record.scalars["val/acc"] == [(10, pytest.approx(0.4)), (20, pytest.approx(0.6))]
    steps = [s for s, _ in record.scalars["train/loss_step"]]
    assert len(steps) == 64 and steps[0] == 1 and steps[-1] == 1000 and steps == sorted(set(steps))
    assert record.last("train/loss_step") == pytest.approx(0.001)
    assert str(tmp_path) not in "".join(p.read_text() for p in dest.iterdir())
    with pytest.raises(ValueError, match="max_points=1"):
        save_record(run, tmp_path / "other", max_points=1)


def test_thin_keeps_short_lists_whole_and_spaces_long_ones_evenly():
    assert thin([1, 2, 3], 5) == [1, 2, 3]
    assert thin(list(range(11)), 3) == [0, 5, 10]


def test_a_record_keeps_the_runs_calibration(tmp_path):
    """Why the run trained as it did (compiled or not, its measured rates) stays with the record."""
    run_dir = write_run(tmp_path / "logs" / "0_resnet20", {"val/acc": 0.5}, CLASSIFY)
    (run_dir / "calibration.json").write_text('{"label": "bf16-mixed, channels_last, compiled"}')
    dest = save_record(Run(run_dir), tmp_path / "records" / "0_resnet20")
    assert (dest / "calibration.json").read_text() == '{"label": "bf16-mixed, channels_last, compiled"}'
