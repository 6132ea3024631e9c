"""The generic Net: spec errors, width multiplier, registry lookups, installed-package use."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from convzoo.models.net import Net, expand_stage, make_divisible
from convzoo.models.registry import create_model, get_block, list_blocks, list_models

ROOT = Path(__file__).resolve().parents[1]
STEM = [{"block": "conv", "out_channels": 16}]


def test_make_divisible_rounds_to_multiple_never_more_than_10_percent_down():
    assert make_divisible(32 * 0.5) == 16
    assert make_divisible(24 * 0.75) == 24  # 18 -> nearest multiple of 8 is 16, < 0.9*18, so 24
    assert make_divisible(1280 * 1.4) == 1792
    assert make_divisible(3, 8) == 8  # never below the divisor
    for v in range(1, 500):
        r = make_divisible(v)
        assert r % 8 == 0 and r >= 0.9 * v


def test_expand_stage_puts_stride_on_first_block_only():
    blocks = expand_stage({"block": "basic", "out_channels": 8, "num_blocks": 3, "stride": 2})
    assert [b["stride"] for b in blocks] == [2, 1, 1]
    with pytest.raises(ValueError, match="num_blocks should be an integer >= 1, got 0"):
        expand_stage({"block": "basic", "num_blocks": 0})


def test_unknown_block_names_stage_and_lists_known_blocks():
    with pytest.raises(ValueError, match=r"stage 1, block 0 \(nope\): unknown block 'nope'; known blocks: .*basic"):
        Net(stem=STEM, stages=[{"block": "conv", "out_channels": 16}, {"block": "nope", "out_channels": 8}])


def test_channel_mismatch_names_stage_block_and_both_counts():
    stages = [{"block": "conv", "out_channels": 128},
              {"blocks": [{"block": "conv", "in_channels": 64, "out_channels": 32}]}]
    with pytest.raises(ValueError, match=r"stage 1, block 0 \(conv\): ConvNormAct got in_channels=64 "
                                         r"but the previous block gives 128"):
        Net(stem=STEM, stages=stages)


def test_invalid_block_argument_names_stage_and_block():
    with pytest.raises(ValueError, match=r"stage 0, block 0 \(conv\): .*groups"):
        Net(stem=STEM, stages=[{"block": "conv", "out_channels": 30, "groups": 4}])
    with pytest.raises(ValueError, match=r"stage 0, block 0 \(conv\): .*unexpected keyword argument 'colour'"):
        Net(stem=STEM, stages=[{"block": "conv", "out_channels": 30, "colour": "red"}])


@pytest.mark.parametrize("kwargs, message", [
    ({"num_classes": -1}, r"num_classes should be an integer >= 0 \(0: no classifier\), got -1"),
    ({"in_chans": 0}, "in_chans should be an integer >= 1, got 0"),
    ({"width_mult": 0}, "width_mult should be > 0, got 0"),
    ({"head": {"dropout": 1.0}}, r"head dropout should be in \[0, 1\), got 1.0"),
    ({"head": {"pooling": "max"}}, r"unknown head keys \['pooling'\]; the head takes: dropout, pool, logit_scale"),
    ({"stages": []}, "at least one stage"),
])
def test_bad_net_arguments(kwargs, message):
    args = {"stem": STEM, "stages": [{"block": "conv", "out_channels": 8}], **kwargs}
    with pytest.raises(ValueError, match=message):
        Net(**args)


def test_width_multiplier_scales_channels_with_rounding():
    half = create_model("resnet20", width_mult=0.5)
    assert [info["num_chs"] for info in half.feature_info] == [8, 16, 32]
    wide = create_model("resnet20", width_mult=2.0)
    assert [info["num_chs"] for info in wide.feature_info] == [32, 64, 128]
    assert wide(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def test_width_multiplier_scales_every_channel_arg():
    net = Net(stem=STEM, stages=[{"block": "spatial_sep", "out_channels": 32, "mid_channels": 16},
                                 {"block": "bottleneck", "out_channels": 64, "width": 32}], width_mult=0.5)
    sep, bottleneck = net.stages[0][0], net.stages[1][0]
    assert (sep.out_channels, sep.mid_channels) == (16, 8)
    assert (bottleneck.out_channels, bottleneck.conv1.out_channels) == (32, 16)


def test_unscaled_entries_keep_their_width():
    net = Net(stem=[{"block": "conv", "out_channels": 16, "scale": False}],
              stages=[{"block": "conv", "out_channels": 32}], width_mult=0.5)
    assert net.stem[0].out_channels == 16 and net.num_features == 16


def test_unknown_model_lists_known_models():
    with pytest.raises(ValueError, match=r"unknown model 'resnet21'; known models: .*resnet20"):
        create_model("resnet21")


def test_list_models_pattern_and_blocks():
    assert "resnet20" in list_models("resnet*")
    assert all(n.startswith("resnet") for n in list_models("resnet*"))
    assert get_block("conv").__name__ == "ConvNormAct"
    assert "conv" in list_blocks()


def test_num_classes_zero_gives_pooled_features():
    net = create_model("resnet20", num_classes=0)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, net.num_features)


def test_create_model_works_from_a_plain_install(tmp_path):
    """Non-editable install into a folder, then import from outside the repository."""
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(ROOT)], check=True, cwd=tmp_path)
    code = ("import convzoo, sys; assert convzoo.__file__.startswith(sys.argv[1]), convzoo.__file__; "
            "names = convzoo.list_models(); m = convzoo.create_model('resnet20', num_classes=100); "
            "print(len(names), m.fc.out_features)")
    out = subprocess.run([sys.executable, "-c", code, str(target)], check=True, cwd=tmp_path,
                         capture_output=True, text=True, env={"PYTHONPATH": str(target), "PATH": ""})
    n, classes = out.stdout.split()
    assert int(n) == len(list_models()) and classes == "100"


def test_num_blocks_inside_an_explicit_blocks_list_expands():
    net = Net(stem=STEM, stages=[{"blocks": [{"block": "conv", "out_channels": 8, "num_blocks": 3, "stride": 2},
                                             {"block": "pool", "mode": "max"}]}])
    assert [type(b).__name__ for b in net.stages[0]] == ["ConvNormAct"] * 3 + ["Pool2d"]
    assert [b.stride for b in net.stages[0]][:3] == [2, 1, 1]
