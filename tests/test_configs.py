"""Every config file of every group composes and instantiates (Hydra initialize/compose)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf, open_dict

import convzoo.configs

CONFIG_DIR = Path(convzoo.configs.__file__).parent  # the config_dir fixture's folder, read at import by OPTIONS
# Groups whose options are plain objects to instantiate; model/ has its own tests (test_models.py).
GROUPS = ["data", "optimizer", "scheduler", "trainer", "logger", "callbacks", "paths", "experiment"]
OPTIONS = [(g, p.stem) for g in GROUPS for p in sorted((CONFIG_DIR / g).glob("*.yaml"))]


def test_every_group_has_options():
    assert {g for g, _ in OPTIONS} == set(GROUPS)


@pytest.mark.parametrize("group, option", OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_option_composes_and_instantiates(group, option, tmp_path, compose_train):
    overrides = [f"{group}={option}"]
    if group == "data" and option == "folder":
        overrides.append(f"data.root={tmp_path}")
    cfg = compose_train(*overrides, tmp_path=tmp_path)
    OmegaConf.resolve(cfg)
    node = cfg[group] if group != "experiment" else cfg
    if group in ("optimizer", "scheduler"):
        assert callable(instantiate(node))  # partials, completed by the module
    elif group in ("logger", "callbacks"):
        for name, entry in (node or {}).items():
            kwargs = {"hparams": {}, "complexity_table": ""} if name == "run_report" else {}
            assert instantiate(entry, **kwargs) is not None
    elif group == "trainer":
        with open_dict(node):
            node.precision = "32-true"
            if node.accelerator == "gpu" and not torch.cuda.is_available():
                node.accelerator = "cpu"  # composes here; runs where there is a GPU
        assert instantiate(node, logger=False, enable_progress_bar=False).max_epochs == node.max_epochs
    elif group == "data":
        dm = instantiate(node)
        assert dm.batch_size == node.batch_size
    elif group == "paths":
        assert node.data_dir and node.log_dir
    else:  # experiment: composes on top of the defaults, which stay complete
        assert cfg.model.name and cfg.trainer.max_epochs is not None


def test_data_dir_follows_the_environment(monkeypatch, tmp_path, compose_train):
    monkeypatch.setenv("CONVZOO_DATA_DIR", str(tmp_path))
    cfg = compose_train()
    assert cfg.paths.data_dir == str(tmp_path) and cfg.data.root == str(tmp_path)


@pytest.mark.parametrize("experiment", sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml")))
def test_experiment_sweeps_name_known_models(experiment):
    from convzoo.models import list_models

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={experiment}"], return_hydra_config=True)
    params = (cfg.hydra.sweeper.get("params") or {})
    # Only the model key names models; other swept keys (experiment=checkerboard sweeps
    # model.decoder) are checked by their experiment's own tests.
    names = str(params["model"]).split(",") if "model" in params else []
    assert set(names) <= set(list_models()), f"{experiment}: unknown models {set(names) - set(list_models())}"


@pytest.mark.parametrize("overrides", [
    ["hparams_search=optuna"],
    ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
    ["hydra/launcher=submitit_slurm", "hydra.launcher.partition=gpu", "trainer=ddp"],
    ["hydra/launcher=submitit_local"],
], ids=["optuna", "joblib", "submitit_slurm", "submitit_local"])
def test_sweep_plugins_compose(overrides):
    """The launcher and sweeper plugins (the `sweep` extra) compose with our configs."""
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    if overrides[0].startswith("hparams_search"):
        assert "OptunaSweeper" in cfg.hydra.sweeper._target_ and cfg.optimized_metric == "val/acc_best"
        assert set(cfg.hydra.sweeper.params) >= {"optimizer.lr", "data.batch_size"}
    else:
        launcher = overrides[0].split("=")[1]
        assert launcher.split("_")[0] in cfg.hydra.launcher._target_.lower()


TUNINGS = sorted(p.stem for p in (CONFIG_DIR / "tuning").glob("*.yaml"))


@pytest.mark.parametrize("tuning", TUNINGS)
def test_each_tuning_file_applies_to_its_experiment_and_model_only(tuning, tmp_path, compose_train):
    """configs/tuning/<experiment>_<model>.yaml is added when, and only when, both are chosen."""
    from convzoo.models.registry import list_models

    experiments = {p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml")}
    pairs = [(e, tuning[len(e) + 1:]) for e in experiments if tuning.startswith(f"{e}_")]
    pairs = [(e, m) for e, m in pairs if m in list_models()]
    assert len(pairs) == 1, f"tuning/{tuning}.yaml names no <experiment>_<model> pair"
    (experiment, model), = pairs
    tuned = tuning_values(tuning)
    assert tuned, f"tuning/{tuning}.yaml sets nothing"
    cfg = compose_train(f"experiment={experiment}", f"model={model}", tmp_path=tmp_path)
    plain = compose_train(f"model={model}", tmp_path=tmp_path)
    other = next(m for m in list_models() if f"{experiment}_{m}" not in TUNINGS)
    untuned = compose_train(f"experiment={experiment}", f"model={other}", tmp_path=tmp_path)
    for key, value in tuned.items():
        assert OmegaConf.select(cfg, key) == value, key
    assert any(OmegaConf.select(untuned, k) != v for k, v in tuned.items()), "the tuning repeats the recipe"
    assert any(OmegaConf.select(plain, k) != v for k, v in tuned.items()), "applied without its experiment"


def tuning_values(name: str) -> dict:
    """A tuning file's settings as dotted keys, those of the tunings it builds on included."""
    node = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "tuning" / f"{name}.yaml"))
    values = {}
    for base in node.pop("defaults", []):
        if base != "_self_":
            values.update(tuning_values(base))

    def walk(n, prefix=""):
        for key, value in n.items():
            if isinstance(value, dict):  # leaves: a tuned node may keep keys of the group option it tunes
                walk(value, f"{prefix}{key}.")
            else:
                values[f"{prefix}{key}"] = value

    walk(node)
    return values
