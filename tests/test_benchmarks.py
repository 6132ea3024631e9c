"""benchmarks/speed.py in --quick mode: every table has its rows and columns and positive numbers.

Timings are not asserted (the benchmark prints them); sizes are, against models.complexity.
"""
from __future__ import annotations

import pytest
import torch

from benchmarks import _depthwise as depthwise
from benchmarks.speed import main, parse_args, targets
from convzoo.models import create_model
from convzoo.models.complexity import complexity
from convzoo.training.tables import format_number, records_table


def _positive(rows, prefix):
    keys = [k for k in rows[0] if k.startswith(prefix)]
    assert keys, f"no column starting with {prefix!r} in {list(rows[0])}"
    for row in rows:
        for key in keys:
            assert row[key] > 0, (key, row)


def test_models_and_trainer_tables(tmp_path):
    out = tmp_path / "speed.md"
    tables = main(["--models", "resnet20", "--tables", "models,trainer", "--quick", "--out", str(out)])
    [row] = tables["models"]
    report = complexity(create_model("resnet20"), (3, 32, 32))
    assert row["model"] == "resnet20" and row["params"] == report.total_params == 269_722
    assert row["MACs/img (M)"] == pytest.approx(report.total_macs / 1e6)
    for prefix in ("train img/s 32-true", "train MFU %", "infer img/s @32", "infer MFU %", "latency @1"):
        _positive([row], prefix)
    assert [r["GFLOP/s"] > 0 for r in tables["peak"]] == [True] * len(tables["peak"])
    lightning, bare = tables["trainer"]
    assert lightning["loop"].startswith("Lightning") and bare["loop"].startswith("bare")
    _positive(tables["trainer"], "img/s")
    targets_ = {r["target"]: r for r in tables["targets"]}
    assert targets_["Lightning img/s / bare loop img/s"]["measured"] > 0
    assert targets_["fast loader img/s / resnet20 training img/s"]["result"] == "not measured"
    text = out.read_text()
    assert "python benchmarks/speed.py --models resnet20" in text and "| resnet20 |" in text
    assert text.count("### ") == 5  # machine, peak, models, trainer, targets


def test_data_table_on_synthetic_images():
    tables = main(["--tables", "data", "--quick", "--data", "synthetic"])
    assert [r["loader"].split(" (")[0] for r in tables["data"]] == [
        "convzoo InMemoryLoader", "convzoo make_torch_loader", "torchvision DataLoader"]
    _positive(tables["data"], "img/s")
    assert tables["data"][-1]["vs torchvision"] == 1.0
    loader = {r["target"]: r for r in tables["targets"]}["fast loader img/s / resnet20 training img/s"]
    assert loader["measured"] > 0 and loader["result"] in ("pass", "FAIL")


def test_depthwise_settings_rows_and_winners(monkeypatch):
    opts = parse_args(["--quick", "--compile"])
    chosen = depthwise.settings(opts, "32-true")
    names = [s["setting"] for s in chosen]
    assert names[0] == "default: channels_last, oneDNN, batch 16, {} threads, 32-true".format(torch.get_num_threads())
    assert {"NCHW (contiguous)", "oneDNN off", "batch 8", "batch 32", "bf16-mixed autocast",
            "torch.compile (inductor)"} <= set(names)
    # the full list takes minutes even in --quick (oneDNN off is slow): time two settings here
    monkeypatch.setattr(depthwise, "settings", lambda o, d: chosen[:2])
    rows = depthwise.depthwise_rows(["shufflenet_v2_x0_5"], opts, "32-true")
    assert [r["setting"] for r in rows] == names[:2] and rows[0]["train vs default"] == 1.0
    _positive(rows, "train img/s")
    _positive(rows, "infer img/s")
    fake = [{**rows[0], "train img/s": 10.0, "infer img/s @32": 30.0, "infer vs default": 1.0},
            {**rows[1], "train img/s": 20.0, "train vs default": 2.0, "infer img/s @32": None,
             "infer vs default": None}]
    [best] = depthwise.winners(fake)
    assert best["fastest training"] == names[1] and best["train vs default"] == 2.0
    assert best["fastest inference"] == names[0]


def test_targets_pass_fail_and_default_precision():
    rows = targets({"loader_ratio": 25.0, "trainer_ratio": 0.9, "precision_ratio": 2.5}, "bf16-mixed")
    assert [r["result"] for r in rows] == ["pass", "FAIL", "pass"]
    rows = targets({"precision_ratio": 1.0}, "32-true")
    assert [r["result"] for r in rows] == ["not measured", "not measured", "n/a"]
    assert "default == fp32" in rows[2]["note"]


def test_records_table_aligns_numbers_right():
    text = records_table([{"name": "a", "n": 1234, "x": 0.5}, {"name": "bb", "n": 5, "x": None}])
    head, rule, first, second = text.splitlines()
    assert head == "| name |     n |     x |" and rule == "|------|------:|------:|"
    assert first == "| a    | 1,234 | 0.500 |" and second == "| bb   |     5 |     - |"
    assert [format_number(v) for v in (0.9621, 2.5, 12.34, 1234.5, "x")] == ["0.962", "2.50", "12.3", "1,234", "x"]


@pytest.mark.parametrize("argv, message", [(["--tables", "models,speed"], "unknown speed"),
                                           (["--repeats", "0"], "--repeats should be >= 1")])
def test_bad_arguments_exit_with_a_message(argv, message, capsys):
    with pytest.raises(SystemExit):
        parse_args(argv)
    assert message in capsys.readouterr().err
