"""The checkerboard study: autoencoder decoders, the flat-code pattern, experiment=checkerboard
end to end through train.py (a three-decoder multirun on synthetic data) and its report."""
from __future__ import annotations

import json
import math

import pytest
import torch
from hydra import compose, initialize_config_dir

from train import train
from convzoo.models.autoencoder import DECODERS, ConvAutoencoder
from convzoo.studies.checkerboard import flat_code_pattern, pattern_rms
from convzoo.training.autoencode import AutoencoderModule
from convzoo.studies.registry import main as study_main
from convzoo.studies.registry import report as study_report

SWEPT = ["transposed_k3", "transposed_k4", "resize"]


@pytest.mark.parametrize("decoder", sorted(DECODERS))
def test_decoder_restores_the_input_size_and_every_parameter_learns(decoder):
    net = ConvAutoencoder(channels=[8, 16], latent_channels=4, decoder=decoder)
    x = torch.randn(2, 3, 16, 24)
    out = net(x)
    assert out.shape == x.shape and net.encoder(x).shape == (2, 4, 4, 6)
    torch.nn.functional.mse_loss(out, x).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())
    last = net.decoder[-1]  # outputs the image: no norm, no activation after it
    assert last.out_channels == 3 and not any(isinstance(m, (torch.nn.BatchNorm2d, torch.nn.ReLU)) for m in last.modules())


def test_decoders_differ_only_in_their_upsampling_and_overlap_score():
    from convzoo.models.layers import checkerboard_score

    nets = {d: ConvAutoencoder(decoder=d) for d in SWEPT}
    assert [len(n.decoder) for n in nets.values()] == [4, 4, 4]  # 1x1 in, then 3 x2 blocks
    count = {d: sum(p.numel() for p in n.parameters()) for d, n in nets.items()}
    assert count["transposed_k3"] == count["resize"] < count["transposed_k4"]  # 9 vs 16 taps per weight
    scores = {d: checkerboard_score(n.decoder) for d, n in nets.items()}
    assert scores["transposed_k3"] > 0.5 and scores["transposed_k4"] == 0 and scores["resize"] == 0


def _randomised(decoder: str) -> ConvAutoencoder:
    net = ConvAutoencoder(channels=[8, 16, 16], latent_channels=6, decoder=decoder)
    torch.manual_seed(0)
    with torch.no_grad():  # trained-looking norms: running stats and affine parameters away from 0 / 1
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2)
                m.weight.normal_()
    return net.eval()


@pytest.mark.parametrize("decoder", SWEPT)
def test_flat_code_pattern_is_flat_for_resize_and_periodic_for_transposed(decoder):
    net = _randomised(decoder)
    pattern = flat_code_pattern(net.decoder, torch.randn(6), size=16)  # (3, 64, 64): crop of 128
    assert pattern.shape == (3, 64, 64)
    # The border is cropped: what is left repeats with the decoder's period, 2^3 = 8 pixels.
    assert torch.allclose(pattern[:, 8:, 8:], pattern[:, :-8, :-8], atol=1e-4)
    rms = float(pattern_rms(pattern, [0.25, 0.25, 0.25]))
    if decoder == "resize":
        assert rms < 1e-3  # nearest resize + conv spreads a constant evenly
    else:
        assert rms > 0.5  # random taps do not sum alike in each output phase (even for k4)


def test_pattern_rms_is_in_grey_levels():
    pattern = torch.zeros(3, 4, 4)
    pattern[:, ::2] = 1.0  # stripes of +-0.5 around the mean, in normalised units
    assert float(pattern_rms(pattern, [0.2, 0.2, 0.2])) == pytest.approx(0.5 * 0.2 * 255)


def test_psnr_is_computed_on_pixels():
    module = AutoencoderModule(ConvAutoencoder(channels=[4], latent_channels=2), None,
                               data_info={"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]})
    x = torch.zeros(2, 3, 4, 4)  # mid-grey
    recon = x + 0.1 / 0.25  # every pixel off by 0.1
    assert module.psnr(recon, x).tolist() == pytest.approx([20.0, 20.0], abs=1e-4)  # 10 log10(1 / 0.01)


def test_unknown_decoder_resume_or_size_fails_before_the_data_is_read(tmp_path, compose_train, tiny):
    with pytest.raises(ValueError, match="unknown decoder 'deconv'; expected one of: transposed_k3, transposed_k4, resize"):
        ConvAutoencoder(decoder="deconv")
    cfg = compose_train("experiment=checkerboard", *tiny, "model.decoder=deconv", tmp_path=tmp_path / "run")
    with pytest.raises(ValueError, match="model ae_deconv: unknown decoder 'deconv'"):
        train(cfg)
    assert not (tmp_path / "run").exists()  # failed before any data was read or anything written
    # One code path for every task: an autoencoder resumes like a classifier, found by model name.
    with pytest.raises(FileNotFoundError, match="ckpt_path=last: no checkpoints/last.ckpt of model 'ae_resize'"):
        train(compose_train("experiment=checkerboard", *tiny, "ckpt_path=last", tmp_path=tmp_path / "run"))
    with pytest.raises(ValueError, match=r"divisible by 2\^3 = 8"):
        ConvAutoencoder(channels=[8, 8, 8]).check_image_size((28, 28))


def test_experiment_sweeps_the_three_decoders(config_dir):
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=checkerboard"], return_hydra_config=True)
    assert cfg.task == "autoencode" and cfg.model.name == "ae_resize" and cfg.callbacks.run_report.figures is False
    assert cfg.module._target_.endswith("AutoencoderModule") and cfg.hydra.runtime.choices.task == "autoencode"
    assert str(cfg.hydra.sweeper.params["model.decoder"]).split(",") == SWEPT
    assert cfg.optimizer._target_ == "torch.optim.AdamW" and cfg.callbacks.model_checkpoint.monitor == "val/loss"


def test_multirun_trains_each_decoder_and_the_report_compares_them(tmp_path, capsys, tiny, cli, event_tags):
    smaller = [o for o in tiny if not o.startswith(("data.num_samples", "data.val_size", "data.test_size"))]
    out = cli(["-m", "experiment=checkerboard", *smaller, "data.num_samples=96", "data.val_size=32",
               "data.test_size=32", "trainer.max_epochs=1", "module.num_images=4", "callbacks.checkerboard.num_images=4", "model.channels=[8,16,16]",
               f"paths.log_dir={tmp_path}", "hydra.sweep.dir=sweep"], cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    sweep = tmp_path / "sweep"
    runs = sorted(p.name for p in sweep.iterdir() if p.is_dir() and p.name[0].isdigit())
    assert runs == ["0_ae_transposed_k3", "1_ae_transposed_k4", "2_ae_resize"]
    expected = {"train/loss_step", "train/loss_epoch", "val/loss", "val/psnr", "val/checkerboard_rms",
                "decoder/checkerboard_score", "val/reconstructions", "test/psnr", "lr-AdamW/pg1"}
    assert expected <= event_tags(sweep / runs[0]), expected - event_tags(sweep / runs[0])
    metrics = json.loads((sweep / runs[0] / "metrics.json").read_text())
    assert metrics["decoder"] == "transposed_k3" and metrics["decoder/checkerboard_score"] > 0.5
    assert math.isfinite(metrics["val/psnr"]) and metrics["params"] > 0

    # The study's report (convzoo.studies.checkerboard, through the registry: convzoo study checkerboard).
    table = study_report("checkerboard", [sweep], tmp_path / "report")
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    assert [r.split(" | ")[0] for r in rows] == [f"| `{d}`" for d in SWEPT]
    assert (tmp_path / "report" / "checkerboard.png").stat().st_size > 5000
    assert f"![checkerboard: reconstructions by decoder]({tmp_path / 'report' / 'checkerboard.png'})" in table
    assert study_main(["checkerboard", str(sweep), "--out", str(sweep)]) == 0 and (sweep / "checkerboard.png").is_file()
    assert [line for line in (sweep / "checkerboard.md").read_text().splitlines() if line.startswith("| `")] == rows
    assert study_main(["checkerboard", str(tmp_path / "report")]) == 1  # no runs there
    assert "error: no autoencoder runs" in capsys.readouterr().err
