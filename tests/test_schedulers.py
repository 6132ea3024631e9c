"""Learning-rate schedules and the weight-decay parameter groups of the training module."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from convzoo.training import schedulers
from convzoo.training.task import param_groups


def lrs(factory, total=100, per_epoch=10, **kwargs) -> list[float]:
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = factory(opt, total_steps=total, steps_per_epoch=per_epoch, **kwargs)
    out = []
    for _ in range(total):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_cosine_warms_up_linearly_then_decays_to_the_floor():
    lr = lrs(schedulers.cosine, warmup_epochs=1, min_lr_ratio=0.1)
    assert lr[:10] == pytest.approx([(i + 1) / 10 for i in range(10)])
    assert lr[10] == pytest.approx(1.0) and all(a >= b for a, b in zip(lr[10:], lr[11:]))
    assert lr[55] == pytest.approx(0.1 + 0.9 * 0.5, abs=0.02)  # half-way through the decay
    assert lr[-1] == pytest.approx(0.1, abs=1e-3)


def test_linear_decays_to_the_floor():
    lr = lrs(schedulers.linear, warmup_epochs=0, min_lr_ratio=0.0)
    assert lr[0] == pytest.approx(1.0) and lr[50] == pytest.approx(0.5) and lr[-1] == pytest.approx(0.01)


@pytest.mark.parametrize("unit, milestones", [("epoch", [3, 6]), ("step", [30, 60])])
def test_multistep_in_epochs_or_steps(unit, milestones):
    lr = lrs(schedulers.multistep, milestones=milestones, gamma=0.1, unit=unit)
    assert lr[29] == pytest.approx(1.0) and lr[30] == pytest.approx(0.1) and lr[60] == pytest.approx(0.01)
    with pytest.raises(ValueError, match="unit should be 'epoch' or 'step', got 'minute'"):
        lrs(schedulers.multistep, milestones=[1], unit="minute")


def test_onecycle_peaks_at_max_lr():
    lr = lrs(schedulers.onecycle, max_lr=0.5, pct_start=0.25)
    assert max(lr) == pytest.approx(0.5, rel=1e-3) and lr.index(max(lr)) in (24, 25) and lr[-1] < 1e-3


def test_a_warmup_longer_than_the_run_is_shortened_with_a_warning():
    with pytest.warns(UserWarning, match="warm-up of 20 steps does not fit in a run of 10 steps"):
        lr = lrs(schedulers.cosine, total=10, per_epoch=10, warmup_epochs=2)
    assert lr[4] == pytest.approx(1.0)  # warmed up over 5 steps
    with pytest.raises(ValueError, match="warmup_epochs should be >= 0, got -1"):
        lrs(schedulers.cosine, warmup_epochs=-1)


def test_norms_and_biases_get_no_weight_decay():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))
    decay, no_decay = param_groups(net, 5e-4, exclude_norm_bias=True)
    assert decay["weight_decay"] == 5e-4 and no_decay["weight_decay"] == 0.0
    assert {id(p) for p in decay["params"]} == {id(net[0].weight), id(net[3].weight)}
    assert len(no_decay["params"]) == 4  # conv bias, BN weight and bias, linear bias
    (everything,) = param_groups(net, 5e-4, exclude_norm_bias=False)
    assert len(everything["params"]) == 6


def test_norm_bias_lr_scale_gets_its_own_group():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))
    decay, no_decay, norm_bias = param_groups(net, 5e-4, True, lr=0.5, norm_bias_lr_scale=64.0)
    assert norm_bias["lr"] == 32.0 and norm_bias["weight_decay"] == 0.0
    assert [id(p) for p in norm_bias["params"]] == [id(net[1].bias)]
    assert len(no_decay["params"]) == 3 and "lr" not in decay  # conv bias, BN weight, linear bias
    with pytest.raises(ValueError, match="needs the optimizer's lr"):
        param_groups(net, 5e-4, True, norm_bias_lr_scale=2.0)


def test_linear_schedule_starts_from_start_lr_ratio():
    lr = lrs(schedulers.linear, total=100, per_epoch=10, warmup_epochs=2, start_lr_ratio=0.2, min_lr_ratio=0.07)
    assert lr[0] == pytest.approx(0.2 + 0.8 / 20) and lr[19] == pytest.approx(1.0)
    assert lr[-1] == pytest.approx(0.07 + 0.93 / 80)
    with pytest.raises(ValueError, match="start_lr_ratio should be in \\[0, 1\\], got 1.5"):
        lrs(schedulers.linear, start_lr_ratio=1.5)
