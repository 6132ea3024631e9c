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
    for prefix in ("train img/s 32-true", "GFLOP/s 32-true", "AI 32-true", "roof img/s 32-true",
                   "% of roof 32-true", "infer img/s @32", "infer % of roof", "latency @1"):
        _positive([row], prefix)
    assert 0 <= row["memory-bound % 32-true"] <= 100
    speed = next(v for k, v in row.items() if k.startswith("train img/s 32-true"))
    assert row["% of roof 32-true"] == pytest.approx(100 * speed / row["roof img/s 32-true"])
    roofs = [r["roof"] for r in tables["roofs"]]  # bf16-mixed too where it is the default
    assert roofs[0] == "compute peak 32-true" and roofs[-1] == "memory bandwidth"
    assert all(r["value"] > 0 and r["won by"] for r in tables["roofs"])
    lightning, bare = tables["trainer"]
    assert lightning["loop"].startswith("Lightning") and bare["loop"].startswith("bare")
    _positive(tables["trainer"], "img/s")
    targets_ = {r["target"]: r for r in tables["targets"]}
    assert targets_["Lightning img/s / bare loop img/s"]["measured"] > 0
    assert targets_["fast loader img/s / resnet20 training img/s"]["result"] == "not measured"
    text = out.read_text()
    assert "python benchmarks/speed.py --models resnet20" in text and "| resnet20 |" in text
    assert text.count("### ") == 5  # machine, roofs, models, trainer, targets


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


def test_profile_quick_tables_and_self_times_within_the_step(tmp_path):
    from benchmarks.op_profile import main as profile_main

    out = tmp_path / "profile.md"
    [result] = profile_main(["--quick", "--models", "eff_separable", "--precisions", "fp32",
                             "--formats", "channels_last", "--out", str(out)])
    assert (result["model"], result["precision"], result["format"]) == ("eff_separable", "32-true", "channels_last")
    ops = result["ops"]
    assert list(ops[0]) == ["operator", "phase", "calls/step", "self ms/step", "% of step"]
    assert [op["self ms/step"] for op in ops] == sorted((op["self ms/step"] for op in ops), reverse=True)
    assert {op["phase"] for op in ops} == {"forward", "backward", "optimizer"}
    assert any(op["operator"].endswith("[depthwise 3x3]") and op["phase"] == "backward" for op in ops)
    # self times exclude children, so over one profiled step they cannot add up to more than its wall time
    total = sum(op["self ms/step"] for op in ops)
    assert 0 < total <= result["step ms"] * 1.02, (total, result["step ms"])
    assert sum(result["shares"].values()) == pytest.approx(total)
    text = out.read_text()
    assert "python benchmarks/op_profile.py --quick --models eff_separable" in text and "| CPU " in text
    header = next(line for line in text.splitlines() if line.startswith("| operator"))
    assert [c.strip() for c in header.strip("|").split("|")] == ["operator", "phase", "calls/step",
                                                                 "self ms/step", "% of step"]
    assert text.count("\n| aten::") >= 3 and "### Summary" in text  # --quick: top 3


def test_profile_classifies_by_the_outermost_ancestor():
    from types import SimpleNamespace as Event

    from benchmarks.op_profile import classify

    step = Event(name="Optimizer.step#SGD.step", cpu_parent=None, input_shapes=[])
    node = Event(name="autograd::engine::evaluate_function: ConvolutionBackward0", cpu_parent=None, input_shapes=[])
    conv = Event(name="aten::convolution_backward", cpu_parent=node,
                 input_shapes=[[8, 32, 16, 16], [8, 32, 16, 16], [32, 1, 3, 3]])
    inner = Event(name="aten::_slow_conv2d_backward", cpu_parent=conv,  # one group's slice
                  input_shapes=[[8, 1, 16, 16], [8, 1, 16, 16], [1, 1, 3, 3]])
    copy = Event(name="aten::copy_", cpu_parent=inner, input_shapes=[])
    shuffle = Event(name="aten::reshape", cpu_parent=None, input_shapes=[[8, 3, 4, 16, 16]])
    memo = {}
    assert classify(Event(name="aten::add_", cpu_parent=step, input_shapes=[]), memo)[:2] == ("optimizer", "optimizer")
    assert classify(inner, memo) == ("backward", "conv", "depthwise 3x3")
    assert classify(copy, memo) == ("backward", "conv", "depthwise 3x3")
    assert classify(Event(name="aten::copy_", cpu_parent=shuffle, input_shapes=[]), memo)[:2] == ("forward", "cat/shuffle")
    dense = Event(name="aten::conv2d", cpu_parent=None, input_shapes=[[8, 16, 8, 8], [48, 16, 1, 1]])
    grouped = Event(name="aten::conv2d", cpu_parent=None, input_shapes=[[8, 24, 8, 8], [48, 8, 1, 1]])
    assert classify(dense, memo)[2] == "dense 1x1" and classify(grouped, memo)[2] == "grouped 1x1 g=3"


def test_fused_inference_table(capsys):
    from benchmarks.fused_inference import main as fused_main

    [row] = fused_main(["--models", "resnet20", "--batch", "2", "--repeats", "1", "--latency-iters", "1"])
    assert row["folded pairs"] == 19 and row["img/s fused"] > 0 and row["latency ratio"] > 0
    out = capsys.readouterr().out
    assert "| model" in out and "throughput ratio" in out and "resnet20" in out


def test_widths_table_has_the_variants_sizes_and_per_stage_macs(tmp_path):
    from benchmarks.widths import main as widths_main

    rows = widths_main(["--quick", "--out", str(tmp_path / "widths.md")])  # --quick: 8,16,16 and 8,16,32
    assert [r["widths"] for r in rows] == ["8,16,16", "8,16,32"]
    for row, widths in zip(rows, ([8, 16, 16], [8, 16, 32])):
        report = complexity(create_model("fastnet", family={"widths": widths}))
        assert row["params"] == report.total_params and row["MACs (M)"] == report.total_macs / 1e6
        per_stage = [float(m) for m in row["MACs per stage (M)"].split(" / ")]
        assert len(per_stage) == 3 and all(m > 0 for m in per_stage) and sum(per_stage) <= row["MACs (M)"] + 0.1
        assert row["train img/s"] > 0 and row["train GMAC/s"] > 0
    assert rows[0]["x 8,16,16"] == 1.0 and rows[0]["MACs per stage (M)"] != rows[1]["MACs per stage (M)"]
    assert "fastnet at other widths" in (tmp_path / "widths.md").read_text()


@pytest.mark.parametrize("argv, message", [
    (["--model", "mobilenet_v1"], "--model mobilenet_v1: its config has no family.widths"),
    (["--widths", "32,a,256"], "--widths: '32,a,256' is not comma-separated integers"),
    (["--widths", "32,0,256"], "--widths: '32,0,256' has a width below 1"),
])
def test_widths_bad_arguments_exit_with_a_message(argv, message, capsys):
    from benchmarks.widths import main as widths_main

    with pytest.raises(SystemExit):
        widths_main(argv)
    assert message in capsys.readouterr().err
