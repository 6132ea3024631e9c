"""benchmarks/peers.py and its peers: kuangliu's CIFAR ShuffleNetV2 and MobileNetV2 rewritten in
benchmarks/_peers.py build, give logits, have the sizes their docstring states, and the --quick
run prints every table. Timings are not asserted (the benchmark prints them)."""
from __future__ import annotations

import pytest
import torch

from benchmarks import _peers, peers
from convzoo.training.calibrate import Choice, Setting


@pytest.mark.parametrize("name", list(_peers.PEERS))
def test_peer_gives_logits_and_every_parameter_a_gradient(name):
    net = _peers.PEERS[name][0]()
    logits = net(torch.randn(3, 3, 32, 32))
    assert logits.shape == (3, 10) and torch.isfinite(logits).all()
    logits.sum().backward()
    assert all(p.grad is not None for p in net.parameters())


def test_shuffle_interleaves_the_groups():
    x = torch.arange(6.0).view(1, 6, 1, 1)
    assert _peers.shuffle(x).flatten().tolist() == [0, 3, 1, 4, 2, 5]


def test_quick_run_writes_every_table(tmp_path, monkeypatch, fp32_machine):
    real_choose = peers.choose

    def choose(net, model_cfg, **kw):  # eff_shuffle as if calibrated to contiguous: the timing must follow
        if model_cfg["name"] == "eff_shuffle":
            return Choice(Setting("32-true", False), "cached")
        return real_choose(net, model_cfg, **kw)

    monkeypatch.setattr(peers, "choose", choose)
    out = tmp_path / "peers.md"
    tables = peers.main(["--quick", "--eff-models", "eff_standard,eff_separable,eff_shuffle",
                         "--cache", str(tmp_path / "calibration.json"), "--out", str(out)])

    # the sizes the docstring of _peers states, through models.complexity
    shuffle, mobile = tables["sizes"]
    assert shuffle["params ours"] == shuffle["params peer"] == 1_263_854
    assert shuffle["MACs ours (M)"] == shuffle["MACs peer (M)"] == pytest.approx(45.0, abs=0.01)
    assert (mobile["params ours"], mobile["params peer"]) == (2_236_682, 2_296_922)
    assert (mobile["MACs ours (M)"], mobile["MACs peer (M)"]) == pytest.approx((87.98, 91.15), abs=0.01)

    # --quick plans a run too short to calibrate: static defaults, nothing measured or compiled
    calibration = {r["model"]: r for r in tables["calibration"]}
    assert "default: run of 0 steps" in calibration["shufflenet_v2_x1_0"]["calibration"]
    assert calibration["eff_shuffle"]["setting"] == "32-true, contiguous"
    assert not (tmp_path / "calibration.json").exists()

    rows = tables["peers"]
    assert [r["implementation"] for r in rows] == ["convzoo", *["kuangliu ShuffleNetV2(net_size=1)"] * 2,
                                                   "convzoo", *["kuangliu MobileNetV2"] * 2]
    assert all(r["train img/s"] > 0 for r in rows)
    assert sum(r["setting"].endswith("(best)") for r in rows) == 2
    assert {r["model"]: r["setting"] for r in tables["efficiency"]}["eff_shuffle"] == "32-true, contiguous"
    assert {r["model"]: r["vs eff_standard"] for r in tables["efficiency"]}["eff_standard"] == 1.0

    goals = tables["targets"]
    assert [r["goal"] for r in goals] == [">= 1.5", ">= 1.5", ">= 2", ">= 1"]
    assert all(r["measured"] > 0 and r["result"] in ("pass", "FAIL") for r in goals)
    ours = [r["vs peer best"] for r in rows if r["implementation"] == "convzoo"]
    assert [r["measured"] for r in goals[:2]] == pytest.approx(ours)

    text = out.read_text()
    assert "`python benchmarks/peers.py --quick" in text and "| CPU " in text
    assert text.count("### ") == 6 and "### Targets" in text
    assert "| eff_separable training img/s / eff_standard " in text


def test_targets_pass_fail_and_not_measured():
    rows = peers.targets({"shufflenet_v2_x1_0": 1.6}, {"eff_standard": 100.0, "eff_separable": 150.0,
                                                       "eff_shuffle": 100.0})
    assert [r["result"] for r in rows] == ["pass", "not measured", "FAIL", "pass"]
    assert rows[2]["measured"] == 1.5


@pytest.mark.parametrize("argv, message", [(["--peer-models", "resnet20"], "no peer for resnet20"),
                                           (["--eff-models", "eff_separable"], "the targets need eff_shuffle, eff_standard"),
                                           (["--repeats", "0"], "--repeats should be >= 1")])
def test_bad_arguments_exit_with_a_message(argv, message, capsys):
    with pytest.raises(SystemExit):
        peers.parse_args(argv)
    assert message in capsys.readouterr().err


def test_defaults_quick_run_compares_the_default_with_every_setting(tmp_path, monkeypatch, fp32_machine):
    """benchmarks/defaults.py: one row per model, the default (here forced to contiguous for one model,
    as a calibration could choose) timed beside every eager setting, and default / best computed."""
    from benchmarks import defaults

    real_choose = peers.choose

    def choose(net, model_cfg, **kw):
        assert kw["compile_"] is False  # --compile off (the default): the calibration never compiles
        if model_cfg["name"] == "eff_separable":
            return Choice(Setting("32-true", False), "cached")
        return real_choose(net, model_cfg, **kw)

    monkeypatch.setattr(peers, "choose", choose)
    out = tmp_path / "defaults.md"
    rows = defaults.main(["--quick", "--models", "eff_standard,eff_separable", "--out", str(out)])
    assert [r["model"] for r in rows] == ["eff_standard", "eff_separable"]
    assert [r["default setting"] for r in rows] == ["32-true, channels_last", "32-true, contiguous"]
    for r in rows:
        rates = {k: v for k, v in r.items() if k.endswith("img/s") and k != "default img/s"}
        assert r["best single setting"] + " img/s" == max(rates, key=rates.get)
        chosen = rates[r["default setting"] + " img/s"]
        assert r["chosen / best"] == pytest.approx(chosen / max(rates.values()))
        assert r["re-run / chosen"] == pytest.approx(r["default img/s"] / chosen)
    text = out.read_text()
    assert "`python benchmarks/defaults.py --quick" in text and "over 2 models; below 0.97:" in text
    assert "The same setting timed twice differed by" in text
    with pytest.raises(SystemExit):
        defaults.main(["--models", "nope*"])
