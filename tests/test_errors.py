"""Every bad input fails early with one message naming the bad value and what is valid
(docs/errors.md lists them), and a failing run leaves earlier runs untouched."""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.errors import ConfigCompositionException
from omegaconf import open_dict
from PIL import Image

from evaluate import evaluate
from convzoo.models import create_model
from train import train
from convzoo.training.config_checks import check_data_fits, check_resume_checkpoint, validate_config


def _run_dir(tmp_path: Path) -> Path:
    return tmp_path / "run"


@pytest.fixture
def fails(compose_train, tmp_path):
    """``fails(overrides, exc, match)``: train() raises ``exc`` and writes nothing into its run folder."""
    def check(overrides, exc, match):
        out = _run_dir(tmp_path)
        with pytest.raises(exc, match=match):
            train(compose_train(*overrides, tmp_path=out))
        assert not out.exists() or not any(out.iterdir()), "a run that fails its checks must write nothing"
    return check


# ---- names: Hydra's composition error lists the options ---------------------------------------

@pytest.mark.parametrize("group", ["model", "data", "optimizer", "scheduler", "experiment"])
def test_unknown_name_lists_the_available_options(group, compose_train, config_dir):
    with pytest.raises(ConfigCompositionException, match=f"Could not find '{group}/nope'") as info:
        compose_train(f"{group}=nope")
    options = sorted(p.stem for p in (config_dir / group).glob("*.yaml"))
    assert f"Available options in '{group}'" in str(info.value)
    assert all(f"\t{o}\n" in str(info.value) for o in options), options


# ---- model specs: fail before the data is read, naming stage and block -------------------------

@pytest.mark.parametrize("override, match", [
    ("model.stages.0.block=nope", r"model resnet20: stage 0, block 0 \(nope\): unknown block 'nope'; known blocks: .*basic"),
    ("+model.stages.1.in_channels=64", r"stage 1, block 0 \(basic\): BasicBlock got in_channels=64 but the previous block gives 16"),
    ("+model.stages.0.bogus=1", r"stage 0, block 0 \(basic\): .*unexpected keyword argument 'bogus'"),
    ("model.stages.2.num_blocks=0", r"num_blocks should be an integer >= 1, got 0"),
])
def test_bad_model_spec_fails_before_the_data_is_read(override, match, monkeypatch, fails, tiny):
    import convzoo.data.synthetic

    monkeypatch.setattr(convzoo.data.synthetic.SyntheticDataModule, "setup",
                        lambda *a, **k: pytest.fail("the data was read before the spec was checked"))
    fails([*tiny, override], ValueError, match)


@pytest.mark.parametrize("override, exc, match", [
    ("model.pretrained=imagenet", FileNotFoundError,
     r"pretrained='imagenet' is not a tag of resnet20's weights \(cifar10\.akamaster\), nor a file or folder that "
     r"exists, nor hf-hub:owner/name"),
    ("model=mobilenet_v1 model.pretrained=true", ValueError,
     r"no pretrained weights are registered for mobilenet_v1; models with some: resnet110, resnet1202, resnet20"),
])
def test_unknown_pretrained_weights_fail_before_the_data_is_read(override, exc, match, monkeypatch, fails, tiny):
    import convzoo.data.synthetic

    monkeypatch.setattr(convzoo.data.synthetic.SyntheticDataModule, "setup",
                        lambda *a, **k: pytest.fail("the data was read before the weights were named"))
    fails([*tiny, *override.split()], exc, match)


# ---- out of range values ------------------------------------------------------------------------

@pytest.mark.parametrize("override, match", [
    ("optimizer.lr=-0.1", r"optimizer\.lr should be > 0, got -0\.1$"),
    ("optimizer.lr=0", r"optimizer\.lr should be > 0, got 0$"),
    ("optimizer.lr=fast", r"optimizer\.lr should be > 0, got 'fast'"),
    ("optimizer.weight_decay=-0.001", r"optimizer\.weight_decay should be >= 0, got -0\.001"),
    ("data.batch_size=0", r"data\.batch_size should be an integer >= 1, got 0"),
    ("data.eval_batch_size=2.5", r"data\.eval_batch_size should be an integer >= 1, got 2\.5"),
    ("trainer.max_epochs=-2", r"trainer\.max_epochs should be >= 0 \(or -1 for no limit\), got -2"),
    ("+trainer.max_steps=0", r"trainer\.max_steps should be >= 1 \(or -1 for no limit\), got 0"),
    ("trainer.max_epochs=-1", r"scheduler cosine needs the run's length, but trainer\.max_epochs=-1 with no "
                              r"trainer\.max_steps is an unbounded run"),
    ("model.head.dropout=1.0", r"model\.head\.dropout should be in \[0, 1\), got 1\.0"),
    ("model.head.dropout=-0.1", r"model\.head\.dropout should be in \[0, 1\), got -0\.1"),
    ("model.width_mult=0", r"model\.width_mult should be > 0, got 0"),
    ("module.label_smoothing=1", r"module\.label_smoothing should be in \[0, 1\), got 1"),
    ("module.label_smoothing=-0.1", r"module\.label_smoothing should be in \[0, 1\), got -0\.1"),
    ("module.channels_last=yes", r"module\.channels_last should be true, false or auto, got 'yes'"),
    ("module.compile=2", r"module\.compile should be true, false or auto, got 2"),
    ("calibration.min_steps=-1", r"calibration\.min_steps should be >= 0, got -1"),
    ("calibration.compile_min_minutes=-5", r"calibration\.compile_min_minutes should be >= 0, got -5"),
    ("calibration.min_seconds=-1", r"calibration\.min_seconds should be >= 0, got -1"),
    ("budget=-10min", r"budget='-10min' should be more than zero; give a time \(budget=10min"),
    ("budget=soon", r"budget='soon' is not a budget; give a time \(budget=10min, budget=90s, budget=1\.5h\) or "
                    r"training FLOPs \(budget=2e15flop, budget=2PFLOP\)"),
    ("budget=600", r"budget='600' is not a budget; .*600 has no unit: write budget=600s or budget=600flop"),
    ("budget=10parsecs", r"budget='10parsecs' has an unknown unit 'parsecs'"),
    ("budget=1e6flop", r"budget=1e6flop is smaller than one optimizer step of resnet20 \(6 x 40\.6M MACs x 32 "
                       r"images = 7\.79e\+09 FLOPs\); give at least budget=7\.79e\+09flop"),
    ("data.flip=sideways", r"flip should be true, false or alternate, got 'sideways'"),
    ("callbacks.progressive.size=0", r"callbacks\.progressive: size should be a positive number of pixels "
                                     r"\(or null: off\), got 0"),
    ("callbacks.progressive.until_fraction=1.5", r"callbacks\.progressive: until_fraction should be in \[0, 1\], got 1\.5"),
])
def test_out_of_range_value_fails_before_anything_is_written(override, match, fails, tiny):
    fails([*tiny, override], ValueError, match)


def test_unknown_data_argument_is_named(fails, tiny):
    fails([*tiny, "+data.bogus=1"], ValueError, r"data: .*unexpected keyword argument 'bogus'")


def test_unbounded_epochs_with_max_steps_is_bounded(compose_train, tiny):
    validate_config(compose_train(*tiny, "trainer.max_epochs=-1", "+trainer.max_steps=5"))
    validate_config(compose_train(*tiny, "trainer.max_epochs=0"))  # 0: a valid no-op fit


def test_val_split_as_large_as_the_data_fails_before_reading_it(fails, tiny):
    fails([*tiny, "data.val_size=192"], ValueError,
          r"data: val_size=192 should be smaller than the 192 images of the training split")


# ---- data on disk (data=folder) ------------------------------------------------------------------

def _tree(root: Path, classes=("ant", "bee"), per_class: int = 4, size=(8, 8)) -> Path:
    rng = np.random.default_rng(0)
    for name in classes:
        (root / "train" / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(root / "train" / name / f"{i}.png")
    return root


def _folder(root: Path) -> list[str]:
    return ["data=folder", f"data.root={root}", "data.val_size=2", "data.batch_size=2", "trainer.accelerator=cpu",
            "trainer.precision=32-true", "callbacks.progress_bar=null", "scheduler.warmup_epochs=0"]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVZOO_CACHE_DIR", str(tmp_path / "cache"))


def test_folder_root_missing(tmp_path, cache, compose_train):
    with pytest.raises(FileNotFoundError, match=r"data set root .*nowhere does not exist; expected layout root/train/<class>"):
        train(compose_train(*_folder(tmp_path / "nowhere"), tmp_path=_run_dir(tmp_path)))


def test_folder_class_without_images(tmp_path, cache, compose_train):
    root = _tree(tmp_path / "ds")
    (root / "train" / "cat").mkdir()
    with pytest.raises(ValueError, match=r"class folder .*train.cat has no images"):
        train(compose_train(*_folder(root), tmp_path=_run_dir(tmp_path)))


def test_folder_corrupt_image(tmp_path, cache, compose_train):
    root = _tree(tmp_path / "ds")
    (root / "train" / "bee" / "bad.png").write_bytes(b"not a png at all")
    with pytest.raises(ValueError, match=r"(?s)1 of 9 images under .*train could not be decoded .*bad\.png"):
        train(compose_train(*_folder(root), tmp_path=_run_dir(tmp_path)))


def test_folder_mixed_image_sizes(tmp_path, cache, compose_train):
    root = _tree(tmp_path / "ds")
    Image.fromarray(np.zeros((10, 12, 3), np.uint8)).save(root / "train" / "bee" / "9.png")
    with pytest.raises(ValueError, match=r"images have different sizes: .* is 8x8 but .*9\.png is 10x12.*data\.image_size"):
        train(compose_train(*_folder(root), tmp_path=_run_dir(tmp_path)))


def test_folder_val_split_as_large_as_the_data(tmp_path, cache, compose_train):
    root = _tree(tmp_path / "ds")
    with pytest.raises(ValueError, match=r"val_size=8 should be smaller than the 8 images"):
        train(compose_train(*_folder(root), "data.val_size=8", tmp_path=_run_dir(tmp_path)))


# ---- model classes and channels against the data -------------------------------------------------

class _Data:  # what check_data_fits reads from a datamodule
    name, num_classes, in_chans = "mydata", 5, 3


def test_num_classes_given_on_the_command_line_must_match_the_data(compose_train, tiny):
    cfg = compose_train(*tiny, "model.num_classes=7")
    with pytest.raises(ValueError, match=r"model\.num_classes=7 was set on the command line but data mydata has 5 "
                                         r"classes; train sets model\.num_classes from the data"):
        check_data_fits(cfg, _Data(), overrides=["model.num_classes=7"])
    with pytest.raises(ValueError, match=r"model\.in_chans=1 was set on the command line but data mydata has 3 image channels"):
        check_data_fits(compose_train(*tiny, "model.in_chans=1"), _Data(), overrides=["+model.in_chans=1"])
    check_data_fits(cfg, _Data(), overrides=[])  # from the YAML only: a default, replaced by the data's 5
    check_data_fits(compose_train(*tiny, "model.num_classes=5"), _Data(), overrides=["model.num_classes=5"])


@pytest.fixture
def with_hydra(compose_train, config_dir):
    """``with_hydra(overrides, tmp_path)``: the config train() gets under ``python train.py
    <overrides>``, with Hydra's runtime config set."""
    def make(overrides: list[str], tmp_path: Path):
        with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
            full = compose("train", overrides=overrides, return_hydra_config=True)
        HydraConfig.instance().set_config(full)
        cfg = compose_train(*overrides, tmp_path=tmp_path)
        return cfg
    return make


def test_num_classes_mismatch_through_train_reads_hydra_overrides(tmp_path, with_hydra, tiny):
    try:
        cfg = with_hydra([*tiny, "data.num_classes=4", "model.num_classes=10"], _run_dir(tmp_path))
        with pytest.raises(ValueError, match=r"model\.num_classes=10 was set on the command line but data synthetic has 4"):
            train(cfg)
    finally:
        HydraConfig.instance().cfg = None
    assert not (_run_dir(tmp_path) / "config.yaml").exists()


# ---- checkpoints --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def run(tmp_path_factory, compose_train, tiny) -> Path:
    out = tmp_path_factory.mktemp("errors_run")
    train(compose_train(*tiny, "trainer.max_epochs=1", "test=false", "+trainer.limit_train_batches=2",
                        "+trainer.limit_val_batches=1", tmp_path=out))
    return out


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def resume(compose_train, tiny, tmp_path):
    """``resume(run, *overrides)``: a config that resumes ``run`` from a new folder under tmp_path."""
    def make(run: Path, *overrides: str):
        cfg = compose_train(*tiny, "trainer.max_epochs=2", "test=false", *overrides, tmp_path=tmp_path / "new")
        with open_dict(cfg):
            cfg.paths.log_dir = str(run)
        return cfg
    return make


def test_missing_checkpoint(tmp_path, run, resume):
    with pytest.raises(FileNotFoundError, match=r"ckpt_path=.*nope\.ckpt does not exist; give a checkpoint file or 'last'"):
        train(resume(run, f"ckpt_path={tmp_path / 'nope.ckpt'}"))


def test_truncated_checkpoint_fails_before_training(tmp_path, run, resume):
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    ckpt = copy / "checkpoints" / "last.ckpt"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    before = _digest(copy)
    with pytest.raises(ValueError, match=r"last\.ckpt is not a valid checkpoint \(truncated, corrupt"):
        train(resume(copy, f"ckpt_path={ckpt}"))
    assert _digest(copy) == before


@pytest.mark.parametrize("overrides, match", [
    (["model=plain20"], r"it is a checkpoint of model 'resnet20' but this run's model is 'plain20'; give model=resnet20"),
    (["model.width_mult=0.5"], r"model resnet20 differs from the checkpoint's in width_mult \(1\.0 in the checkpoint, 0\.5 now\)"),
    (["data.num_classes=4"], r"cannot resume: the checkpoint is resnet20 for 10 classes but data synthetic has 4"),
    (["optimizer.lr=-0.1"], r"optimizer\.lr should be > 0, got -0\.1"),
])
def test_failing_resume_leaves_the_run_folder_untouched(tmp_path, run, overrides, match, resume):
    run = shutil.copytree(run, tmp_path / "copy")  # a copy: a regression cannot spoil the shared run
    before = _digest(run)
    ckpt = run / "checkpoints" / "last.ckpt"
    for ckpt_path in ("last", str(ckpt)):
        if ckpt_path == "last" and overrides[0].startswith("model="):
            continue  # 'last' looks for a run of the new model, and finds none
        with pytest.raises(ValueError, match=match):
            train(resume(run, f"ckpt_path={ckpt_path}", *overrides))
    assert _digest(run) == before
    assert not (tmp_path / "new").exists()


def test_resume_check_accepts_its_own_run(run, compose_train, tiny):
    hparams = check_resume_checkpoint(compose_train(*tiny), run / "checkpoints" / "last.ckpt")
    assert hparams["model_cfg"]["name"] == "resnet20" and hparams["num_classes"] == 10


def test_evaluate_on_data_with_another_class_count(tmp_path, run, config_dir):
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        cfg = compose("evaluate", overrides=[f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}", "device=cpu",
                                             "data_from_run=false", "data=synthetic", "data.num_classes=4",
                                             f"output_dir={tmp_path}"])
    with pytest.raises(ValueError, match="checkpoint is resnet20 for 10 classes but data synthetic has 4"):
        evaluate(cfg)
    assert not list(tmp_path.iterdir())


# ---- model input ----------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(3, 32, 32), (2, 1, 32, 32), (2, 3, 32)])
def test_wrong_input_rank_or_channels(shape):
    net = create_model("resnet20")
    with pytest.raises(ValueError, match=rf"resnet20 expects input of shape \(N, 3, H, W\), got {re_shape(shape)}"):
        net(torch.zeros(shape))


def re_shape(shape) -> str:
    return str(tuple(shape)).replace("(", r"\(").replace(")", r"\)")
