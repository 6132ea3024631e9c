"""training.timing, training.roofline and training.machine: round-robin repeats, calibration, the
inference speed report, the roofs and a step's traffic, and the machine description. Timings are
checked for sense (positive, ordered calls, a winner among the kernels tried), not speed."""
from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch
from torch import nn

from convzoo.models.complexity import complexity
from convzoo.training import machine
from convzoo.training.roofline import compute_peak, layer_bound, memory_bandwidth, step_bytes
from convzoo.training.timing import (Case, calibrate, infer_case, interleave, interleave_seconds, measure_inference,
                                     measure_training_and_inference, median, spread, train_case)

CPU = torch.device("cpu")


def test_interleave_warms_up_then_takes_turns():
    calls = []
    cases = {name: Case(lambda n=name: calls.append(n), work=2.0, warmup=1, fixed_steps=1) for name in "ab"}
    rates = interleave(cases, repeats=3, min_seconds=0.0, device=CPU)
    assert calls == ["a", "b"] + ["a", "b"] * 3  # one warm-up each, then round-robin
    assert all(len(v) == 3 and min(v) > 0 for v in rates.values())


def test_calibration_picks_steps_that_fill_min_seconds():
    case = Case(lambda: sum(range(2000)), work=1.0)
    calibrate(case, 0.02, CPU, warmup=1)
    assert case.steps > 1
    case.min_seconds = 0.0  # a case may ask for shorter repeats than the others
    calibrate(case, 0.02, CPU)
    assert case.steps == 1
    [seconds] = interleave_seconds({"x": Case(lambda: None, work=1.0, fixed_steps=7)}, 1, 1.0, CPU).values()
    assert len(seconds) == 1 and seconds[0] >= 0


def test_median_and_spread():
    assert median([3, 1, 100]) == 3
    assert spread([2.0]) == 0.0 and spread([1.0, 3.0]) == pytest.approx(2 ** 0.5)


def _net():
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(4, 10))


def test_train_and_infer_cases_share_a_net_and_set_its_mode():
    net = _net()
    train, infer = train_case(net, 4, "32-true", CPU), infer_case(net, 4, "bf16-mixed", CPU)
    before = net[0].weight.detach().clone()
    with infer.context():
        assert not net.training
    with train.context():
        assert net.training
        train.step()
    assert not torch.equal(before, net[0].weight)  # the step trained the net in place
    (t, i), = measure_training_and_inference({"n": net}, batch=4, repeats=2, warmup=1, min_seconds=0).values()
    assert t > 0 and i > 0


def test_measure_inference_reports_what_evaluate_records():
    result = measure_inference(_net().eval(), (3, 8, 8), CPU, batch_size=8, repeats=3, warmup=1, latency_iters=2)
    assert set(result) == {"images_per_sec", "throughput_batch_size", "latency_ms", "repeats", "precision", "threads"}
    assert result["images_per_sec"] > 0 and result["latency_ms"] > 0 and result["throughput_batch_size"] == 8


def test_compute_peak_is_the_best_of_the_shapes_tried():
    rate, winner = compute_peak(torch.float32, CPU, 1, 0.0, 1, matmuls=(16, 32), convs=((4, 4),), batch=2)
    assert math.isfinite(rate) and rate > 0
    assert winner in {"matmul 16^3", "matmul 32^3", "conv3x3 4->4 @4x4 x2"}


def test_memory_bandwidth_is_the_best_of_the_kernels_tried():
    rate, winner = memory_bandwidth(CPU, 1, 0.0, 1, megabytes=(0.0625, 0.125))
    assert math.isfinite(rate) and rate > 0
    assert winner in {f"{kernel} {mb} MB" for kernel in ("copy", "triad") for mb in ("0.0625", "0.125")}


def test_step_bytes_of_one_conv_by_hand():
    # per image: input X = 8*6*6*4 B, output A = 16*6*6*4 B; weights P = 16*8*9*4 B; batch 4
    report = complexity(nn.Conv2d(8, 16, 3, padding=1, bias=False), (8, 6, 6))
    x, a, p = 4 * 1152, 4 * 2304, 4608
    assert step_bytes(report, 4, (8, 6, 6)) == 2 * x + 5 * a + 8 * p == 92_160
    assert step_bytes(report, 4, (8, 6, 6), train=False) == x + 2 * a + p
    assert step_bytes(report, 4, (8, 6, 6), activation_itemsize=2) == 2 * x + 5 * a / 2 + 8 * p


def test_depthwise_conv_has_far_lower_intensity_than_a_dense_one():
    def intensity(groups):
        report = complexity(nn.Conv2d(64, 64, 3, padding=1, groups=groups, bias=False), (64, 16, 16))
        return 6 * report.total_macs * 32 / step_bytes(report, 32, (64, 16, 16))

    dense, depthwise = intensity(1), intensity(64)
    assert dense > 50 * depthwise and depthwise < 3  # ~114 against ~1.9 FLOP/byte


def test_layer_bound_by_hand():
    # a dense 3x3 conv then an in-place ReLU, batch 4, fp32: peak 1e9 FLOP/s, bandwidth 1e8 B/s
    net = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1, bias=False), nn.ReLU(inplace=True))
    report = complexity(net, (8, 6, 6))
    macs, out, params = 6 * 6 * 9 * 8 * 16, 16 * 6 * 6 * 4, 16 * 8 * 9 * 4
    conv = max(6 * macs * 4 / 1e9, (2 * out * 4 + 8 * params) / 1e8)
    relu = 2 * out * 4 / 1e8  # no MACs: memory-bound
    seconds, memory_share = layer_bound(report, 4, 1e9, 1e8)
    assert seconds == pytest.approx(conv + relu)
    assert memory_share == pytest.approx(relu / seconds if conv == 6 * macs * 4 / 1e9 else 1.0)
    # forward only: 2 x MACs, output written once and the parameters read once
    fwd, _ = layer_bound(report, 4, 1e9, 1e8, train=False)
    assert fwd == pytest.approx(max(2 * macs * 4 / 1e9, (out * 4 + params) / 1e8) + out * 4 / 1e8)


def test_machine_reads_cpuinfo(tmp_path, monkeypatch):
    info = tmp_path / "cpuinfo"
    info.write_text("model name\t: Test CPU\ncpu family\t: 25\nmodel\t\t: 17\nflags\t\t: fpu avx512f avx512_bf16\n")
    monkeypatch.setattr(machine, "CPUINFO", info)
    assert machine.cpu_name() == "Test CPU (family 25, model 17)"
    assert machine.cpu_flags() == {"fpu", "avx512f", "avx512_bf16"} and machine.has_native_bf16()
    info.write_text("flags\t\t: fpu avx512f\n")
    assert not machine.has_native_bf16() and machine.cpu_name()  # no model name: the platform's
    monkeypatch.setattr(machine, "CPUINFO", tmp_path / "missing")
    assert machine.cpu_flags() == set() and not machine.has_native_bf16()


def test_machine_rows_name_the_cpu_and_versions():
    rows = {r[""]: r["value"] for r in machine.machine_rows(CPU, "32-true")}
    assert rows["CPU"] == machine.cpu_name() and "torch " in rows["versions"] and "lightning " in rows["versions"]
    assert rows["default precision (trainer.precision=auto)"] == "32-true"


def test_timing_roofline_and_machine_do_not_import_lightning():
    code = ("import sys, convzoo.training.timing, convzoo.training.roofline, convzoo.training.machine, "
            "convzoo.training.tables, convzoo.training.runs; print('lightning' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
