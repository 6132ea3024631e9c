"""What a run prints (training/console.py): one start line, one end line, a progress bar with four
numbers, none of Lightning's tips; trainer.enable_checkpointing=false and enable_progress_bar=false work."""
from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import torch

from train import train
from convzoo.training.callbacks import ThroughputMonitor
from convzoo.training.console import ConsoleProgressBar, bar_metrics, end_line, start_line


def test_progress_bar_shows_loss_val_score_lr_throughput_and_the_budget_plan_only():
    monitor = ThroughputMonitor()
    monitor._start, monitor._images, monitor._world = 0.0, 1_000_000, 1  # an epoch "started" at perf_counter 0
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.05)
    logged = {"train/loss_step": torch.tensor(1.2341), "train/acc_step": torch.tensor(0.5),
              "val/acc": torch.tensor(0.9123), "val/acc_best": torch.tensor(0.92), "budget/planned_steps": 10.0}
    trainer = SimpleNamespace(callback_metrics=logged, progress_bar_metrics={}, optimizers=[optimizer],
                              callbacks=[monitor], global_step=3)
    shown = bar_metrics(trainer)
    assert list(shown) == ["loss", "val_acc", "lr", "img/s", "step"] and shown["step"] == "3/10"
    assert shown["loss"] == "1.234" and shown["val_acc"] == "91.23%" and shown["lr"] == "0.05"


def test_progress_bar_names_no_epoch_limit_for_an_endless_run():
    bar = ConsoleProgressBar()
    bar._trainer = SimpleNamespace(max_epochs=-1)  # a budgeted run: it ends at its planned step
    assert bar._get_train_description(14).strip() == "Epoch 14"  # not Lightning's "Epoch 14/-2"
    bar._trainer = SimpleNamespace(max_epochs=30)
    assert bar._get_train_description(14).strip() == "Epoch 14/29"


def test_start_and_end_lines_name_what_matters():
    hparams = {"model": "resnet20", "params": 269_722, "macs": 40_551_040, "precision": "bf16-mixed",
               "channels_last": True, "compile": False}
    data = SimpleNamespace(name="cifar10", num_train=45_000, num_val=5_000)
    trainer = SimpleNamespace(precision="bf16-mixed", world_size=1, strategy=SimpleNamespace(root_device="cpu"))
    line = start_line(hparams, data, trainer, Path("/runs/x"))
    assert line == ("resnet20: 269,722 params, 40.55M MACs | cifar10: 45,000 train / 5,000 val images | "
                    "bf16-mixed, channels_last on cpu | logs: /runs/x")
    summary = {"val/acc_best": 0.9, "val/acc": 0.89, "test/acc": 0.885, "run_seconds": 192.4,
               "best_checkpoint": "/runs/x/checkpoints/best.ckpt"}
    assert end_line(summary, Path("/runs/x"), Path("/runs")) == (
        "done in 3m 12s: val/acc_best 90.00%, val/acc 89.00%, test/acc 88.50% | "
        "checkpoint: /runs/x/checkpoints/best.ckpt | tensorboard --logdir /runs")


def test_checkpointing_and_progress_bar_can_be_turned_off_and_lightning_chatter_is_gone(
        tmp_path, compose_train, tiny, caplog, capfd):
    overrides = [o for o in tiny if not o.startswith("callbacks.progress_bar")]  # the default bar, then off
    cfg = compose_train(*overrides, "trainer.max_epochs=1", "trainer.enable_checkpointing=false",
                        "trainer.enable_progress_bar=false", "+callbacks.run_report.figures=false",
                        "+callbacks.run_report.graph=false", tmp_path=tmp_path)
    with caplog.at_level(logging.INFO, logger="convzoo"):
        metrics = train(cfg)
    assert "test/acc" in metrics and metrics["best_checkpoint"] == "" and not (tmp_path / "checkpoints").exists()
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("convzoo")]
    assert sum("trainer.enable_checkpointing=false" in line for line in lines) == 1
    assert sum(line.startswith("resnet20: ") for line in lines) == 1
    assert sum(line.startswith("done in ") for line in lines) == 1 and "checkpoint: none written" in lines[-1]
    printed = "".join(capfd.readouterr())
    for chatter in ("Tip", "litlogger", "GPU available", "TPU available", "Seed set", "LeafSpec", "Test metric"):
        assert chatter not in printed, chatter
