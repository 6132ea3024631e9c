"""The choice of precision, memory format and torch.compile for a run (training/calibrate.py):
which candidates are timed, what is cached, when compiling is tried and kept, and what train()
records. Timings are replaced by fixed rates except in one real, tiny measurement."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from convzoo.training import calibrate
from convzoo.training.calibrate import Setting, choose, eager_candidates, time_settings
from convzoo.training.train import train

CPU = torch.device("cpu")
LONG, SHORT = 50_000, 10  # planned steps: worth calibrating and compiling, and not


def _choose(tmp_path, steps=LONG, **kw):
    args = dict(precision="auto", channels_last="auto", compile_="auto", batch_size=8, input_shape=(3, 8, 8),
                num_classes=10, planned_steps=steps, device=CPU, cache=tmp_path / "cache.json")
    args.update(kw)
    return choose(nn.Conv2d(3, 4, 3), {"name": "probe"}, **args)


@pytest.fixture
def fake_timing(monkeypatch, fp32_machine):
    """Fixed rates (images/s) instead of timings, on a machine taken as fp32-only; records what was timed."""
    calls = {"eager": [], "compiled": []}
    rates = calls["rates"] = {True: 100.0, False: 150.0}  # contiguous wins

    def eager(net, settings, *args, **kw):
        calls["eager"].append(list(settings))
        return {s: rates[s.channels_last] for s in settings}

    def compiled(net, setting, *args, **kw):
        calls["compiled"].append(setting)
        return calls.get("compile_seconds", 30.0), calls.get("compiled_rate", 300.0)

    monkeypatch.setattr(calibrate, "time_settings", eager)
    monkeypatch.setattr(calibrate, "time_compiled", compiled)
    return calls


def test_candidates_skip_emulated_bf16(monkeypatch):
    monkeypatch.setattr(calibrate, "has_native_bf16", lambda: False)
    assert {s.precision for s in eager_candidates("auto", "auto", CPU)} == {"32-true"}
    assert len(eager_candidates("auto", "auto", CPU)) == 2
    monkeypatch.setattr(calibrate, "has_native_bf16", lambda: True)
    monkeypatch.setattr("convzoo.training.device.has_native_bf16", lambda: True)
    assert {(s.precision, s.channels_last) for s in eager_candidates("auto", "auto", CPU)} == {
        ("bf16-mixed", True), ("bf16-mixed", False), ("32-true", True), ("32-true", False)}
    assert eager_candidates("fp32", False, CPU) == [Setting("32-true", False)]


def test_fixed_settings_are_not_timed(fake_timing, tmp_path):
    choice = _choose(tmp_path, precision="32-true", channels_last=False, compile_=True)
    assert choice.source == "fixed" and choice.setting == Setting("32-true", False, True)
    assert not fake_timing["eager"] and not (tmp_path / "cache.json").exists()


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_bad_flag_names_the_option(fake_timing, tmp_path, value):
    with pytest.raises(ValueError, match=r"module.channels_last should be true, false or auto, got"):
        _choose(tmp_path, channels_last=value)
    with pytest.raises(ValueError, match=r"module.compile should be true, false or auto"):
        _choose(tmp_path, compile_=value)


def test_short_run_takes_defaults_without_timing(fake_timing, tmp_path):
    choice = _choose(tmp_path, steps=SHORT)
    assert choice.setting == Setting("32-true", True, False) and choice.source.startswith("default: run of 10")
    assert not fake_timing["eager"] and choice.seconds is None


def test_long_run_measures_compiles_and_caches(fake_timing, tmp_path):
    choice = _choose(tmp_path)
    assert choice.source == "measured" and choice.setting == Setting("32-true", False, True)
    assert choice.seconds is not None and choice.to_dict()["seconds"] == choice.seconds >= 0  # time spent measuring
    assert fake_timing["compiled"] == [Setting("32-true", False)]  # only the fastest eager setting
    record = next(iter(json.loads((tmp_path / "cache.json").read_text()).values()))
    assert record["rates"]["32-true, contiguous, compiled"] == 300.0 and record["compile_seconds"] == 30.0
    # The cache holds measurements: a short run reuses them, times nothing, and does not compile
    # (30 s of compiling twice would not pay over 10 steps).
    again = _choose(tmp_path, steps=SHORT)
    assert again.source == "cached" and again.setting == Setting("32-true", False, False) and again.seconds is None
    assert len(fake_timing["eager"]) == 1 and len(fake_timing["compiled"]) == 1
    assert "2.00x eager" in again.note


def test_compile_kept_only_when_faster(fake_timing, tmp_path):
    fake_timing["compiled_rate"] = 156.0  # within the 5% margin of eager's 150
    assert _choose(tmp_path).setting == Setting("32-true", False, False)


def test_a_win_within_the_noise_keeps_the_usual_setting(fake_timing, tmp_path):
    fake_timing["rates"][False] = 104.0  # contiguous 4% ahead of channels_last: not a measured win
    fake_timing["compiled_rate"] = 100.0
    assert _choose(tmp_path).setting == Setting("32-true", True, False)


def test_compile_not_tried_for_a_run_under_the_minimum(fake_timing, tmp_path):
    # 2,000 steps of 8 images at 150 img/s: under 2 minutes, below compile_min_minutes=15.
    choice = _choose(tmp_path, steps=2_000)
    assert choice.setting == Setting("32-true", False, False) and not fake_timing["compiled"]
    assert "compile not tried" in choice.note


def test_corrupt_cache_is_measured_again(fake_timing, tmp_path):
    (tmp_path / "cache.json").write_text("{not json")
    assert _choose(tmp_path).source == "measured"
    assert json.loads((tmp_path / "cache.json").read_text())  # rewritten whole


def test_real_timing_leaves_net_and_rng_alone():
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(256, 10))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    torch.manual_seed(1)
    expected = torch.rand(3)
    torch.manual_seed(1)
    rates = time_settings(net, [Setting("32-true", True), Setting("32-true", False)], 4, (3, 8, 8), 10, CPU,
                          repeats=1, warmup=1, min_seconds=0.0)
    assert all(r > 0 for r in rates.values()) and len(rates) == 2
    assert torch.equal(torch.rand(3), expected)
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())


def test_train_records_the_choice(compose_train, tiny, tmp_path):
    cfg = compose_train(*tiny, "trainer.max_epochs=1", "trainer.precision=auto",
                        f"calibration.cache={tmp_path / 'cache.json'}", tmp_path=tmp_path)  # nothing cached by other tests
    metrics = train(cfg)
    record = json.loads((tmp_path / "calibration.json").read_text())
    assert record["source"].startswith("default: run of 4 steps")  # 4 steps: nothing timed
    assert record["setting"] == {"precision": cfg.trainer.precision, "channels_last": True, "compile": False}
    assert record["seconds"] is None  # nothing timed
    assert metrics["channels_last"] is True and metrics["compile"] is False


def test_planned_steps_from_the_trainer_limits(compose_train, tiny):
    from convzoo.training.train import planned_steps

    class Data:  # 10 training batches an epoch
        def train_dataloader(self):
            return range(10)

    def steps(*overrides):
        return planned_steps(compose_train(*tiny, *overrides), Data())

    assert steps("trainer.max_epochs=3") == 30
    assert steps("trainer.max_epochs=3", "+trainer.limit_train_batches=0.5") == 15
    assert steps("trainer.max_epochs=3", "+trainer.max_steps=7") == 7
    assert steps("trainer.max_epochs=-1", "+trainer.max_steps=500") == 500  # bounded by max_steps alone
    assert steps("+trainer.fast_dev_run=2") == 2
