"""The fast recipe's pieces: patch whitening, the conv-pool group, the max-pool head, and
``experiment=fast`` fitting the whitening from the data before the first step."""
from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from convzoo.models import ConvPoolBlock, Net, PatchWhitening, create_model, fit_whitening
from train import train


def correlated_images(n=256, size=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(n, 1, size, size, generator=g)
    # strongly correlated channels and neighbouring pixels: far from white
    smooth = nn.functional.avg_pool2d(base, 3, stride=1, padding=1)
    return torch.cat([smooth, 0.5 * smooth + 0.1 * torch.randn(n, 1, size, size, generator=g),
                      torch.randn(n, 1, size, size, generator=g)], 1)


def test_whitening_decorrelates_patches():
    x = correlated_images()
    layer = PatchWhitening(3, act_layer=None, eps=1e-6)
    layer.fit(x)
    y = layer(x)[:, :12] - layer.bias[:12, None, None]          # the first half: +W
    flat = y.permute(0, 2, 3, 1).reshape(-1, 12)
    cov = torch.cov(flat.T)
    assert torch.allclose(cov, torch.eye(12), atol=0.05), cov.diag()
    assert torch.equal(layer.weight[12:], -layer.weight[:12])
    assert bool(layer.fitted) and layer.out_channels == 24


def test_whitening_shapes_errors_and_state():
    layer = PatchWhitening(3, kernel_size=2)
    assert layer(torch.randn(2, 3, 32, 32)).shape == (2, 24, 31, 31)
    assert "weight" in layer.state_dict() and "fitted" in layer.state_dict()
    assert [n for n, _ in layer.named_parameters()] == ["bias"]  # filters are data statistics, not learned
    with pytest.raises(ValueError, match="2 \\* 12 = 24.*got 32"):
        PatchWhitening(3, 32)
    with pytest.raises(ValueError, match="eps should be > 0"):
        PatchWhitening(3, eps=0.0)
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\), got \(4, 1, 8, 8\)"):
        layer.fit(torch.randn(4, 1, 8, 8))


def test_fit_whitening_fits_once_and_sees_the_layer_input():
    net = create_model("fastnet")
    x = torch.randn(64, 3, 32, 32)
    assert fit_whitening(net, x) == 1
    fitted = net.stem[0].weight.clone()
    assert fit_whitening(net, 2 * x) == 0                       # a resumed run keeps its filters
    assert torch.equal(net.stem[0].weight, fitted)
    fresh = create_model("fastnet")
    fresh.load_state_dict(net.state_dict())                     # filters and flag travel in checkpoints
    assert bool(fresh.stem[0].fitted) and torch.equal(fresh.stem[0].weight, fitted)


@pytest.mark.parametrize("stride, size", [(2, 8), (1, 16)])
def test_conv_pool_block(stride, size):
    block = ConvPoolBlock(8, 16, stride=stride)
    y = block(torch.randn(2, 8, 16, 16))
    assert y.shape == (2, 16, size, size) and block.stride == stride
    assert block.conv1.bias is None and ConvPoolBlock(8, 16, norm_layer=None).conv1.bias is not None


def test_conv_pool_airbench_switches():
    block = ConvPoolBlock(4, 8, identity_init=True, norm_momentum=0.4, learn_norm_scale=False)
    block.init_weights()
    x = torch.randn(1, 4, 6, 6)
    first = nn.functional.conv2d(x, block.conv1.weight, padding=1)
    assert torch.equal(first[:, :4], x)                       # the first C_in filters pass their channel
    assert block.norm1.momentum == 0.4 and not block.norm1.weight.requires_grad and block.norm1.bias.requires_grad
    with pytest.raises(ValueError, match="norm_momentum should be in \\(0, 1\\].*got 1.5"):
        ConvPoolBlock(4, 8, norm_momentum=1.5)


def test_lookahead_pulls_weights_to_the_slow_copy_and_resumes():
    from convzoo.training.lookahead import Lookahead

    class Holder(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Linear(2, 2)

    module, callback = Holder(), Lookahead(every=1, start_epoch=0, base_decay=0.5, power=1.0)
    trainer = type("T", (), {"global_step": 5, "current_epoch": 0, "estimated_stepping_batches": 10})()
    callback.on_train_batch_end(trainer, module, None, None, 0)     # first call: takes the slow copy
    slow = module.net.weight.detach().clone()
    with torch.no_grad():
        module.net.weight.add_(1.0)
    callback.on_train_batch_end(trainer, module, None, None, 0)     # decay 0.5 * (5/10) = 0.25
    assert torch.allclose(module.net.weight, slow + 0.75)
    assert torch.equal(callback.slow["weight"], module.net.weight)
    restored = Lookahead()
    restored.load_state_dict(callback.state_dict())
    assert torch.equal(restored.slow["weight"], callback.slow["weight"])
    with pytest.raises(ValueError, match="base_decay should be in \\[0, 1\\), got 1.0"):
        Lookahead(base_decay=1.0)


def test_head_pool_choice():
    spec = [{"block": "conv", "out_channels": 8}]
    net = Net(spec, head={"pool": "max"})
    assert isinstance(net.global_pool, nn.AdaptiveMaxPool2d)
    with pytest.raises(ValueError, match="head pool should be 'avg' or 'max', got 'min'"):
        Net(spec, head={"pool": "min"})


def test_experiment_fast_fits_whitening_before_training(tmp_path, compose_train, tiny):
    cfg = compose_train(*tiny, "experiment=fast", "data.batch_size=32", "budget=1e11flop", tmp_path=tmp_path)
    assert cfg.model.name == "fastnet_cpu" and cfg.module.label_smoothing == 0.2 and cfg.budget == "1e11flop"
    metrics = train(cfg)  # 1e11 / (6 x 44.3M MACs x 32 images) = 11 steps: Lookahead from step 3.2, freeze from 3.3
    assert metrics["model"] == "fastnet_cpu" and 0.0 <= metrics["val/acc"] <= 1.0
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert bool(state["net.stem.0.fitted"])
    weight = state["net.stem.0.weight"]
    assert torch.equal(weight[12:], -weight[:12])               # set by fit(), not the random init
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert any("Lookahead" in key for key in ckpt["callbacks"])  # its slow weights resume with the run


def test_whitening_bias_freezes_at_its_fraction_of_the_run():
    from types import SimpleNamespace

    from convzoo.training.freeze import FreezeWhiteningBias

    module = SimpleNamespace(net=create_model("fastnet"))
    trainable = {name for name, p in module.net.named_parameters() if p.requires_grad}
    bias = module.net.stem[0].bias
    bias.grad = torch.ones_like(bias)
    callback = FreezeWhiteningBias(after_fraction=0.3)
    callback.on_train_batch_start(SimpleNamespace(global_step=29, estimated_stepping_batches=100), module, None, 0)
    assert bias.requires_grad
    callback.on_train_batch_start(SimpleNamespace(global_step=30, estimated_stepping_batches=100), module, None, 0)
    assert not bias.requires_grad and bias.grad is None
    assert {name for name, p in module.net.named_parameters() if p.requires_grad} == trainable - {"stem.0.bias"}
    with pytest.raises(ValueError, match=r"after_fraction should be in \[0, 1\], got 1.5"):
        FreezeWhiteningBias(after_fraction=1.5)


def test_test_time_augmentation_views_and_weights():
    from convzoo.training.metrics import tta_logits

    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).view(2, 1, 4, 4)

    def forward(images):  # (N, 2): the top-left pixel and the mean
        return torch.stack([images[:, 0, 0, 0], images.mean((1, 2, 3))], 1)

    assert torch.equal(tta_logits(forward, x), forward(x))
    assert torch.equal(tta_logits(forward, x, flip=True), (forward(x) + forward(x.flip(3))) / 2)
    up_left = torch.nn.functional.pad(x, (1, 1, 1, 1), mode="reflect")[..., :4, :4]
    down_right = x[..., 1:, 1:]  # the down-right shift's top-left pixel is x[1, 1]
    got = tta_logits(forward, x, translate=1)
    assert torch.allclose(got[:, 0], 0.5 * x[:, 0, 0, 0] + 0.25 * up_left[:, 0, 0, 0] + 0.25 * down_right[:, 0, 0, 0])
    with pytest.raises(ValueError, match="tta_translate should be an integer >= 0 \\(pixels\\), got -1"):
        create_module_with(tta_translate=-1)


def test_final_tta_views_and_cost():
    from convzoo.training.metrics import final_eval_cost, final_translate, tta_views

    assert [tta_views(False), tta_views(True), tta_views(False, 1), tta_views(True, 2)] == [1, 2, 3, 6]
    assert final_translate({"tta_translate": 0, "final_tta_translate": 1}) == 1
    assert final_translate({"tta_translate": 2, "final_tta_translate": 1}) == 2
    assert final_translate({}) == 0
    assert final_eval_cost({"tta_flip": True, "tta_translate": 0, "final_tta_translate": 1}) == 3.0
    assert final_eval_cost({"tta_flip": True, "tta_translate": 1, "final_tta_translate": 1}) == 1.0
    assert final_eval_cost({"tta_flip": False}) == 1.0
    with pytest.raises(ValueError, match=re.escape("final_tta_translate should be an integer >= 0 (pixels), got True")):
        create_module_with(final_tta_translate=True)


@pytest.mark.parametrize("stop", [("trainer.max_epochs=2",), ("budget=5e10flop",)], ids=["epochs", "budget"])
def test_final_evaluations_translate(tmp_path, compose_train, tiny, monkeypatch, stop):
    """The last validation and the test add the translated views; the validations before do not.
    resnet20 at 41M MACs, 32 images a step: 5e10 FLOPs stop the run at step 6, mid-epoch 1."""
    import convzoo.training.classify as classify
    from convzoo.training.metrics import tta_logits

    calls = []

    def spy(forward, x, flip=False, translate=0):
        trainer = forward.trainer
        calls.append((trainer.state.stage.value, trainer.global_step, translate))
        return tta_logits(forward, x, flip, translate)

    monkeypatch.setattr(classify, "tta_logits", spy)
    cfg = compose_train(*tiny, *stop, "module.final_tta_translate=1", tmp_path=tmp_path)
    metrics = train(cfg)
    last = 8 if "max_epochs" in stop[0] else 6
    validations = sorted({call for call in calls if call[0] != "test"})
    assert validations == [("sanity_check", 0, 0), ("validate", 4, 0), ("validate", last, 1)]
    assert {translate for stage, _, translate in calls if stage == "test"} == {1}  # the best checkpoint's test
    assert metrics["final_tta_translate"] == 1


def create_module_with(**options):
    from functools import partial

    from convzoo.training.classify import ClassificationModule

    return ClassificationModule(create_model("resnet20"), partial(torch.optim.SGD, lr=0.1), num_classes=10, **options)
