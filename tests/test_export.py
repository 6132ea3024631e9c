"""Weights out: every zoo model round-trips through an exported safetensors folder and through ONNX
(onnxruntime's logits against PyTorch's), and ``convzoo export`` turns a checkpoint, a run folder or
a model name into a folder that ``create_model(pretrained=...)`` and ``hf-hub:`` load."""
from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from convzoo.models import create_model, list_models, model_config
from convzoo.models.fuse import fuse_conv_bn
from convzoo.models.weights_io import read_folder, write_folder
from convzoo.training.export import export, main

X = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def settled(name: str, **overrides) -> torch.nn.Module:
    """The model in eval mode with batch norm statistics of real activations (one pass over random
    images), as after training: at initialisation the running statistics (0, 1) do not match the
    activations, and the logits of deep nets run to 1e6 where no tolerance means anything."""
    net = create_model(name, **overrides)
    for m in net.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.momentum = None  # a cumulative average: one batch sets the statistics
    with torch.no_grad():
        net.train()(torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1)))
    return net.eval()


def spec(name: str) -> dict:
    return OmegaConf.to_container(model_config(name), resolve=True)


@pytest.mark.parametrize("name", list_models())
def test_every_model_round_trips_through_an_exported_folder(name, tmp_path):
    net = settled(name)
    write_folder(tmp_path, net.state_dict(), spec(name), {"mean": [0.5] * 3, "std": [0.25] * 3}, "card")
    loaded = create_model(pretrained=str(tmp_path)).eval()
    assert loaded.name == name and loaded.pretrained_cfg["mean"] == [0.5] * 3
    state = loaded.state_dict()
    assert all(torch.equal(v, state[k]) for k, v in net.state_dict().items())
    with torch.no_grad():
        assert torch.equal(loaded(X), net(X))


@pytest.mark.parametrize("name", list_models())
def test_every_model_exports_to_onnx_with_pytorchs_logits(name, tmp_path):
    # every model, not one per module type: the exporter traces each network's whole graph, and how
    # blocks connect (concatenations, shuffles, shortcuts) differs from model to model
    from convzoo.models.onnx_export import check_onnx, export_onnx, onnx_session, run_onnx

    net = settled(name)
    path = export_onnx(net, tmp_path / "model.onnx")
    # fp32 rounding differs with the order of operations: folding batch norm alone moves the logits
    # of a deep random plain net (plain56) by 8e-4 in PyTorch itself; ONNX must do no worse than that
    with torch.no_grad():
        own = (fuse_conv_bn(net)(X) - net(X)).abs().max().item()
    check_onnx(path, net, X, atol=max(1e-4, 2 * own))
    session = onnx_session(path)
    assert run_onnx(session, X[:1]).shape == (1, 10) and run_onnx(session, X).shape == (2, 10)  # dynamic batch


def _fake_run(tmp_path: Path) -> tuple[Path, torch.nn.Module]:
    """A run folder as train.py leaves it: checkpoints/best.ckpt, metrics.json, config.yaml."""
    net = settled("resnet20", num_classes=4)
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    hparams = {"model_cfg": {**spec("resnet20"), "num_classes": 4},
               "data_info": {"mean": [0.5] * 3, "std": [0.25] * 3, "class_names": list("abcd")}}
    torch.save({"state_dict": {f"net.{k}": v for k, v in net.state_dict().items()}, "hyper_parameters": hparams},
               run / "checkpoints" / "best.ckpt")
    metrics = {"model": "resnet20", "optimizer": "SGD", "lr": 0.1, "batch_size": 32, "precision": "32-true",
               "seed": 0, "budget": "10min", "epochs_trained": 3.4, "fit_seconds": 541.0, "val/acc_best": 0.8442,
               "best_checkpoint": "/elsewhere/checkpoints/best.ckpt", "machine": "AMD EPYC, 2 threads"}
    (run / "metrics.json").write_text(json.dumps(metrics))
    (run / "config.yaml").write_text(OmegaConf.to_yaml({"data": {"_target_": "convzoo.data.FolderDataModule"},
                                                        "optimizer": {"lr": 0.1}, "experiment": "fast"}))
    return run, net


def test_export_a_run_writes_a_folder_that_loads_with_a_model_card(tmp_path, capsys):
    run, net = _fake_run(tmp_path)
    assert main([str(run), "--out", str(tmp_path / "out")]) == 0  # the run's best checkpoint
    assert f"folder: {tmp_path / 'out'}" in capsys.readouterr().out
    loaded = create_model(pretrained=str(tmp_path / "out")).eval()
    with torch.no_grad():
        assert torch.equal(loaded(X), net(X))
    config, _ = read_folder(tmp_path / "out")
    assert config["pretrained_cfg"]["class_names"] == list("abcd") and config["num_classes"] == 4
    assert OmegaConf.load(tmp_path / "out" / "config.yaml").stages[1].shortcut_pad == "both"
    card = (tmp_path / "out" / "README.md").read_text()
    for text in ("| accuracy | val 84.42% (best) |", "| budget | 10min: 3.4 epochs, 541 s of training |",
                 "| machine | AMD EPYC, 2 threads |", "convzoo.data.FolderDataModule, 4 classes", "experiment fast"):
        assert text in card


def test_hf_hub_loads_an_exported_folder(tmp_path, monkeypatch):
    run, net = _fake_run(tmp_path)
    export(str(run / "checkpoints" / "best.ckpt"), tmp_path / "snapshot")
    asked = {}

    def snapshot_download(repo, revision=None, allow_patterns=None):
        asked.update(repo=repo, revision=revision)
        return str(tmp_path / "snapshot")

    monkeypatch.setitem(sys.modules, "huggingface_hub", types.SimpleNamespace(snapshot_download=snapshot_download))
    with torch.no_grad():
        assert torch.equal(create_model("hf-hub:me/resnet20-cifar@v1").eval()(X), net(X))
    assert asked == {"repo": "me/resnet20-cifar", "revision": "v1"}
    with pytest.raises(ValueError, match=r"holds weights of resnet20, not plain20; build it from its own config"):
        create_model("plain20", pretrained="hf-hub:me/resnet20-cifar")


def test_export_onnx_from_a_run_and_the_timing_table(tmp_path, capsys):
    from convzoo.training.export_timing import fused_timing

    run, _ = _fake_run(tmp_path)
    assert main([str(run), "--format", "onnx", "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "out" / "model.onnx").is_file() and float(out.split("onnx max abs diff: ")[1].split()[0]) <= 1e-4
    tiny = create_model("resnet20", family={"blocks_per_stage": 1})
    table = fused_timing(tiny, batch=2, repeats=1, min_seconds=0)
    assert "| onnxruntime (exported graph) " in table and "speed-up bs1" in table


def test_export_errors(tmp_path, capsys):
    assert main(["nope", "--out", str(tmp_path)]) == 1
    assert "error: nope is not a checkpoint, a run folder, an exported folder or a model name" in capsys.readouterr().err
    assert main([str(tmp_path), "--out", str(tmp_path / "o")]) == 1
    assert "is neither a run folder (no metrics.json) nor an exported folder" in capsys.readouterr().err
