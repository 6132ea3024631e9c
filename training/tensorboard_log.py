"""What a run writes for TensorBoard besides its scalars: the custom-scalars layout (train and val of a
metric on one chart), the HParams session (hyperparameters and the metrics the table shows), and the
model graph. The tags they refer to are listed in docs/tensorboard.md."""
from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable, Mapping

import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torch import nn
from torch.utils.tensorboard.summary import custom_scalars, hparams as hparams_summaries

log = logging.getLogger(__name__)


class RunLogger(TensorBoardLogger):
    """Lightning's TensorBoard logger without the ``epoch`` scalar it adds to every log call: that chart
    would head the Scalars page, and the epoch is the x axis of the per-epoch metrics anyway."""

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        super().log_metrics({k: v for k, v in metrics.items() if k != "epoch"}, step)


def tensorboard_of(trainer):
    """The SummaryWriter of the trainer's TensorBoard logger, or None (no logger, fast_dev_run)."""
    return next((lg.experiment for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)


def _exact(tags: Iterable[str]) -> list[str]:
    # Chart entries are regular expressions: anchor them, so train/loss does not match train/loss_step.
    return [f"^{t}$" for t in tags]


def scalars_layout(charts: Mapping[str, Iterable[str]], budget: bool = False) -> dict:
    """The custom-scalars layout: the task's ``charts`` (title -> tags drawn together, e.g. train and val
    loss), then learning rate and throughput, and with a budget the budget's use. TensorBoard merges
    the layouts of all runs, so a multirun draws every run on the same charts."""
    main = {title: ["Multiline", _exact(tags)] for title, tags in charts.items()}
    main["learning rate"] = ["Multiline", ["^lr-"]]  # LearningRateMonitor: lr-<optimizer>/pg<group>
    main["throughput (img/s)"] = ["Multiline", _exact(["train/images_per_sec"])]
    layout = {"training": main}
    if budget:
        layout["budget"] = {"seconds used": ["Multiline", _exact(["budget/seconds_used"])],
                            "planned steps": ["Multiline", _exact(["budget/planned_steps"])]}
    return layout


def add_layout(writer, layout: dict) -> None:
    writer._get_file_writer().add_summary(custom_scalars(layout))


def hparam_value(value):
    """A value the HParams plugin takes: numbers and strings as they are; booleans, None, lists as text."""
    if isinstance(value, bool) or value is None:
        return str(value).lower()
    if isinstance(value, (int, float, str)):
        return value
    return str(value)


def write_hparams(writer, hparams: Mapping, metric_tags: Iterable[str]):
    """The run's HParams session: its hyperparameters, and the scalar tags (``val/acc``, ...) whose last
    values the HParams table shows as metrics (read from the scalars; no ``hparams/*`` copies are
    written). Returns the session-end summary, for ``end_session``."""
    values = {k: hparam_value(v) for k, v in hparams.items()}
    experiment, start, end = hparams_summaries(values, {tag: 0.0 for tag in metric_tags})
    file_writer = writer._get_file_writer()
    file_writer.add_summary(experiment)
    file_writer.add_summary(start)
    return end


def end_session(writer, end) -> None:
    writer._get_file_writer().add_summary(end)


def add_graph(writer, net: nn.Module, input_shape: tuple[int, ...], device: torch.device) -> None:
    """The net's graph, traced in eval mode on one zero image (no running statistics change). A net that
    cannot be traced (data-dependent control flow, a compiled net) gets one line, not a failed run."""
    if getattr(net, "_compiled_call_impl", None) is not None:  # nn.Module.compile() was called
        log.info("model graph not drawn: a compiled net is not traced (module.compile=false draws it)")
        return
    was_training = net.training
    net.eval()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the tracer's warnings about Python values in forward
            writer.add_graph(net, torch.zeros(1, *input_shape, device=device))
    except Exception as err:  # noqa: BLE001 - the graph is a picture; the run goes on without it
        log.info("model graph not drawn: %s", str(err).splitlines()[0] if str(err) else type(err).__name__)
    finally:
        net.train(was_training)
