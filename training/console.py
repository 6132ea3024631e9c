"""What a run prints: one line at the start, a progress bar with train loss, the validation score,
learning rate and img/s, one line at the end; Lightning's start-up chatter (accelerator lines, tips,
advertising) is silenced. Overrides that would contradict the default callbacks are honoured."""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

from lightning.pytorch.callbacks import ModelCheckpoint, ProgressBar, RichProgressBar

from convzoo.models.complexity import si
from .callbacks import ThroughputMonitor

log = logging.getLogger(__name__)

# Lightning's informational loggers: "GPU available", "TPU available", "LOCAL_RANK ...", "Seed set to",
# the litlogger / litmodels tips, "`Trainer.fit` stopped", "Restoring states from the checkpoint".
# Their warnings still show.
CHATTY_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero",
                  "lightning.fabric.utilities.seed", "lightning.pytorch.accelerators.cuda",
                  "lightning.fabric.utilities.distributed")


def quiet_lightning() -> None:
    """Silence Lightning's informational messages (idempotent)."""
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    # Lightning's own use of a torch API it has not caught up with: nothing a user can act on.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")


def metric_text(key: str, value: float) -> str:
    """``val/acc`` 0.9123 -> ``91.23%``; ``val/psnr`` -> ``24.10 dB``; anything else to 4 digits."""
    if key.endswith("acc") or key.endswith("acc_best"):
        return f"{100 * value:.2f}%"
    if key.endswith("psnr"):
        return f"{value:.2f} dB"
    return f"{value:.4g}"


def bar_metrics(trainer) -> dict[str, str]:
    """The progress bar's few numbers: train loss (this step), the validation score (accuracy, or PSNR
    for an autoencoder), the learning rate of the first parameter group, this epoch's img/s, and
    with a budget the step out of the planned steps."""
    logged = {**trainer.callback_metrics, **trainer.progress_bar_metrics}
    shown = {}
    loss = logged.get("train/loss_step", logged.get("train/loss"))
    if loss is not None:
        shown["loss"] = f"{float(loss):.3f}"
    for key in ("val/acc", "val/psnr"):
        if key in logged:
            shown[key.replace("/", "_")] = metric_text(key, float(logged[key]))  # no space: the bar wraps at spaces
    if trainer.optimizers:
        shown["lr"] = f"{trainer.optimizers[0].param_groups[0]['lr']:.3g}"
    monitor = next((c for c in trainer.callbacks if isinstance(c, ThroughputMonitor)), None)
    if monitor is not None and monitor.images_per_sec:
        shown["img/s"] = f"{monitor.images_per_sec:,.0f}"
    if "budget/planned_steps" in logged:  # a budgeted run: where it is in its plan (the bar counts one epoch)
        shown["step"] = f"{trainer.global_step}/{int(logged['budget/planned_steps'])}"
    return shown


class ConsoleProgressBar(RichProgressBar):
    """Lightning's rich progress bar showing ``bar_metrics`` only (no version number, no metric that
    happens to be logged with ``prog_bar=True``)."""

    def get_metrics(self, trainer, pl_module) -> dict[str, str]:
        return bar_metrics(trainer)

    def _get_train_description(self, current_epoch: int) -> str:
        """Lightning's "Epoch 3/9", less the "/-2" it writes for a run without an epoch limit
        (``max_epochs=-1``: a budgeted run, which ends at its planned step, shown as "step 3/604")."""
        text = super()._get_train_description(current_epoch)
        limit = self.trainer.max_epochs
        return text.replace(f"Epoch {current_epoch}/{limit - 1}", f"Epoch {current_epoch}", 1) \
            if limit is not None and limit < 0 else text


def honour_trainer_switches(callbacks: list, trainer_cfg) -> list:
    """``trainer.enable_checkpointing=false`` / ``enable_progress_bar=false``: drop the default callbacks
    that contradict them (Lightning refuses a ModelCheckpoint or a progress bar it was told not to
    use); turning checkpoints off says so in one line."""
    if trainer_cfg.get("enable_checkpointing", True) is False:
        if any(isinstance(c, ModelCheckpoint) for c in callbacks):
            log.info("trainer.enable_checkpointing=false: no checkpoints are written; the test uses the "
                     "final weights and ckpt_path=last cannot resume this run")
        callbacks = [c for c in callbacks if not isinstance(c, ModelCheckpoint)]
    if trainer_cfg.get("enable_progress_bar", True) is False:
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    return callbacks


def start_line(hparams: dict, datamodule, trainer, out: Path) -> str:
    """``resnet20: 272,474 params, 41.22M MACs | cifar10: 45,000 train / 5,000 val images | bf16-mixed,
    channels_last on cpu | logs: <out>``."""
    setting = str(hparams.get("precision", trainer.precision))
    setting += ", channels_last" if hparams.get("channels_last") else ""
    setting += ", compiled" if hparams.get("compile") else ""
    device = str(trainer.strategy.root_device)
    if trainer.world_size > 1:
        device += f" x {trainer.world_size} processes"
    sizes = f"{datamodule.num_train or 0:,} train / {datamodule.num_val or 0:,} val images"
    budget = f" | budget {hparams['budget']}" if hparams.get("budget") else ""
    return (f"{hparams.get('model', '?')}: {int(hparams.get('params', 0)):,} params, "
            f"{si(hparams.get('macs', 0))} MACs | {getattr(datamodule, 'name', hparams.get('data'))}: {sizes} | "
            f"{setting} on {device}{budget} | logs: {Path(out).resolve()}")


END_METRICS = ("val/acc_best", "val/acc", "test/acc", "val/psnr", "test/psnr")


def end_line(summary: dict, out: Path, board_dir: Path | None = None) -> str:
    """``done in 3m 12s: val/acc_best 91.20%, val/acc 91.02%, test/acc 90.75% | checkpoint: <path> |
    tensorboard --logdir <folder>`` (``board_dir``: the folder to open, the sweep's for a multirun)."""
    seconds = int(summary.get("run_seconds", 0))
    metrics = ", ".join(f"{k} {metric_text(k, summary[k])}" for k in END_METRICS if k in summary)
    if not metrics and "val/loss" in summary:
        metrics = f"val/loss {metric_text('val/loss', summary['val/loss'])}"
    checkpoint = summary.get("best_checkpoint") or "none written"
    return (f"done in {seconds // 60}m {seconds % 60:02d}s: {metrics or 'no metrics'} | checkpoint: {checkpoint} | "
            f"tensorboard --logdir {Path(board_dir or out).resolve()}")


def board_dir(out: Path) -> Path:
    """The folder to open in TensorBoard: a multirun's sweep folder (all its runs side by side), else the run's."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
            return Path(out).parent
    except (ImportError, ValueError):
        pass
    return Path(out)
