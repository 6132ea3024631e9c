"""evaluate.py: one real tiny training run (synthetic data, 2 steps), then its checkpoint is
evaluated, abused (unsafe pickles, foreign targets, truncation, wrong data) and ranked."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import train
from evaluate import evaluate
from convzoo.models import create_model
from convzoo.models.serialization import load_checkpoint
from convzoo.training.eval_data import resolve_data_config

CONFIGS = str(Path(__file__).resolve().parents[1] / "configs")
FAST_BENCH = ["benchmark.batch_size=8", "benchmark.repeats=1", "benchmark.warmup=1", "benchmark.latency_iters=1"]


def _compose(name: str, overrides: list[str]):
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        return compose(name, overrides=overrides)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A real run folder written by train.train: config.yaml, metrics.json, checkpoints/."""
    out = tmp_path_factory.mktemp("run")
    cfg = _compose("train", [
        "data=synthetic", "model=resnet20", "trainer.max_epochs=1", "+trainer.limit_train_batches=2",
        "+trainer.limit_val_batches=1", "trainer.accelerator=cpu", "trainer.precision=32-true",
        "trainer.enable_progress_bar=false", "callbacks.progress_bar=null", "scheduler=constant",
        f"paths.output_dir={out}", f"paths.log_dir={out}",
        # train.py reads the data's mean/std before setup(); synthetic data only knows them after
        "++data.mean=[0.5,0.5,0.5]", "++data.std=[0.25,0.25,0.25]",
    ])
    train.train(cfg)
    return out


def _best(run: Path) -> Path:
    return Path(json.loads((run / "metrics.json").read_text())["best_checkpoint"])


def _eval_cfg(tmp_path: Path, *overrides: str):
    return _compose("evaluate", ["device=cpu", f"paths.log_dir={tmp_path}", *FAST_BENCH, *overrides])


def test_report_matches_a_direct_computation(run, tmp_path):
    ckpt_path = _best(run)
    result = evaluate(_eval_cfg(tmp_path, f"ckpt_path={ckpt_path}"))

    # the same numbers by hand: the net from the zoo, the data from the run's own config
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    net = create_model("resnet20")
    net.load_state_dict({k[4:]: v for k, v in ckpt["state_dict"].items() if k.startswith("net.")})
    import hydra

    dm = hydra.utils.instantiate(OmegaConf.load(run / "config.yaml").data)
    dm.setup("test")
    net.eval()
    with torch.no_grad():  # the run validated with flip test-time augmentation, so evaluate does too
        pairs = [((net(x) + net(x.flip(3))).argmax(1), y) for x, y in dm.test_dataloader()]
    preds, targets = torch.cat([p for p, _ in pairs]), torch.cat([y for _, y in pairs])
    expected = (preds == targets).double().mean().item()

    assert result["split"] == "test" and result["model"] == "resnet20" and result["tta_flip"] is True
    assert result["num_samples"] == len(targets) == 128
    assert result["acc"] == pytest.approx(expected, abs=1e-9)
    recorded = json.loads((run / "metrics.json").read_text())
    assert result["acc"] == pytest.approx(recorded["test/acc"], abs=1e-6)  # Lightning's own test of the best ckpt
    cm = torch.tensor(result["confusion_matrix"])
    assert cm.shape == (10, 10) and cm.sum() == 128 and cm.diag().sum() / 128 == pytest.approx(expected)
    per_class = torch.bincount(targets[preds == targets], minlength=10) / torch.bincount(targets, minlength=10)
    assert list(result["per_class_acc"].values()) == pytest.approx(per_class.tolist())
    assert list(result["per_class_acc"]) == [f"class_{i}" for i in range(10)]
    assert result["params"] == sum(p.numel() for p in net.parameters()) == recorded["params"]
    assert result["macs"] == recorded["macs"] > 0
    assert result["images_per_sec"] > 0 and result["latency_ms"] > 0 and result["throughput_batch_size"] == 8
    fused = result["fused"]  # batch norm folded: resnet20 has one per conv, 19 in all
    assert fused["pairs"] == 19 and fused["images_per_sec"] > 0 and fused["latency_ms"] > 0
    written = json.loads((run / "eval.json").read_text())  # next to the checkpoint's run folder
    assert written["acc"] == result["acc"] and written["split"] == "test"
    assert (run / "eval_confusion_matrix.png").stat().st_size > 0


def test_output_dir_and_data_from_the_evaluate_config(run, tmp_path):
    out = tmp_path / "elsewhere"
    result = evaluate(_eval_cfg(tmp_path, f"ckpt_path={_best(run)}", f"output_dir={out}", "data_from_run=false",
                                "data=synthetic", "data.test_size=64", "benchmark.enabled=false"))
    assert result["num_samples"] == 64 and "images_per_sec" not in result
    assert json.loads((out / "eval.json").read_text())["num_samples"] == 64


def test_command_line_data_overrides_win_over_the_run_config(run, tmp_path):
    cfg = _eval_cfg(tmp_path, "+data.test_size=64")
    run_cfg = OmegaConf.load(run / "config.yaml")
    assert resolve_data_config(cfg, run_cfg, []) == run_cfg.data
    merged = resolve_data_config(cfg, run_cfg, ["+data.test_size=64", "device=cpu"])
    assert merged.test_size == 64 and merged._target_ == run_cfg.data._target_ and merged.num_samples == 512
    assert resolve_data_config(cfg, run_cfg, ["data=cifar10"])._target_ == "convzoo.data.CIFAR10DataModule"
    assert resolve_data_config(cfg, None, [])._target_ == "convzoo.data.CIFAR10DataModule"


def test_validation_split_when_the_data_has_no_test_split(run, tmp_path):
    from torchvision.io import write_png

    root = tmp_path / "tree"
    for c in range(10):  # ImageFolder tree with train/ only: 10 classes x 3 images
        (root / "train" / f"c{c}").mkdir(parents=True)
        for i in range(3):
            write_png(torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8), str(root / "train" / f"c{c}" / f"{i}.png"))
    result = evaluate(_eval_cfg(tmp_path, f"ckpt_path={_best(run)}", "data_from_run=false", "data=folder",
                                f"data.root={root}", "data.val_size=10", f"+data.cache_dir={tmp_path / 'cache'}",
                                "benchmark.enabled=false", f"output_dir={tmp_path}"))
    assert result["split"] == "val" and result["num_samples"] == 10
    assert any("validation split" in note for note in result["notes"])


def test_class_count_mismatch_is_said_in_words(run, tmp_path):
    cfg = _eval_cfg(tmp_path, f"ckpt_path={_best(run)}", "data_from_run=false", "data=synthetic", "data.num_classes=100")
    with pytest.raises(ValueError, match="checkpoint is resnet20 for 10 classes but data synthetic has 100"):
        evaluate(cfg)


class _Payload:
    """Unpickling this creates a file: the kind of side effect a checkpoint must never get to run."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return open, (str(self.path), "w")


def test_malicious_pickle_is_refused_and_never_runs(run, tmp_path):
    marker, evil = tmp_path / "pwned", tmp_path / "evil.ckpt"
    ckpt = torch.load(_best(run), map_location="cpu", weights_only=True)
    ckpt["callbacks"] = {"x": _Payload(marker)}
    torch.save(ckpt, evil)
    with pytest.raises(ValueError, match=r"evil\.ckpt is not a safe, valid checkpoint"):
        evaluate(_eval_cfg(tmp_path, f"ckpt_path={evil}"))
    assert not marker.exists()
    torch.load(evil, weights_only=False)  # the payload is real: an unsafe load does run it
    assert marker.exists()


@pytest.mark.parametrize("where, target", [
    ("top", "os.system"),
    ("top", "convzoo.models.net.torch.load"),  # starts with "convzoo.models." but reaches torch through an import
    ("nested", "os.system"),            # Hydra instantiates nested targets too
    ("top", "convzoo.models.__class__"),
    ("top", "models.Net"),              # the package is convzoo.models: a bare "models" is not ours
])
def test_targets_outside_the_models_package_are_refused(run, tmp_path, where, target):
    marker, bad = tmp_path / "pwned", tmp_path / "bad.ckpt"
    ckpt = torch.load(_best(run), map_location="cpu", weights_only=True)
    model_cfg = ckpt["hyper_parameters"]["model_cfg"]
    if where == "top":
        ckpt["hyper_parameters"]["model_cfg"] = {"_target_": target, "_args_": [f"touch {marker}"]}
    else:
        model_cfg["head"] = {"_target_": target, "_args_": [f"touch {marker}"]}
    torch.save(ckpt, bad)
    with pytest.raises(ValueError, match=rf"refusing to instantiate model_cfg.*_target_='{target}'"):
        evaluate(_eval_cfg(tmp_path, f"ckpt_path={bad}"))
    assert not marker.exists()


def test_missing_truncated_and_foreign_files_error_clearly(run, tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint .*nope.ckpt does not exist"):
        evaluate(_eval_cfg(tmp_path, f"ckpt_path={tmp_path / 'nope.ckpt'}"))
    data = _best(run).read_bytes()
    (tmp_path / "half.ckpt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"half\.ckpt is not a valid checkpoint \(truncated"):
        load_checkpoint(tmp_path / "half.ckpt")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "plain.pt")
    with pytest.raises(ValueError, match="not a Lightning checkpoint"):
        load_checkpoint(tmp_path / "plain.pt")
    with pytest.raises(ValueError, match="not a file"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize("given", [[], ["ckpt_path=a.ckpt", "runs=."], ["ckpt_path=a.ckpt", "model=resnet20"]])
def test_exactly_one_of_ckpt_path_and_runs(tmp_path, given):
    with pytest.raises(ValueError, match="exactly one of ckpt_path"):
        evaluate(_eval_cfg(tmp_path, *given))


def test_pretrained_weights_are_evaluated_without_a_checkpoint(tmp_path):
    net = create_model("resnet20")
    torch.save(net.state_dict(), tmp_path / "weights.pt")
    data = ["data=synthetic", "data.num_samples=64", "data.val_size=16", "data.test_size=32"]
    result = evaluate(_eval_cfg(tmp_path, "model=resnet20", f"model.pretrained={tmp_path / 'weights.pt'}", *data,
                                f"output_dir={tmp_path / 'out'}"))
    assert result["weights"] == str(tmp_path / "weights.pt") and result["checkpoint"] is None
    assert result["num_samples"] == 32 and result["split"] == "test" and "fused" in result
    assert json.loads((tmp_path / "out" / "eval.json").read_text())["acc"] == result["acc"]
    with pytest.raises(ValueError, match=r"model=resnet20 alone would evaluate untrained weights: add model\.pretrained=true"):
        evaluate(_eval_cfg(tmp_path, "model=resnet20", *data))


def test_leaderboard_ranks_runs_and_writes_every_format(run, tmp_path):
    sweep = tmp_path / "sweep"
    shutil.copytree(run, sweep / "0_resnet20", ignore=shutil.ignore_patterns("eval*"))
    fake = {"model": "mobilenet_v2_x0_5", "params": 700_490, "macs": 27_969_024, "val/acc_best": 0.9,
            "epochs": 3, "fit_seconds": 75.0, "best_checkpoint": ""}
    (sweep / "1_mobilenet_v2_x0_5").mkdir()
    (sweep / "1_mobilenet_v2_x0_5" / "metrics.json").write_text(json.dumps(fake))

    result = evaluate(_eval_cfg(tmp_path, f"runs={sweep}", "evaluate_checkpoints=true"))
    assert [r["model"] for r in result["rows"]] == ["mobilenet_v2_x0_5", "resnet20"]
    md = (sweep / "leaderboard.md").read_text()
    assert md.index("| 1 | mobilenet_v2_x0_5 |") < md.index("| 2 | resnet20 |")
    assert "90.00%" in md and "1m15s" in md
    with open(sweep / "leaderboard.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["model"] for r in rows] == ["mobilenet_v2_x0_5", "resnet20"]
    assert rows[1]["run"] == "0_resnet20" and float(rows[1]["eval/acc"]) == pytest.approx(float(rows[1]["test/acc"]))
    assert rows[0]["eval/acc"] == ""  # the fake run has no checkpoint: warned about, still ranked
    assert rows[0]["setting"] == "" and rows[1]["setting"] == "32-true, channels_last"  # what train.py chose
    assert any("1_mobilenet_v2_x0_5: no checkpoint" in w for w in result["warnings"])
    assert (sweep / "0_resnet20" / "eval.json").is_file()  # evaluated in the copy, not the original
    assert (sweep / "leaderboard.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list((sweep / "leaderboard_tb").glob("events.out.tfevents.*"))


def test_leaderboard_of_an_empty_folder_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="no runs under"):
        evaluate(_eval_cfg(tmp_path, f"runs={tmp_path}"))
