"""What a run writes for TensorBoard (docs/tensorboard.md), read back from its event files: the pinned
scalar tags, the custom-scalars layout, hyperparameters as an HParams session (not hparams/* scalars),
the figures, the model card and graph; profile=true's trace; the fixed image sample. Tags, not pixels."""
from __future__ import annotations

import json
import re

import pytest
import torch

from train import train
from convzoo.training.model_card import stage_table
from convzoo.training.reporting import StratifiedSample
from convzoo.training.tensorboard_log import hparam_value, scalars_layout

# Renaming one of these breaks every reader of old runs (runs.py, leaderboard, benchmarks): don't.
CLASSIFY_SCALARS = {"train/loss_step", "train/loss_epoch", "train/acc_step", "train/acc_epoch",
                    "train/epoch_seconds", "train/images_per_sec", "val/loss", "val/acc", "val/acc_best",
                    "test/loss", "test/acc", "lr-SGD/pg1", "lr-SGD/pg2"}


def _accumulator(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # slow import

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return acc


def _layout(acc):
    from tensorboard.plugins.custom_scalar import layout_pb2
    from tensorboard.util import tensor_util

    layout = layout_pb2.Layout()
    layout.ParseFromString(tensor_util.make_ndarray(acc.Tensors("custom_scalars__config__")[0].tensor_proto).item())
    return {cat.title: {chart.title: list(chart.multiline.tag) for chart in cat.chart} for cat in layout.category}


def _hparams(acc):
    from tensorboard.plugins.hparams import metadata

    content = acc.PluginTagToContent("hparams")
    start = metadata.parse_session_start_info_plugin_data(content[metadata.SESSION_START_INFO_TAG])
    experiment = metadata.parse_experiment_plugin_data(content[metadata.EXPERIMENT_TAG])
    values = {k: v.string_value or v.number_value for k, v in start.hparams.items()}
    return values, [m.name.tag for m in experiment.metric_infos], set(content)


@pytest.fixture(scope="module")
def classified(tmp_path_factory, compose_train, tiny):
    """One tiny classifier run, fitted and tested, with profile=true (two traced steps)."""
    out = tmp_path_factory.mktemp("classify")
    train(compose_train(*tiny, "trainer.max_epochs=1", "profile=true", "callbacks.profiler.skip=0",
                        "callbacks.profiler.warmup=1", "callbacks.profiler.steps=2", tmp_path=out))
    return out, _accumulator(out)


def test_scalar_tags_are_pinned_with_no_epoch_or_hparams_cards(classified):
    _, acc = classified
    assert set(acc.Tags()["scalars"]) == CLASSIFY_SCALARS


def test_layout_draws_train_and_val_together_and_every_chart_matches_a_logged_tag(classified):
    _, acc = classified
    layout = _layout(acc)
    charts = layout["training"]
    assert list(charts) == ["loss", "accuracy", "learning rate", "throughput (img/s)"] and "budget" not in layout
    assert {"^train/loss_epoch$", "^val/loss$"} <= set(charts["loss"])
    assert {"^train/acc_epoch$", "^val/acc$"} <= set(charts["accuracy"])
    for title, patterns in charts.items():
        assert any(re.search(p, tag) for p in patterns for tag in CLASSIFY_SCALARS), title


def test_hparams_are_an_hparams_session_with_the_run_facts_and_its_metrics(classified):
    _, acc = classified
    values, metrics, tags = _hparams(acc)
    assert tags == {"_hparams_/experiment", "_hparams_/session_start_info", "_hparams_/session_end_info"}
    assert {"model", "family", "params", "macs", "precision", "budget", "seed", "lr", "batch_size", "optimizer",
            "weight_decay", "scheduler", "epochs", "label_smoothing"} <= set(values)
    assert values["model"] == "resnet20" and values["family"] == "resnet_cifar" and values["budget"] == "none"
    assert values["params"] == 269_722 and values["precision"] == "32-true"
    assert {"val/acc", "val/acc_best", "test/acc"} <= set(metrics)
    assert set(metrics) <= CLASSIFY_SCALARS  # the table reads the logged scalars: no copies


def test_figures_model_card_and_graph(classified):
    _, acc = classified
    images = set(acc.Tags()["images"])
    assert {f"{split}/{name}" for split in ("val", "test")
            for name in ("confusion_matrix", "per_class_accuracy", "misclassified")} <= images
    card = acc.Tensors("model/complexity/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "| stages.2 |" in card and "64x8x8" in card and "_target_: convzoo.models.Net" in card
    assert acc.Tags()["graph"]


def test_profile_writes_a_chrome_trace_into_the_run_folder(classified):
    out, _ = classified
    traces = list((out / "profile").glob("*.pt.trace.json"))
    assert len(traces) == 1 and "traceEvents" in json.loads(traces[0].read_text())


def test_autoencoder_shows_reconstructions_and_its_own_charts(tmp_path, compose_train, tiny):
    smaller = [o for o in tiny if not o.startswith(("data.num_samples", "data.val_size", "data.test_size"))]
    train(compose_train("experiment=checkerboard", *smaller, "data.num_samples=96", "data.val_size=32",
                        "data.test_size=32", "trainer.max_epochs=1", "model.channels=[8,16,16]",
                        "module.num_images=4", "callbacks.checkerboard=null", tmp_path=tmp_path))
    acc = _accumulator(tmp_path)
    image = acc.Images("val/reconstructions")[-1]
    assert image.width > 2 * image.height  # four (original, reconstruction) pairs in one row
    assert list(_layout(acc)["training"])[:2] == ["loss", "PSNR (dB)"]
    values, metrics, _ = _hparams(acc)
    assert values["task"] == "autoencode" and values["decoder"] == "resize" and "val/psnr" in metrics
    assert not any(t.startswith("hparams/") for t in acc.Tags()["scalars"])


def test_stratified_sample_spreads_over_classes_and_is_the_same_in_every_pass():
    labels = torch.arange(40) // 10  # a split sorted by class: 4 classes of 10

    def sample(batch):
        s = StratifiedSample(6)
        for i in range(0, 40, batch):
            s.add(torch.arange(i, i + batch), labels[i:i + batch], torch.arange(i, i + batch))
        return s.items()

    picked_labels, positions = sample(8)
    assert picked_labels.tolist() == [0, 1, 2, 3, 0, 1]  # the classes in turn, not the first class six times
    assert torch.equal(sample(5)[1], positions)  # batching does not change the pick
    assert StratifiedSample(3).items() is None


def test_layout_adds_the_budget_and_hparam_values_are_plugin_types():
    layout = scalars_layout({"loss": ("train/loss_epoch",)}, budget=True)
    assert layout["budget"]["seconds used"] == ["Multiline", ["^budget/seconds_used$"]]
    assert [hparam_value(v) for v in (True, None, 3, 0.5, "x", [1, 2])] == ["true", "none", 3, 0.5, "x", "[1, 2]"]


def test_stage_table_adds_up_to_the_complexity_totals():
    from convzoo.models import create_model
    from convzoo.models.complexity import complexity

    net = create_model("mobilenet_v2_x0_5")
    report = complexity(net, (3, 32, 32))
    rows = [line.split(" | ") for line in stage_table(net, report, (3, 32, 32)).splitlines()[2:-1]]
    assert sum(int(r[1].replace(",", "")) for r in rows) == report.total_params
    assert [r[0].lstrip("| ") for r in rows][:2] == ["stem", "stages.0"] and net.training


def test_figures_reuse_the_validation_pass(tmp_path, compose_train, tiny, monkeypatch):
    """The figures come from the predictions validation made: no pass of their own after fitting
    (one costs a validation's time, which a budgeted run would have to hold back from training)."""
    from convzoo.data.base import ImageDataModule

    calls = []
    original = ImageDataModule.val_dataloader
    monkeypatch.setattr(ImageDataModule, "val_dataloader", lambda self: calls.append(1) or original(self))
    metrics = train(compose_train(*tiny, "trainer.max_epochs=2", "test=false", tmp_path=tmp_path))
    assert len(calls) == 1  # Lightning's own, reused for the sanity check and both validations
    drawn = _accumulator(tmp_path).Images("val/confusion_matrix")
    assert len(drawn) == 1 and drawn[0].step == metrics["train_images_seen"] // 32  # at the last validation
