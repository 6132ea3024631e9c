"""The studies' configs keep the relations the studies rely on (equal skeletons, costs, gate biases),
and the highway gate monitor logs one scalar per block (the reports: test_study_reports.py)."""
from __future__ import annotations

import re
from types import SimpleNamespace

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from convzoo.models import create_model
from convzoo.models.complexity import complexity
from convzoo.models.layers.highway import HighwayBlock
from convzoo.models.layers.pooling import Pool2d
from train import train
from convzoo.studies.highway import HighwayGateMonitor
from convzoo.studies.registry import main
from convzoo.training.runs import read_scalars

EFF = ["eff_standard", "eff_separable", "eff_grouped", "eff_grouped_shuffle", "eff_shuffle"]
STUDY_EXPERIMENTS = ["degradation", "highway", "efficiency", "dilation", "pooling"]


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def block_macs(report, prefix: str) -> int:
    return sum(r.macs for r in report.rows if r.name.startswith(prefix))


def test_efficiency_forms_share_the_skeleton_and_cost_what_the_notes_say():
    nets = {n: create_model(n) for n in EFF}
    reports = {n: complexity(net) for n, net in nets.items()}
    assert all(net.feature_info == nets["eff_standard"].feature_info for net in nets.values())
    std, sep, grp = (reports[n] for n in EFF[:3])
    shared = block_macs(std, "stem.") + block_macs(std, "fc")
    assert all(block_macs(r, "stem.") + block_macs(r, "fc") == shared for r in reports.values())
    # Grouped with g = 4: exactly a quarter of every conv after the stem, weights and MACs alike.
    assert 4 * (grp.total_macs - shared) == std.total_macs - shared
    stem_fc = n_params(nets["eff_standard"].stem) + n_params(nets["eff_standard"].fc)
    conv_w = [sum(m.weight.numel() for m in nets[n].stages.modules() if isinstance(m, torch.nn.Conv2d))
              for n in ("eff_standard", "eff_grouped")]
    assert 4 * conv_w[1] == conv_w[0] and n_params(nets["eff_grouped"]) > stem_fc
    # Depthwise-separable: each block costs 1/C_out + 1/K^2 of the dense conv it replaces.
    for i, stage in enumerate(nets["eff_standard"].stages):
        for j, block in enumerate(stage):
            ratio = block_macs(sep, f"stages.{i}.{j}.") / block_macs(std, f"stages.{i}.{j}.")
            assert ratio == pytest.approx(1 / block.out_channels + 1 / 9)
    macs = {n: r.total_macs for n, r in reports.items()}
    assert macs["eff_shuffle"] < macs["eff_separable"] < macs["eff_grouped"] < macs["eff_standard"]
    assert any(type(m).__name__ == "ChannelShuffle" for m in nets["eff_shuffle"].modules())
    # Grouped + shuffle is grouped with a weightless permutation between its grouped convs.
    assert macs["eff_grouped_shuffle"] == macs["eff_grouped"]
    grouped, shuffled = (nets[n].state_dict() for n in ("eff_grouped", "eff_grouped_shuffle"))
    assert [v.shape for v in grouped.values()] == [v.shape for v in shuffled.values()]
    kinds = [type(m).__name__ for stage in nets["eff_grouped_shuffle"].stages for m in stage]
    assert kinds == ["ConvNormAct", "ChannelShuffleBlock"] * 5 + ["ConvNormAct"]


def test_allconv_pool_is_allconv_with_max_pools_for_its_strided_convs():
    allconv, pooled = create_model("allconv"), create_model("allconv_pool")
    strided = [m for m in allconv.modules() if isinstance(m, Pool2d) and m.mode == "conv"]
    pools = [m for m in pooled.modules() if isinstance(m, Pool2d)]
    assert len(strided) == len(pools) == 2
    assert all(p.mode == "max" and p.kernel_size == 3 and p.stride == 2 and n_params(p) == 0 for p in pools)
    assert n_params(pooled) == n_params(allconv) - sum(n_params(m) for m in strided) == 955_690
    a, p = complexity(allconv), complexity(pooled)
    assert a.total_macs - p.total_macs == sum(r.macs for r in a.rows if ".0.pool." in r.name)
    assert pooled.feature_info == allconv.feature_info and a.max_local_rf == p.max_local_rf


@pytest.mark.parametrize("experiment", STUDY_EXPERIMENTS)
def test_study_experiments_tag_their_runs_and_state_their_cpu_budget(experiment, compose_train, config_dir):
    cfg = compose_train(f"experiment={experiment}")
    assert cfg.study == experiment and 0 < cfg.trainer.limit_train_batches <= 1 and cfg.trainer.max_epochs <= 10
    text = (config_dir / "experiment" / f"{experiment}.yaml").read_text()
    assert "Budget:" in text and f"docs/studies/{experiment}.md" in text and f"convzoo study {experiment} " in text
    assert not re.search(r"\b20\d\d-\d\d-\d\d\b|Measured on", text)  # measurements live in docs/studies


def test_the_gate_bias_is_set_from_the_command_line(compose_train):
    def biases(*overrides):
        cfg = compose_train(*overrides)
        net = instantiate(OmegaConf.to_container(cfg.model, resolve=True))
        return {m.gate_bias for m in net.modules() if isinstance(m, HighwayBlock)}

    assert biases("experiment=highway", "highway_gate_bias=-3") == {-3.0}
    assert biases("model=highway_19", "+highway_gate_bias=-1") == {-1.0}
    assert biases("model=highway_19") == {-2.0}  # the YAML's own default, as create_model builds it


def test_gate_monitor_refuses_blocks_built_with_another_bias():
    net = create_model("highway_19", width_mult=0.25)
    with pytest.raises(ValueError, match=r"highway_gate_bias=-1.0 but 17 highway blocks"):
        HighwayGateMonitor(gate_bias=-1.0).setup(None, SimpleNamespace(net=net), "fit")


def monitored_highway_net(gate_bias: float | None = None):
    """A small eval-mode highway_19 with a gate monitor set up on it: (net, monitor, first block)."""
    net = create_model("highway_19", width_mult=0.25).eval()
    blocks = [m for m in net.modules() if isinstance(m, HighwayBlock)]
    if gate_bias is not None:
        for block in blocks:
            torch.nn.init.constant_(block.gate.bias, gate_bias)
    monitor = HighwayGateMonitor()
    monitor.setup(None, SimpleNamespace(net=net), "validate")
    return net, monitor, blocks[0]


def logged_at_epoch_end(monitor) -> dict[str, float]:
    logged = {}
    monitor.on_validation_epoch_end(None, SimpleNamespace(log=lambda tag, value, **_: logged.update({tag: value})))
    return logged


def test_gate_monitor_keeps_a_compiled_net_in_one_graph():
    """The hook sums the blocks' gate means as tensors and reads them once per epoch: a float() in
    it would split a compiled net's graph at every highway block (and recompile each block per shape)."""
    net, monitor, _ = monitored_highway_net()
    monitor.on_validation_epoch_start(SimpleNamespace(sanity_checking=False), None)
    explanation = torch._dynamo.explain(net)(torch.randn(2, 3, 32, 32))
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert len(monitor._sums) == 17 and all(torch.is_tensor(s) for s in monitor._sums.values())


def test_gate_monitor_does_not_recompile_a_compiled_net_batch_after_batch():
    """Validation epochs of a compiled highway net compile it a bounded number of times (a count kept
    as a Python int was a guard: every batch recompiled, until dynamo's limit sent it back to eager)."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    net, monitor, block = monitored_highway_net()
    compiled = torch.compile(net, backend="eager")  # guards and recompiles as inductor's, without codegen
    frames_before = torch._dynamo.utils.counters["frames"]["ok"]
    for _ in range(3):
        monitor.on_validation_epoch_start(SimpleNamespace(sanity_checking=False), None)
        means = []
        with torch.no_grad():
            for _ in range(12):
                compiled(torch.randn(2, 3, 16, 16))
                means.append(float(block.gate_mean))
        logged = logged_at_epoch_end(monitor)
        assert logged[next(iter(logged))] == pytest.approx(sum(means) / 12, abs=1e-6)
    assert torch._dynamo.utils.counters["frames"]["ok"] - frames_before <= 3


def test_gate_monitor_means_under_bf16_are_the_batches_mean_in_fp32():
    """A validation of bf16 batches: each logged gate is the fp32 mean of the block's per-batch means
    (a bf16 running sum moved the logged means of a 15-epoch run by up to 0.003 a layer)."""
    torch.manual_seed(0)
    net, monitor, block = monitored_highway_net(gate_bias=-1.0)
    monitor.on_validation_epoch_start(SimpleNamespace(sanity_checking=False), None)
    means = []
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        for _ in range(100):
            net(torch.randn(2, 3, 16, 16))
            assert block.gate_mean.dtype == torch.float32
            means.append(float(block.gate_mean))
    logged = logged_at_epoch_end(monitor)
    assert len(logged) == 17
    first = next(iter(logged))  # the input side's first block
    assert logged[first] == pytest.approx(sum(means) / 100, abs=1e-6)
    assert 0.15 < logged[first] < 0.45  # sigmoid(-1) = 0.27, spread by the random gate weights


def test_gate_monitor_logs_one_scalar_per_highway_block_and_the_report_reads_them(tmp_path, capsys, compose_train, tiny):
    cfg = compose_train("experiment=highway", *tiny, "model.width_mult=0.25", "highway_gate_bias=-2",
                        "trainer.max_epochs=2", "trainer.limit_train_batches=1.0", "test=false",
                        "callbacks.run_report=null", tmp_path=tmp_path / "run")
    metrics = train(cfg)
    blocks = sum(isinstance(m, HighwayBlock) for m in create_model("highway_19").modules())
    scalars = read_scalars(tmp_path / "run")
    gates = [t for t in scalars if t.startswith("gates/")]
    assert len(gates) == blocks == 17 and {"gates/stage0.block0", "gates/stage1.block1"} <= set(gates)
    assert all(len(scalars[t]) == 2 and all(0 < value < 1 for _, value, _ in scalars[t]) for t in gates)
    assert set(gates) <= set(metrics)  # the last values reach metrics.json too
    assert main(["highway", str(tmp_path), "--out", str(tmp_path / "out")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert sum(line.startswith("| stage") for line in lines) == 17  # the per-layer table
    assert any(line.startswith("| highway_19 x0.25 b=-2 ") for line in lines)
    start = next(line for line in lines if line.startswith("Mean gate over layers, at the start"))
    assert start.startswith("Mean gate over layers, at the start (sigmoid(b)) -> at the end: highway_19 x0.25 b=-2 "
                            "0.119 -> 0.")
    assert (tmp_path / "out" / "highway.png").stat().st_size > 5000


