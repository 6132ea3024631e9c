"""Every registered model and every model YAML: shapes, gradients, sizes, interface."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from convzoo.models.complexity import complexity, flop_counter_macs
from convzoo.models.registry import create_model, list_models, model_config

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
MODEL_YAMLS = sorted((CONFIG_DIR / "model").glob("*.yaml"))
MODELS = list_models()

# Published sizes (millions of parameters, 10 classes) and how close we must be.
PAPER_SIZES = {
    "resnet20": (0.27, 0.02), "resnet32": (0.46, 0.02), "resnet44": (0.66, 0.02),
    "resnet56": (0.85, 0.02), "resnet110": (1.7, 0.02), "plain20": (0.27, 0.02),
    "plain56": (0.85, 0.02), "preact_resnet18": (11.2, 0.02), "resnext29_2x64d": (9.1, 0.02),
    "allconv": (1.37, 0.02), "dilated_resnet20": (0.27, 0.02),
    # Our FitNet-style layouts (the paper's widths are in a supplement): see the YAML comments.
    "highway_19": (2.3, 0.02), "highway_32": (1.25, 0.03),
}


# Every architecture's parameter count and MACs (10 classes, 3x32x32 input), pinned: a refactor of
# the YAML (family bases, interpolation) or of a block must build exactly the same networks.
# A new model: add its line, with the numbers `python -m convzoo.models` prints.
PINNED = {
    "allconv": (1_370_986, 281_053_056),
    "allconv_pool": (955_690, 238_585_728),
    "dilated_resnet20": (269_722, 79_479_424),
    "eff_grouped": (76_842, 12_682_496),
    "eff_grouped_shuffle": (76_842, 12_682_496),
    "eff_separable": (39_754, 7_050_496),
    "eff_shuffle": (25_130, 5_326_080),
    "eff_standard": (298_026, 48_071_936),
    "fastnet": (569_378, 54_223_904),
    "googlenet": (5_871_914, 1_447_241_728),
    "highway_19": (2_280_450, 372_499_792),
    "highway_32": (1_217_226, 174_346_960),
    "hybrid_example": (459_498, 96_047_104),
    "mobilenet_v1": (3_217_226, 46_354_432),
    "mobilenet_v2_x0_5": (700_490, 27_969_024),
    "mobilenet_v2_x0_75": (1_368_234, 59_310_080),
    "mobilenet_v2_x1_0": (2_236_682, 87_976_448),
    "mobilenet_v2_x1_4": (4_333_706, 170_073_344),
    "plain20": (269_722, 40_551_040),
    "plain56": (853_018, 125_485_696),
    "preact_resnet18": (11_172_170, 555_422_720),
    "resnet110": (1_727_962, 252_887_680),
    "resnet20": (269_722, 40_551_040),
    "resnet32": (464_154, 68_862_592),
    "resnet44": (658_586, 97_174_144),
    "resnet56": (853_018, 125_485_696),
    "resnext29_2x64d": (9_130_314, 1_411_065_856),
    "shufflenet_v1_g1": (960_706, 44_546_688),
    "shufflenet_v1_g2": (940_858, 43_743_552),
    "shufflenet_v1_g3": (914_338, 42_590_592),
    "shufflenet_v1_g4": (890_234, 41_531_008),
    "shufflenet_v1_g8": (913_138, 42_703_872),
    "shufflenet_v2_x0_5": (352_042, 10_902_016),
    "shufflenet_v2_x1_0": (1_263_854, 45_002_112),
    "shufflenet_v2_x1_5": (2_488_874, 94_259_712),
    "shufflenet_v2_x2_0": (5_365_486, 187_811_200),
}

def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_every_yaml_is_a_registered_model():
    assert [p.stem for p in MODEL_YAMLS] == MODELS
    assert len(MODELS) > 0


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("num_classes", [10, 100])
def test_forward_shape_and_finite(name, num_classes):
    torch.manual_seed(0)
    model = create_model(name, num_classes=num_classes).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, num_classes)
    assert torch.isfinite(out).all()
    assert model.num_classes == num_classes and model.in_chans == 3


@pytest.mark.parametrize("name", MODELS)
def test_every_parameter_gets_a_gradient(name):
    torch.manual_seed(0)
    model = create_model(name).train()
    model(torch.randn(2, 3, 32, 32)).logsumexp(1).sum().backward()
    # frozen parameters (fastnet's fixed BatchNorm scales) must stay without one
    missing = [n for n, p in model.named_parameters()
               if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)]
    frozen_with_grad = [n for n, p in model.named_parameters() if not p.requires_grad and p.grad is not None]
    assert missing == [] and frozen_with_grad == []


@pytest.mark.parametrize("name", MODELS)
def test_complexity_params_match_and_macs_agree_with_flop_counter(name):
    model = create_model(name)
    report = complexity(model, (3, 32, 32))
    assert report.total_params == n_params(model)
    reference = flop_counter_macs(model, (3, 32, 32))
    assert report.total_macs == pytest.approx(reference, rel=0.01)


@pytest.mark.parametrize("yaml_path", MODEL_YAMLS, ids=lambda p: p.stem)
def test_hydra_instantiate_equals_create_model(yaml_path):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(overrides=[f"+model={yaml_path.stem}"])
    torch.manual_seed(0)
    via_hydra = instantiate(cfg.model)
    torch.manual_seed(0)
    via_python = create_model(yaml_path.stem)
    assert str(via_hydra) == str(via_python)
    for (k1, v1), (k2, v2) in zip(via_hydra.state_dict().items(), via_python.state_dict().items()):
        assert k1 == k2 and torch.equal(v1, v2)


@pytest.mark.parametrize("name", MODELS)
def test_features_follow_stage_strides(name):
    model = create_model(name).eval()
    with torch.no_grad():
        feats = model.features(torch.randn(1, 3, 32, 32))
    assert len(feats) == len(model.feature_info) == len(model.stages)
    for f, info in zip(feats, model.feature_info):
        assert f.shape[1] == info["num_chs"]
        # within one pixel: an unpadded layer (fastnet's 2x2 whitening, 32 -> 31) floors the sizes
        assert 0 <= 32 / info["reduction"] - f.shape[-1] <= 1, (f.shape, info)


@pytest.mark.parametrize("name", MODELS)
def test_interface_head_and_other_input_sizes(name):
    model = create_model(name, num_classes=10).eval()
    x = torch.randn(1, 3, 40, 48)  # global pooling: any size the strides allow
    with torch.no_grad():
        feats = model.forward_features(x)
        assert feats.shape[1] == model.num_features
        pre = model.forward_head(feats, pre_logits=True)
        assert pre.shape == (1, model.num_features)
        model.reset_classifier(7)
        assert model(x).shape == (1, 7)
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        model(torch.randn(1, 4, 32, 32))
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        model(torch.randn(3, 32, 32))


@pytest.mark.parametrize("name", sorted(PAPER_SIZES))
def test_paper_sizes(name):
    millions, tol = PAPER_SIZES[name]
    assert n_params(create_model(name)) / 1e6 == pytest.approx(millions, rel=tol)
    assert model_config(name).paper_params == pytest.approx(millions)


def test_yaml_configs_cite_a_source():
    for path in MODEL_YAMLS:
        cfg = OmegaConf.load(path)
        assert cfg.source, f"{path.name} should say where the architecture comes from"
        assert cfg.name == path.stem


@pytest.mark.parametrize("name", MODELS)
def test_width_multiplier_half_builds_smaller(name):
    half = create_model(name, width_mult=model_config(name).width_mult / 2).eval()
    assert n_params(half) < n_params(create_model(name))
    with torch.no_grad():
        assert half(torch.randn(1, 3, 32, 32)).shape == (1, 10)


@pytest.mark.parametrize("name", MODELS)
def test_parameter_count_and_macs_are_pinned(name):
    assert name in PINNED, (f"model {name} has no pinned size: add \"{name}\": (params, MACs) to PINNED in "
                            f"tests/test_models.py (the numbers `python -m convzoo.models` prints)")
    model = create_model(name)
    params, macs = PINNED[name]
    assert n_params(model) == params, f"{name}: {n_params(model):,} parameters, pinned {params:,}"
    assert complexity(model, (3, 32, 32)).total_macs == macs, f"{name}: MACs differ from the pinned {macs:,}"


def test_every_pinned_model_exists():
    assert sorted(set(PINNED) - set(MODELS)) == [], "PINNED names models that no longer exist"
