"""train(cfg) end to end on synthetic data, on the CPU: fit, test, resume, TensorBoard tags,
multirun and DDP (the last two through the command line, as a user runs them)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch

from train import train
from convzoo.training.curves import main as curves_main
from convzoo.training.runs import read_scalars

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("model", ["resnet20", "mobilenet_v2_x0_5", "shufflenet_v2_x0_5", "highway_19", "googlenet"])
def test_fast_dev_run(model, tmp_path, compose_train, tiny):
    cfg = compose_train(*tiny, f"model={model}", "+trainer.fast_dev_run=true", tmp_path=tmp_path)
    metrics = train(cfg)
    assert metrics["model"] == model and 0.0 <= metrics["train/loss"] < 100
    assert (tmp_path / "config.yaml").is_file() and (tmp_path / "metrics.json").is_file()


def test_fit_logs_tags_checkpoints_and_tests(tmp_path, capsys, compose_train, tiny, event_tags):
    cfg = compose_train(*tiny, "trainer.max_epochs=2", tmp_path=tmp_path)
    metrics = train(cfg)
    assert {"val/acc", "val/acc_best", "test/acc", "train/loss"} <= set(metrics)
    assert metrics["val/acc_best"] >= metrics["val/acc"] - 1e-9
    found = event_tags(tmp_path)
    expected = {"train/loss_step", "train/acc_step", "val/loss", "val/acc", "val/acc_best",
                "train/epoch_seconds", "train/images_per_sec", "lr-SGD/pg1",
                "val/confusion_matrix", "val/misclassified", "test/confusion_matrix", "test/acc"}
    assert expected <= found, expected - found
    assert not any(t.startswith("hparams/") for t in found)  # hyperparameters live in the HParams plugin
    assert any("complexity" in t for t in found)
    ckpts = {p.name for p in (tmp_path / "checkpoints").iterdir()}
    assert "last.ckpt" in ckpts and len(ckpts) == 2
    assert curves_main([str(tmp_path), "--out", str(tmp_path / "c.png"), "--table"]) == 0
    table = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert len(table) == 1 + 2 and (tmp_path / "c.png").stat().st_size > 1000  # header + 2 epochs
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["params"] == sum(p.numel() for p in __import__("convzoo.models").models.create_model("resnet20").parameters())


def test_resume_from_last_continues_the_same_run(tmp_path, compose_train, tiny):
    first = compose_train(*tiny, "trainer.max_epochs=1", "test=false", tmp_path=tmp_path)
    train(first)
    resumed = compose_train(*tiny, "trainer.max_epochs=3", "ckpt_path=last", "test=false",
                            tmp_path=tmp_path / "new_hydra_dir")
    resumed.paths.log_dir = str(tmp_path)
    metrics = train(resumed)
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 3 * (128 // 32) and metrics["epochs"] == 3
    # The resumed run logs into the first run's folder and trains epochs 1 and 2 only: three
    # epoch-end losses in all (a restart from scratch would add three, four in all).
    assert len(read_scalars(tmp_path, ["train/loss_epoch"])["train/loss_epoch"]) == 3
    assert not (tmp_path / "new_hydra_dir" / "checkpoints").exists()  # the old run folder went on


class StopAfterFirstEpoch(L.Callback):
    """Interrupts a run after its first epoch (its last.ckpt is written), schedule unchanged."""

    def on_train_epoch_end(self, trainer, pl_module):
        trainer.should_stop = True


@pytest.mark.parametrize("loader", ["memory", "torch"])
def test_resumed_run_matches_an_uninterrupted_one(tmp_path, loader, compose_train, tiny):
    common = [*tiny, "test=false", "trainer.deterministic=true", "model.head.dropout=0.2", "trainer.max_epochs=2",
              f"data.loader={loader}", "data.num_workers=0"]
    straight = train(compose_train(*common, tmp_path=tmp_path / "straight"))
    train(compose_train(*common, "+callbacks.stop._target_=test_train.StopAfterFirstEpoch", tmp_path=tmp_path / "split"))
    resumed_cfg = compose_train(*common, "ckpt_path=last", tmp_path=tmp_path / "other")
    resumed_cfg.paths.log_dir = str(tmp_path / "split")
    resumed = train(resumed_cfg)
    assert resumed["val/acc"] == straight["val/acc"] and resumed["val/loss"] == straight["val/loss"]
    assert resumed["train/loss"] == straight["train/loss"]


def test_same_seed_same_metrics(tmp_path, compose_train, tiny):
    runs = [train(compose_train(*tiny, "trainer.max_epochs=1", "test=false", "trainer.deterministic=true",
                                tmp_path=tmp_path / str(i))) for i in range(2)]
    assert runs[0]["val/acc"] == runs[1]["val/acc"] and runs[0]["train/loss"] == runs[1]["train/loss"]


def test_multirun_gives_one_tensorboard_run_per_model(tmp_path, tiny, cli, event_tags):
    out = cli(["-m", "model=resnet20,mobilenet_v2_x0_5", *tiny, "trainer.max_epochs=1",
               f"paths.log_dir={tmp_path}", "hydra.sweep.dir=sweep"], cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    runs = sorted(p.name for p in (tmp_path / "sweep").iterdir() if p.is_dir() and p.name[0].isdigit())
    assert runs == ["0_resnet20", "1_mobilenet_v2_x0_5"]
    for run in runs:
        assert "val/acc" in event_tags(tmp_path / "sweep" / run)
    board = cli([f"runs={tmp_path / 'sweep'}", f"paths.log_dir={tmp_path}"], cwd=tmp_path, script="evaluate.py")
    assert board.returncode == 0, board.stderr[-3000:]
    table = (tmp_path / "sweep" / "leaderboard.md").read_text()
    assert "resnet20" in table and "mobilenet_v2_x0_5" in table
    assert (tmp_path / "sweep" / "leaderboard.png").stat().st_size > 1000
    assert len((tmp_path / "sweep" / "leaderboard.csv").read_text().strip().splitlines()) == 3


@pytest.mark.skipif(sys.platform != "linux", reason="DDP on CPU with gloo is exercised on Linux")
def test_ddp_on_cpu_with_two_processes(tmp_path, tiny, cli):
    out = cli(["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", *tiny,
               "trainer.max_epochs=1", f"paths.log_dir={tmp_path}", "hydra.run.dir=run"], cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["val/acc"] >= 0 and "test/acc" in metrics


def test_schedule_counts_epochs_in_loader_batches_when_max_steps_ends_the_run(tmp_path, compose_train, tiny):
    # 4 batches per epoch; the run stops at step 6 of 30 epochs: one warm-up epoch is 4 steps.
    cfg = compose_train(*tiny, "trainer.max_epochs=30", "+trainer.max_steps=6", "scheduler.warmup_epochs=1",
                        "test=false", tmp_path=tmp_path)
    train(cfg)
    lr = [value for _, value, _ in read_scalars(tmp_path, ["lr-SGD/pg1"])["lr-SGD/pg1"]]  # by step
    assert lr[:4] == pytest.approx([0.025, 0.05, 0.075, 0.1])


def test_a_user_error_is_one_line_and_exit_status_1(tmp_path, tiny, cli):
    out = cli([*tiny, "optimizer.lr=-0.1", f"paths.log_dir={tmp_path}"], cwd=tmp_path)
    env_free = subprocess.run([sys.executable, str(ROOT / "train.py"), *tiny, "optimizer.lr=-0.1",
                               f"paths.log_dir={tmp_path}"], cwd=tmp_path, capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT), "HYDRA_FULL_ERROR": "0"})
    assert env_free.returncode == 1 and "Traceback" not in env_free.stderr
    assert "error: optimizer.lr should be > 0, got -0.1" in env_free.stderr
    assert out.returncode != 0 and "Traceback" in out.stderr  # HYDRA_FULL_ERROR=1 keeps the traceback


def test_an_unwritable_output_folder_fails_at_start(tmp_path, compose_train, tiny):
    (tmp_path / "a_file").write_text("not a folder")
    cfg = compose_train(*tiny, tmp_path=tmp_path / "a_file" / "run")
    with pytest.raises(PermissionError, match=r"cannot write to the output folder .*a_file/run"):
        train(cfg)


class PoisonWeightsInSecondEpoch(L.Callback):
    """Sets the first conv's weights to NaN at the start of epoch 2, so the next loss is NaN."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.current_epoch == 1 and batch_idx == 1:
            with torch.no_grad():
                next(pl_module.net.parameters()).fill_(float("nan"))


def test_a_nan_loss_stops_training_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path, compose_train, tiny):
    cfg = compose_train(*tiny, "trainer.max_epochs=3", "test=false",
                        "+callbacks.poison._target_=test_train.PoisonWeightsInSecondEpoch", tmp_path=tmp_path)
    with pytest.raises(FloatingPointError, match=r"non-finite training loss nan at global step 6 \(epoch 1, batch 1\)"):
        train(cfg)
    good = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert good["global_step"] == 4 and all(torch.isfinite(v).all() for v in good["state_dict"].values()
                                            if v.is_floating_point())


def test_nan_guard_can_skip_instead(tmp_path, compose_train, tiny):
    cfg = compose_train(*tiny, "trainer.max_epochs=2", "test=false", "callbacks.nan_guard.skip=true",
                        "+callbacks.poison._target_=test_train.PoisonWeightsInSecondEpoch", tmp_path=tmp_path)
    metrics = train(cfg)
    assert metrics["epochs"] == 2
