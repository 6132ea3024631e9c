"""Progressive crops (training/progressive.py): the loader's crop size, the two-phase plan of a
budgeted run (against a fake clock), the FLOP budget's mean MACs, and the argument errors."""
from __future__ import annotations

import lightning as L
import pytest

from convzoo.models import create_model
from convzoo.models.complexity import flop_counter_macs
from convzoo.training.budget import Progress, total_steps_within
from convzoo.training.progressive import ProgressiveCrop
from convzoo.training.runs import read_scalars
from convzoo.training.train import train
from test_budget import CLOCK, clock  # noqa: F401  (the fake-clock fixture)

PROGRESSIVE = ("callbacks.progressive.size=16",)


def test_a_two_phase_plan_charges_each_phase_its_own_step_cost():
    # 1 s a step now, 2 s from half the run on: 300 s hold 100 steps of each (201 steps would cost 302 s)
    p = Progress(elapsed=0, step=0, step_seconds=1.0, steps_per_epoch=10**6, epoch_overhead=0.0,
                 end_seconds=0.0, later_from=0.5, later_ratio=2.0)
    assert total_steps_within(300, p, safety=0.0) == 200
    assert p.steps_seconds(200) == 300 and p.steps_seconds(10) == 5 + 5 * 2  # a run of 10 steps: 5 of each
    one_phase = Progress(elapsed=0, step=0, step_seconds=1.0, steps_per_epoch=10**6, epoch_overhead=0.0,
                         end_seconds=0.0)
    assert total_steps_within(300, one_phase, safety=0.0) == 300


class Shapes(L.Callback):
    """Advances the fake clock by what a step on its batch costs in proportion to its MACs (0.5 s on a
    16x16 crop, 2 s on a whole 32x32 image; 6 s a validation) and records each step's crop size."""

    sizes: list[int] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        size = batch[0].shape[-1]
        Shapes.sizes.append(size)
        CLOCK.now += 0.5 if size == 16 else 2.0

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            CLOCK.now += 6.0


def test_a_time_budget_trains_on_small_crops_first_and_plans_both_speeds(tmp_path, compose_train, tiny, clock):
    # Without a calibrated step time (a fresh calibration cache: another test's real rates would not
    # match the fake clock) the plan takes a whole image's step for 4x a small one's (resnet20's MACs
    # at 16 vs 32 pixels), as the clock has it: half the run sees 16x16 crops, the rest 32x32, and the
    # run ends inside its budget with its schedule ending at its last step.
    cfg = compose_train(*tiny, "budget=100s", "test=false", "calibration.enabled=false",
                        f"calibration.cache={tmp_path / 'calibration.json'}", "scheduler=linear", *PROGRESSIVE,
                        "+callbacks.shapes._target_=test_progressive.Shapes", tmp_path=tmp_path)
    Shapes.sizes.clear()
    started = clock.now
    metrics = train(cfg)
    steps = metrics["train_images_seen"] // 32
    sizes = Shapes.sizes
    assert len(sizes) == steps and set(sizes) == {16, 32}
    switch = sizes.index(32)
    assert sizes[switch:] == [32] * (steps - switch) and abs(switch - round(0.5 * steps)) <= 2
    assert 0.85 * 100 <= clock.now - started <= 100
    assert steps > 100 / (2.0 + 6.0 / 4)  # whole images alone: 2 s a step and a 6 s validation every 4
    planned = read_scalars(tmp_path, ["budget/planned_steps"])["budget/planned_steps"]
    assert planned[-1][1] == steps


def test_a_flop_budget_pays_the_mean_macs_of_both_phases(tmp_path, compose_train, tiny):
    net = create_model("resnet20", num_classes=10)
    full, small = flop_counter_macs(net, (3, 32, 32)), flop_counter_macs(net, (3, 16, 16))
    steps = 12  # 6 on 16x16 crops, 6 on whole images
    flops = 6 * full * 32 * (steps * (0.5 * small / full + 0.5))
    cfg = compose_train(*tiny, f"budget={flops * 1.0001:.6e}flop", "test=false", *PROGRESSIVE,
                        "+callbacks.shapes._target_=test_progressive.Shapes", tmp_path=tmp_path)
    Shapes.sizes.clear()
    metrics = train(cfg)
    assert metrics["train_images_seen"] == steps * 32
    assert Shapes.sizes.count(16) == pytest.approx(6, abs=2)
    assert metrics["train_flops"] < 6 * metrics["macs"] * steps * 32  # the small steps cost less


@pytest.mark.parametrize("kwargs, message", [
    ({"size": 0}, r"size should be a positive number of pixels \(or null: off\), got 0"),
    ({"size": 24, "until_fraction": 1.5}, r"until_fraction should be in \[0, 1\], got 1.5"),
])
def test_bad_arguments_name_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ProgressiveCrop(**kwargs)


def test_a_crop_larger_than_the_images_is_refused_before_training(tmp_path, compose_train, tiny):
    cfg = compose_train(*tiny, "+trainer.max_steps=2", "test=false",
                        "callbacks.progressive.size=40", tmp_path=tmp_path)
    with pytest.raises(ValueError, match=r"size=40 is larger than the images \(32x32\); give a size of at most 32"):
        train(cfg)


def test_the_small_steps_survive_a_resume():
    callback = ProgressiveCrop(size=24)
    callback.small_steps = 7
    restored = ProgressiveCrop(size=24)
    restored.load_state_dict(callback.state_dict())
    restored.macs_ratio = 0.5
    assert restored.flops_scale(14) == pytest.approx((7 * 0.5 + 7) / 14)
    assert restored.flops_scale(0) == 1.0
