"""Every registered model and every model YAML: shapes, gradients, sizes, interface."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

import convzoo.configs
from convzoo.models.complexity import complexity, flop_counter_macs
from convzoo.models.registry import create_model, list_models, model_config

CONFIG_DIR = Path(convzoo.configs.__file__).parent  # the config_dir fixture's folder, read at import by MODEL_YAMLS
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
    "fastnet_cpu": (1_089_442, 44_274_208),
    "fastnet_wide": (1_972_514, 118_147_360),
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
        cfg = model_config(path.stem)  # composed: the source may come from the family's base
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


# --- variants by composition: family bases in configs/model/family/, composed by Hydra ---

FAMILY_BASES = sorted((CONFIG_DIR / "model" / "family").glob("*.yaml"))


def test_family_bases_are_not_models():
    assert FAMILY_BASES, "configs/model/family/ should hold the family bases"
    for base in FAMILY_BASES:
        assert base.stem not in MODELS and f"family/{base.stem}" not in MODELS
        with pytest.raises(ValueError, match="unknown model"):
            model_config(f"family/{base.stem}")
        # selected by hand it does not compose into a trainable spec: a variant fills in the name
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose(overrides=[f"+model=family/{base.stem}"])
        assert OmegaConf.is_missing(cfg.model, "name"), f"{base.name} should leave name as ???"


def test_a_depth_variant_is_a_few_lines():
    """resnet110 is resnet_cifar's base plus its name, size and stages: no copy of the family."""
    text = (CONFIG_DIR / "model" / "resnet110.yaml").read_text()
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    assert len(lines) <= 10, lines
    assert any("family/resnet_cifar" in ln for ln in lines)


@pytest.mark.parametrize("name", MODELS)
def test_model_config_is_what_train_composes(name):
    """create_model's spec is the node `python train.py model=<name>` gives as cfg.model."""
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[f"model={name}"], return_hydra_config=True)
    assert OmegaConf.to_container(cfg.model) == OmegaConf.to_container(model_config(name))


def test_model_config_overrides_and_unknown_names():
    cfg = model_config("resnet56", num_classes=100, head={"dropout": 0.1})
    assert cfg.num_classes == 100 and cfg.head.dropout == 0.1 and cfg.name == "resnet56"
    cfg.stages[0].num_blocks = 1  # a fresh copy: the next call is unchanged
    assert model_config("resnet56").stages[0].num_blocks == 9 and model_config("resnet56").num_classes == 10
    with pytest.raises(ValueError, match=r"unknown model 'resnet57'; known models: .*resnet56"):
        model_config("resnet57")


def _hydra_state():
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.singleton import Singleton

    gh = Singleton._instances.get(GlobalHydra)
    return gh, (gh.hydra if gh is not None else None)


@pytest.mark.parametrize("user_init", ["initialize_config_dir", "initialize", "none"])
def test_create_model_inside_a_users_hydra_app(user_init, tmp_path, monkeypatch):
    """From inside someone else's Hydra (their own config dir, their `model` group), create_model
    still composes our packaged configs, and leaves their Hydra exactly as it was."""
    from hydra import initialize
    from hydra.core.global_hydra import GlobalHydra

    from convzoo.models import registry

    registry._composed.cache_clear()  # compose for real, inside their Hydra
    (tmp_path / "model").mkdir()
    (tmp_path / "app.yaml").write_text("defaults:\n  - model: mine\n  - _self_\nlr: 0.1\n")
    (tmp_path / "model" / "mine.yaml").write_text("width: 7\n")
    (tmp_path / "model" / "resnet20.yaml").write_text("width: 3\n")  # their resnet20 is not ours
    if user_init == "none":
        GlobalHydra.instance().clear()
        net = create_model("resnet20", num_classes=5)
        assert not GlobalHydra.instance().is_initialized()
    else:
        monkeypatch.chdir(tmp_path)
        ctx = (initialize_config_dir(config_dir=str(tmp_path), version_base="1.3")
               if user_init == "initialize_config_dir" else initialize(config_path=None, version_base="1.3"))
        with ctx:
            before = _hydra_state()
            net = create_model("resnet20", num_classes=5)
            assert _hydra_state() == before and GlobalHydra.instance().is_initialized()
            if user_init == "initialize_config_dir":  # their configs still compose, as before
                cfg = compose("app", overrides=["model=resnet20"])
                assert cfg.model.width == 3 and cfg.lr == 0.1
    assert n_params(net) == n_params(create_model("resnet20", num_classes=5))
    assert net.fc.out_features == 5 and n_params(create_model("resnet20")) == PINNED["resnet20"][0]


def test_importing_models_does_not_import_lightning():
    import subprocess
    import sys

    code = ("import sys, convzoo.models; convzoo.models.create_model('resnet20'); "
            "bad = [m for m in ('lightning', 'pytorch_lightning') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
