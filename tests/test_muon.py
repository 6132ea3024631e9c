"""Muon for filters, SGD for the rest (training/muon.py): the orthogonalization, the group split,
a step's arithmetic, the schedule over both parts, and the config on a zoo model."""
from __future__ import annotations

import math
import re

import pytest
import torch
from hydra.utils import instantiate
from torch import nn

from convzoo.models import create_model
from convzoo.training.muon import Muon, orthogonalize
from convzoo.training.task import param_groups


@pytest.mark.parametrize("shape", [(64, 32, 3, 3), (16, 1, 3, 3), (300, 20), (10, 10)])
def test_orthogonalize_gives_singular_values_near_one(shape):
    torch.manual_seed(0)
    grad = torch.randn(shape)
    out = orthogonalize(grad, steps=5)
    assert out.shape == grad.shape
    values = torch.linalg.svdvals(out.reshape(shape[0], -1))
    assert values.min() > 0.6 and values.max() < 1.25
    # the same singular vectors: U V^T of grad, up to the approximate singular values
    u, _, vh = torch.linalg.svd(grad.reshape(shape[0], -1), full_matrices=False)
    assert torch.nn.functional.cosine_similarity((u @ vh).flatten(), out.flatten(), dim=0) > 0.97


def small_net():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))


def test_filters_get_their_own_groups_and_the_rest_keeps_its_settings():
    net = small_net()
    groups = param_groups(net, 5e-4, True, 0.3, norm_bias_lr_scale=4.0)
    opt = Muon(groups, lr=0.3, momentum=0.85, weight_decay=5e-4, muon_lr=0.07, muon_momentum=0.6)
    muon = [g for g in opt.param_groups if g["muon"]]
    assert [p.shape for g in muon for p in g["params"]] == [torch.Size([8, 3, 3, 3])]
    assert muon[0]["lr"] == 0.07 and muon[0]["momentum"] == 0.6 and muon[0]["weight_decay"] == 0.0
    sgd = {id(p): g for g in opt.param_groups if not g["muon"] for p in g["params"]}
    assert sgd[id(net[5].weight)]["lr"] == 0.3 and sgd[id(net[5].weight)]["weight_decay"] == 5e-4
    assert sgd[id(net[1].bias)]["lr"] == pytest.approx(1.2)  # the norm-shift group's own lr survives
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(net.parameters()))


def test_one_step_renormalizes_the_filter_and_moves_it_by_the_orthogonal_factor():
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 6, 3, bias=False)
    conv.weight.grad = torch.randn_like(conv.weight)
    grad = conv.weight.grad.clone()
    before = conv.weight.detach().clone()
    Muon(conv.parameters(), lr=1.0, muon_lr=0.1, muon_momentum=0.5, nesterov=True).step()
    normalized = before * math.sqrt(6) / before.norm()
    # first step: buffer = grad, Nesterov update = grad + 0.5 * grad, orthogonalized (scale-free)
    expected = normalized - 0.1 * orthogonalize(1.5 * grad, steps=3)
    torch.testing.assert_close(conv.weight.detach(), expected)


def test_sgd_part_matches_torch_sgd():
    torch.manual_seed(0)
    a, b = nn.Linear(5, 3), nn.Linear(5, 3)
    b.load_state_dict(a.state_dict())
    ours = Muon(a.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-2)
    ref = torch.optim.SGD(b.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-2)
    x = torch.randn(16, 5)
    for _ in range(3):
        for net, opt in ((a, ours), (b, ref)):
            opt.zero_grad()
            net(x).pow(2).mean().backward()
            opt.step()
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q)


def test_a_schedule_scales_both_parts():
    net = small_net()
    opt = Muon(net.parameters(), lr=0.2, muon_lr=0.05)
    torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5)
    assert sorted(g["lr"] for g in opt.param_groups) == [0.025, 0.1]
    assert sorted(g["initial_lr"] for g in opt.param_groups) == [0.05, 0.2]
    # the split is saved with the state: the filters' group first, then the rest
    assert [g["muon"] for g in opt.state_dict()["param_groups"]] == [True, False]


@pytest.mark.parametrize("kwargs, message", [
    ({"muon_lr": 0.0}, "muon_lr should be > 0, got 0.0"),
    ({"muon_momentum": 1.0}, "muon_momentum should be in [0, 1), got 1.0"),
    ({"ns_steps": 0}, "ns_steps should be an integer >= 1, got 0"),
    ({"weight_decay": -1.0}, "weight_decay should be >= 0, got -1.0"),
    ({"momentum": 0.0}, "nesterov=True needs momentum > 0"),
])
def test_bad_arguments_are_refused_by_name(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        Muon(small_net().parameters(), **{"lr": 0.1, **kwargs})


def test_the_config_trains_a_zoo_model(compose_train, tmp_path):
    cfg = compose_train("optimizer=muon", tmp_path=tmp_path)
    torch.manual_seed(0)
    net = create_model("resnet20", num_classes=4)
    opt = instantiate(cfg.optimizer)(param_groups(net, cfg.optimizer.weight_decay, True, cfg.optimizer.lr))
    assert any(g["muon"] for g in opt.param_groups)
    x, y = torch.randn(32, 3, 32, 32), torch.randint(0, 4, (32,))
    losses = []
    for _ in range(8):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0]
