"""Table 3: the Lightning loop as train.py runs it, against a bare PyTorch loop doing the same work.

Lightning: ``train(cfg)`` of train.py itself, on a config composed from configs/ as the command
line would (``model=<m> data=synthetic``), so module, optimizer, scheduler, precision, logger
and callbacks are train.py's. Changed for the benchmark, and said so in the table: no progress
bar (it redraws per step), no checkpoint callback and no validation (both run once per epoch,
never inside the timed steps), no test at the end. A ``StepClock`` callback times the steps
after ``warmup`` (start-up, first steps and oneDNN set-up excluded).

Bare loop: the same net, datamodule and in-memory loader, the same SGD (Nesterov) with the same
parameter groups and cosine schedule, channels_last, the same autocast, cross-entropy with the
same label smoothing; no metrics, no logging, no callbacks. Repeats alternate A B A B ..., each
a fresh run, so noise on the machine hits both; the ratio is the median of the per-pair ratios.
"""
from __future__ import annotations

import json
import logging
import tempfile
import time
import warnings
from pathlib import Path

import hydra
import lightning as L
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from convzoo.training.device import autocast
from convzoo.training.timing import median, sync

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
CHANGED = ("the progress bar off (it redraws every step; train.py has it on), and no checkpoint callback or "
           "validation (once-per-epoch work, outside the timed steps)")


class StepClock(L.Callback):
    """Writes {"seconds", "images"} of optimizer steps warmup+1 .. warmup+steps to ``out`` (JSON)."""

    def __init__(self, warmup: int, steps: int, out: str):
        self.warmup, self.steps, self.out = warmup, steps, out
        self.start, self.images = 0.0, 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        done = trainer.global_step  # optimizer steps finished
        if done > self.warmup:
            self.images += len(batch[1])
        if done == self.warmup:
            sync(pl_module.device)
            self.start = time.perf_counter()
        elif done == self.warmup + self.steps:
            sync(pl_module.device)
            Path(self.out).write_text(json.dumps({"seconds": time.perf_counter() - self.start,
                                                  "images": self.images}))


def compose(opts, precision: str, out_dir: str):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    b, total = opts.batch_size, opts.trainer_warmup + opts.trainer_steps
    overrides = [
        f"model={opts.trainer_model}", "data=synthetic", f"data.batch_size={b}", f"data.val_size={b}",
        f"data.num_samples={b * (total + 1) + b}", f"data.test_size={b}",  # one epoch holds every step
        f"++trainer.max_steps={total}", f"trainer.precision={precision}",
        f"trainer.accelerator={'gpu' if opts.device.type == 'cuda' else 'cpu'}",
        "++trainer.enable_progress_bar=false", "++trainer.enable_checkpointing=false",
        "++trainer.limit_val_batches=0", "++trainer.num_sanity_val_steps=0", "test=false",
        "callbacks.progress_bar=null", "callbacks.model_checkpoint=null", "callbacks.last_checkpoint=null",
        "++callbacks.clock._target_=benchmarks._trainer.StepClock", f"++callbacks.clock.warmup={opts.trainer_warmup}",
        f"++callbacks.clock.steps={opts.trainer_steps}", f"++callbacks.clock.out={out_dir}/clock.json",
    ]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = hydra_compose("train", overrides=overrides)
    cfg.paths.output_dir = cfg.paths.log_dir = out_dir  # what Hydra sets at run time
    return cfg


def lightning_rate(opts, precision: str) -> float:
    from train import train

    with tempfile.TemporaryDirectory(prefix="convzoo-bench-") as out:
        train(compose(opts, precision, out))
        clock = json.loads((Path(out) / "clock.json").read_text())
    return clock["images"] / clock["seconds"]


def bare_rate(opts, precision: str) -> float:
    from convzoo.training.task import param_groups

    with tempfile.TemporaryDirectory(prefix="convzoo-bench-") as out:
        cfg = compose(opts, precision, out)
    torch.manual_seed(cfg.seed)
    dm = hydra.utils.instantiate(cfg.data)
    dm.setup("fit")
    loader = dm.train_dataloader()
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    model_cfg.update(num_classes=dm.num_classes, in_chans=dm.in_chans)
    net = hydra.utils.instantiate(model_cfg).to(opts.device).train()
    channels_last = cfg.module.channels_last
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    optimizer = hydra.utils.instantiate(cfg.optimizer)(
        param_groups(net, cfg.optimizer.weight_decay, cfg.module.exclude_norm_bias_from_wd))
    total = opts.trainer_warmup + opts.trainer_steps
    scheduler = hydra.utils.instantiate(cfg.scheduler)(optimizer, total_steps=total, steps_per_epoch=len(loader))
    start, images = 0.0, 0
    for step, (x, y) in enumerate(loader, start=1):
        x, y = x.to(opts.device, non_blocking=True), y.to(opts.device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(precision, opts.device):
            logits = net(x)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.module.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if step > opts.trainer_warmup:
            images += len(y)
        if step == opts.trainer_warmup:
            sync(opts.device)
            start = time.perf_counter()
        elif step == total:
            sync(opts.device)
            return images / (time.perf_counter() - start)
    raise RuntimeError(f"the loader ran out after {step} of {total} steps")


def trainer_rows(opts, precision: str) -> tuple[list[dict], float, str]:
    """Rows of table 3, the Lightning / bare ratio (median of the per-pair ratios), a note saying what ran."""
    lightning, bare = [], []
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:  # no "GPU available" / "Seed set" banners between the tables
        lg.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():  # Lightning's advice on short runs and deprecations: not ours
            warnings.filterwarnings("ignore", message=r".*(warm-up|workers|TF32|log_every_n_steps|deprecated).*")
            for _ in range(opts.repeats):
                lightning.append(lightning_rate(opts, precision))
                bare.append(bare_rate(opts, precision))
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)

    def row(loop, rates):
        return {"loop": loop, "img/s": median(rates), "per repeat": ", ".join(f"{v:.0f}" for v in rates)}

    ratio = median(a / b for a, b in zip(lightning, bare))
    note = (f"{opts.trainer_model}, batch {opts.batch_size}, {precision}, {opts.trainer_steps} timed steps after "
            f"{opts.trainer_warmup} warm-up steps per run, synthetic in-memory data. Lightning runs with {CHANGED}. "
            f"Lightning / bare: {ratio:.3f} (median of the per-pair ratios).")
    return [row("Lightning: train.py's train(cfg)", lightning),
            row("bare PyTorch loop (same model, loader, optimizer, schedule, precision)", bare)], ratio, note
