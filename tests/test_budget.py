"""budget=: parsing, the step arithmetic, the planner against a fake clock, resume, and the errors."""
from __future__ import annotations

import itertools
import json
import logging
from types import SimpleNamespace

import lightning as L
import pytest
import torch

from convzoo.training import budget as budget_mod
from convzoo.training import budget_planner
from convzoo.training.budget import Budget, Progress, epoch_ends, parse_budget, steps_for_flops, total_steps_within
from convzoo.training.runs import read_scalars
from convzoo.training.train import train

RESNET20_MACS = 40_551_040  # per 32x32 image (the zoo table)


@pytest.mark.parametrize("text, kind, amount", [
    ("10min", "time", 600), ("90s", "time", 90), ("1.5h", "time", 5400), ("2 minutes", "time", 120),
    ("2e15flop", "flop", 2e15), ("2PFLOP", "flop", 2e15), ("3.5GFLOPs", "flop", 3.5e9), ("1e12flops", "flop", 1e12),
])
def test_budgets_parse(text, kind, amount):
    budget = parse_budget(text)
    assert (budget.kind, budget.amount, budget.text) == (kind, pytest.approx(amount), text)


@pytest.mark.parametrize("value, message", [
    ("ten minutes", r"budget='ten minutes' is not a budget; give a time \(budget=10min"),
    ("10 parsecs", r"unknown unit 'parsecs'"),
    ("-5min", r"budget='-5min' should be more than zero"),
    ("0s", r"should be more than zero"),
    (600, r"600 has no unit: write budget=600s or budget=600flop"),
    ("1e400flop", r"should be more than zero"),  # inf
])
def test_bad_budgets_name_the_value_and_the_forms(value, message):
    with pytest.raises(ValueError, match=message):
        parse_budget(value)


def test_no_budget_is_none():
    assert parse_budget(None) is None


def test_flop_budget_counts_six_macs_per_image():
    budget = parse_budget("1e15flop")
    steps = steps_for_flops(budget, RESNET20_MACS, 128)
    assert steps == int(1e15 // (6 * RESNET20_MACS * 128))
    with pytest.raises(ValueError, match=r"smaller than one optimizer step of resnet20 .* give at least budget=3.11e\+10flop"):
        steps_for_flops(parse_budget("1e9flop"), RESNET20_MACS, 128, "resnet20")


def test_validations_count_epoch_ends_and_a_last_partial_epoch():
    assert epoch_ends(0, 100, 88)[0] == 2      # epoch end at 88, and at the stop at 100
    assert epoch_ends(88, 176, 88)[0] == 2     # step 88 is yet to be validated, then 176
    assert epoch_ends(89, 176, 88)[0] == 1
    assert epoch_ends(10, 10, 88)[0] == 1      # stopping now, inside an epoch, still validates
    assert epoch_ends(88, 88, 88)[0] == 1
    # an end at most skip_within steps past an epoch end skips that epoch end's validation
    assert epoch_ends(0, 100, 88, skip_within=12)[0] == 1 and epoch_ends(0, 100, 88, skip_within=11)[0] == 2
    assert epoch_ends(88, 100, 88, skip_within=12)[0] == 1 and epoch_ends(89, 100, 88, skip_within=12)[0] == 1
    assert epoch_ends(0, 88, 88, skip_within=12)[0] == 1 and epoch_ends(0, 10, 88, skip_within=12)[0] == 1


def test_epoch_ends_count_what_check_val_every_n_epoch_validates():
    # epochs of 10 steps, validated every 3rd (epochs 3, 6, ...): from step 0 to 65, epoch ends 10..60
    assert epoch_ends(0, 65, 10, val_every=3) == (3, 4)        # 30, 60 and the last step; 10, 20, 40, 50 pass
    assert epoch_ends(0, 60, 10, val_every=3) == (2, 4)        # 30, and 60, the last step
    assert epoch_ends(0, 50, 10, val_every=3) == (2, 3)        # 30, and 50: the last step is always validated
    assert epoch_ends(31, 65, 10, val_every=3) == (2, 2)       # 60 and 65; 40, 50 pass
    assert epoch_ends(0, 62, 10, skip_within=2, val_every=3) == (2, 5)  # 60's validation skipped: 62 follows

    def reference(step, total, per_epoch, skip_within, val_every):  # epoch by epoch, as the planner runs
        validated = passed = 0
        for k in range(1, total // per_epoch + 1):
            end = k * per_epoch
            if step <= end < total:
                if k % val_every == 0 and not total - end <= skip_within:
                    validated += 1
                else:
                    passed += 1
        return validated + 1, passed

    for per_epoch, val_every, skip_within in itertools.product((1, 3, 10), (1, 2, 3), (0, 2, 12)):
        for step in range(0, 35):
            for total in range(max(step, 1), 40):
                assert epoch_ends(step, total, per_epoch, skip_within, val_every) == reference(
                    step, total, per_epoch, skip_within, val_every), (step, total, per_epoch, skip_within, val_every)


def test_a_plan_may_end_just_past_an_epoch_end_without_paying_two_validations():
    # mobilenet_v2_x1_0 for 10 minutes on a 2-core CPU: 352 steps an epoch at 1.43 s, a 65 s validation.
    # Step 353 would cost the epoch end's validation and the last step's: the plan stopped at the epoch end.
    p = Progress(elapsed=400, step=300, step_seconds=1.43, steps_per_epoch=352, epoch_overhead=65, end_seconds=5)
    assert total_steps_within(600, p) == 352
    skip = Progress(**{**vars(p), "skip_within": int(65 / 1.43)})
    total = total_steps_within(600, skip)
    assert 352 < total <= 352 + 45
    assert (total - 300) * 1.43 + 65 <= 600 * 0.99 - 400 - 5 < (total + 1 - 300) * 1.43 + 65


def test_plan_fills_the_budget_with_steps_and_validations():
    p = Progress(elapsed=60, step=20, step_seconds=0.5, steps_per_epoch=100, epoch_overhead=10, end_seconds=20)
    total = total_steps_within(600, p, safety=0.0)
    left = 600 - 60 - 20
    used = (total - 20) * 0.5 + epoch_ends(20, total, 100)[0] * 10
    assert used <= left < used + 0.5 + 10  # one more step (and maybe its validation) would not fit
    assert total_steps_within(600, p, safety=0.01) < total


def test_an_overrun_budget_stops_now():
    p = Progress(elapsed=700, step=40, step_seconds=0.5, steps_per_epoch=100, epoch_overhead=10, end_seconds=20)
    assert total_steps_within(600, p) == 40


class FakeClock:
    """time.monotonic and time.perf_counter of the planner's module: seconds advance only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def perf_counter(self) -> float:
        return self.now


CLOCK = FakeClock()


class Tick(L.Callback):
    """Advances the fake clock: 2 s a training step, 6 s a validation pass (a config callback, so it
    runs before the planner, which train() adds last)."""

    def on_train_batch_end(self, *args) -> None:
        CLOCK.now += 2.0

    passes: list[int] = []  # the global step of each validation

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            CLOCK.now += 6.0
            Tick.passes.append(trainer.global_step)


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    monkeypatch.setattr(budget_planner, "time", CLOCK)
    monkeypatch.setattr(budget_mod, "time", CLOCK)
    monkeypatch.setattr(budget_mod, "_launch", None)
    return CLOCK


def lrs(run_dir) -> list[float]:
    return [value for _, value, _ in read_scalars(run_dir, ["lr-SGD/pg1"])["lr-SGD/pg1"]]


def test_time_budget_plans_from_measured_speed_and_ends_the_schedule_at_its_last_step(
        tmp_path, compose_train, tiny, clock):
    # 4 steps an epoch; 2 s a step and 6 s a validation: 60 s, less 1% and the end (5 s: the
    # figures reuse the last validation's predictions), leave room for 15 steps and 4 validations; but
    # a validation buys 3 steps, so the epoch end at step 12, 3 steps before the planned end, is not
    # validated, and the 6 s saved buy 3 more steps: 18, whose end is 2 steps past the epoch end at 16.
    cfg = compose_train(*tiny, "budget=60s", "test=false", "scheduler=linear", "scheduler.warmup_fraction=0.25",
                        "+callbacks.tick._target_=test_budget.Tick", tmp_path=tmp_path)
    Tick.passes.clear()
    metrics = train(cfg)
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    plan = next(v for k, v in ckpt["callbacks"].items() if "BudgetPlanner" in k)
    steps = ckpt["global_step"]
    assert plan["total_steps"] == steps and plan["text"] == "60s"
    assert Tick.passes == [4, 8, steps] and steps == 18
    elapsed = steps * 2.0 + len(Tick.passes) * 6.0 + 5.0  # steps, validations, end
    assert elapsed <= 60 * 0.99 < elapsed + 2.0 + 6.0
    lr = lrs(tmp_path)
    assert len(lr) == steps and lr[-1] == pytest.approx(0.1 * (1 - (steps - 1 - round(0.25 * steps)) / (steps - round(0.25 * steps))), rel=1e-6)
    assert metrics["budget"] == "60s" and metrics["train_images_seen"] == steps * 32
    planned = read_scalars(tmp_path, ["budget/planned_steps"])["budget/planned_steps"]
    assert planned[-1][1] == steps


def test_validating_every_second_epoch_buys_steps_and_still_validates_the_last(tmp_path, compose_train, tiny, clock):
    # As above with trainer.check_val_every_n_epoch=2: the ends of epochs 1 and 3 (steps 4, 12) are not
    # validated, and the plan counts on that: 19 steps, whose 4th epoch end (16) falls 3 steps before
    # the last and is skipped; the 6 s saved buy 2 more steps: 21 (18 validating every epoch), the last
    # validated although epoch 6 is not one Lightning validates.
    cfg = compose_train(*tiny, "budget=60s", "test=false", "trainer.check_val_every_n_epoch=2",
                        "+callbacks.tick._target_=test_budget.Tick", tmp_path=tmp_path)
    Tick.passes.clear()
    metrics = train(cfg)
    steps = metrics["train_images_seen"] // 32
    assert Tick.passes == [8, steps] and steps == 21
    elapsed = steps * 2.0 + len(Tick.passes) * 6.0 + 5.0
    assert elapsed <= 60 * 0.99 < elapsed + 2.0 + 6.0


class TickFinal(Tick):
    """Tick, with a last validation of 3x the passes (final_tta_translate=1 adds translated views to flip's)."""

    def on_validation_end(self, trainer, pl_module) -> None:
        super().on_validation_end(trainer, pl_module)
        if not trainer.sanity_checking and trainer.should_stop:
            CLOCK.now += 12.0


def test_a_time_budget_plans_for_the_final_evaluation_views(tmp_path, compose_train, tiny, clock):
    # As above, but the last validation takes 18 s: the plan keeps 12 s for it, so it ends 6 steps
    # sooner, at the epoch end of step 12, and the whole run still fits in the budget.
    cfg = compose_train(*tiny, "budget=60s", "test=false", "module.final_tta_translate=1",
                        "+callbacks.tick._target_=test_budget.TickFinal", tmp_path=tmp_path)
    Tick.passes.clear()
    metrics = train(cfg)
    steps = metrics["train_images_seen"] // 32
    assert Tick.passes == [4, 8, steps] and steps == 12
    elapsed = steps * 2.0 + (len(Tick.passes) - 1) * 6.0 + 18.0 + 5.0
    assert elapsed <= 60 * 0.99 < elapsed + 2.0 + 6.0


class StopAt12(L.Callback):
    """Another callback that stops the run, at an epoch end the planner would not validate."""

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step == 12:
            trainer.should_stop = True


def test_a_run_stopped_by_another_callback_at_a_skipped_epoch_end_still_validates_it(
        tmp_path, compose_train, tiny, clock):
    cfg = compose_train(*tiny, "budget=60s", "test=false", "+callbacks.tick._target_=test_budget.Tick",
                        "+callbacks.stop._target_=test_budget.StopAt12", tmp_path=tmp_path)
    Tick.passes.clear()
    train(cfg)
    assert Tick.passes == [4, 8, 12]


def test_flop_budget_gives_the_same_steps_anywhere_and_validates_the_last_step(tmp_path, compose_train, tiny):
    steps = 10  # 2.5 epochs of 4 steps: the last validation falls inside epoch 3
    flops = 6 * RESNET20_MACS * 32 * steps
    cfg = compose_train(*tiny, f"budget={flops}flop", "test=false", "trainer.max_epochs=1", tmp_path=tmp_path)
    metrics = train(cfg)
    assert metrics["train_images_seen"] == steps * 32 and metrics["train_flops"] == pytest.approx(flops)
    val = read_scalars(tmp_path, ["val/acc"])["val/acc"]
    assert [s + 1 for s, _, _ in val] == [4, 8, 10]  # (logged at step - 1) max_epochs=1 ignored; step 10 validated


@pytest.mark.parametrize("steps, validated", [(10, [8, 10]), (12, [8, 12])])
def test_a_flop_budget_validates_its_last_step_in_an_epoch_check_val_every_n_epoch_skips(
        tmp_path, compose_train, tiny, steps, validated):
    cfg = compose_train(*tiny, f"budget={6 * RESNET20_MACS * 32 * steps}flop", "test=false",
                        "trainer.check_val_every_n_epoch=2", tmp_path=tmp_path)
    train(cfg)
    assert [s + 1 for s, _, _ in read_scalars(tmp_path, ["val/acc"])["val/acc"]] == validated


class StopAtStep(L.Callback):
    """Interrupts the run after its second epoch (step 8 of 10)."""

    def on_train_epoch_end(self, trainer, *args):
        if trainer.global_step == 8:
            trainer.should_stop = True


def test_a_resumed_budget_run_keeps_its_plan_and_matches_an_uninterrupted_one(tmp_path, compose_train, tiny):
    flops = 6 * RESNET20_MACS * 32 * 10
    common = [*tiny, f"budget={flops}flop", "test=false", "trainer.deterministic=true", "scheduler=cosine",
              "scheduler.warmup_fraction=0.2"]
    straight = train(compose_train(*common, tmp_path=tmp_path / "straight"))
    train(compose_train(*common, "+callbacks.stop._target_=test_budget.StopAtStep", tmp_path=tmp_path / "split"))
    assert torch.load(tmp_path / "split" / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 8
    resumed_cfg = compose_train(*common, "ckpt_path=last", tmp_path=tmp_path / "other")
    resumed_cfg.paths.log_dir = str(tmp_path / "split")
    resumed = train(resumed_cfg)
    assert resumed["train_images_seen"] == straight["train_images_seen"] == 320
    assert resumed["val/acc"] == straight["val/acc"] and resumed["train/loss"] == straight["train/loss"]
    assert lrs(tmp_path / "split")[-2:] == pytest.approx(lrs(tmp_path / "straight")[-2:])


def test_a_resumed_time_budget_charges_the_seconds_used_before(clock):
    planner = budget_planner.BudgetPlanner(Budget("time", 100.0, "100s"), 10, started=clock.now,
                                           images_per_step=32)
    clock.now += 30
    saved = planner.state_dict()
    assert saved["seconds_used"] == 30
    later = budget_planner.BudgetPlanner(Budget("time", 100.0, "100s"), 99, started=clock.now,
                                         images_per_step=32)
    later.load_state_dict(saved)
    clock.now += 5

    class Trainer:  # what on_train_start touches
        global_step, is_global_zero, num_training_batches, accumulate_grad_batches = 4, True, 4, 1
        fit_loop = type("FitLoop", (), {"epoch_loop": type("EpochLoop", (), {"max_steps": 0})()})()

    later.on_train_start(Trainer(), object())
    assert later.total == 10 and Trainer.fit_loop.epoch_loop.max_steps == 10
    assert later.seconds_used() == pytest.approx(30 + 5)


def test_a_flop_budget_too_small_for_one_step_is_refused_before_the_data(tmp_path, compose_train, tiny):
    cfg = compose_train(*tiny, "budget=1e6flop", tmp_path=tmp_path)
    with pytest.raises(ValueError, match=r"budget=1e6flop is smaller than one optimizer step of resnet20"):
        train(cfg)
    assert not (tmp_path / "config.yaml").exists()


def test_a_time_budget_spent_before_the_first_step_is_refused(tmp_path, compose_train, tiny, clock, monkeypatch):
    monkeypatch.setattr(budget_mod, "_launch", CLOCK.now - 10)  # the command started 10 s ago
    cfg = compose_train(*tiny, "budget=5s", tmp_path=tmp_path)
    with pytest.raises(ValueError, match=r"budget=5s is too small for one optimizer step here \(10 s used before"):
        train(cfg)


@pytest.mark.parametrize("value", ["-10min", "soon"])
def test_a_malformed_budget_is_refused_before_the_data(tmp_path, compose_train, tiny, value):
    cfg = compose_train(*tiny, f"budget={value}", tmp_path=tmp_path)
    with pytest.raises(ValueError, match=f"budget='{value}'"):
        train(cfg)
    assert not (tmp_path / "config.yaml").exists()


def test_max_epochs_on_the_command_line_is_ignored_with_a_warning(compose_train, tiny):
    from convzoo.training.config_checks import check_budget

    cfg = compose_train(*tiny, "budget=5min", "trainer.max_epochs=3")
    with pytest.warns(UserWarning, match=r"budget=5min sets the run's length: trainer.max_epochs=3 is ignored"):
        check_budget(cfg, overrides=["budget=5min", "trainer.max_epochs=3"])


def test_max_steps_caps_a_budget_with_a_warning(tmp_path, compose_train, tiny):
    cfg = compose_train(*tiny, "budget=1e15flop", "+trainer.max_steps=5", "test=false", "calibration.enabled=false",
                        tmp_path=tmp_path)
    with pytest.warns(UserWarning, match=r"budget=1e15flop and trainer.max_steps=5 are both set"):
        metrics = train(cfg)
    assert metrics["train_images_seen"] == 5 * 32
    assert json.loads((tmp_path / "metrics.json").read_text())["budget"] == "1e15flop"


class SlowStart(L.Callback):
    """A machine busy for the first 10 steps (5 s each), free afterwards (1 s a step)."""

    def on_train_batch_end(self, trainer, *args) -> None:
        CLOCK.now += 5.0 if trainer.global_step <= 10 else 1.0


def test_a_short_plan_made_on_a_busy_machine_grows_when_the_speed_returns(tmp_path, compose_train, tiny, clock):
    # 40 steps an epoch. Planned at the 8th measured step (5 s each), 200 s buy ~28 more steps, no
    # epoch end to re-plan at; re-planning every tenth of the plan and at its end fills the budget.
    cfg = compose_train(*tiny, "data.num_samples=1344", "budget=200s", "test=false",
                        "+callbacks.slow._target_=test_budget.SlowStart", tmp_path=tmp_path)
    started = clock.now
    metrics = train(cfg)
    used = clock.now - started
    assert metrics["train_images_seen"] > 40 * 32  # past the first epoch: the plan grew
    assert 0.9 * 200 <= used <= 200
    planned = [v for _, v, _ in read_scalars(tmp_path, ["budget/planned_steps"])["budget/planned_steps"]]
    assert planned[-1] == metrics["train_images_seen"] // 32 and min(planned) < planned[-1]


def test_the_sanity_check_estimates_a_validation_pass_without_its_set_up(clock):
    planner = budget_planner.BudgetPlanner(Budget("time", 100.0, "100s"), 10, started=clock.now, images_per_step=32)

    class Trainer:
        sanity_checking, num_val_batches = True, [10]

    planner.on_sanity_check_start(Trainer(), None)
    for seconds in (9.0, 1.0):  # the first batch pays one-off set-up
        clock.now += seconds
        planner.on_validation_batch_end(Trainer(), None, None, None, 0)
    planner.on_sanity_check_end(Trainer(), None)
    assert planner._eval_pass == pytest.approx(10 * 1.0)  # ten batches at the second batch's pace, not 50 s


def test_a_plan_made_before_any_step_is_timed_promises_no_end_time(clock, caplog):
    planner = budget_planner.BudgetPlanner(Budget("time", 600.0, "10min"), 880, started=clock.now, images_per_step=512)
    trainer = SimpleNamespace(global_step=0, is_global_zero=True,
                              fit_loop=SimpleNamespace(epoch_loop=SimpleNamespace(max_steps=-1)))
    with caplog.at_level(logging.INFO, logger=budget_planner.__name__):
        planner._apply(trainer, None, 880, "first estimate")
    assert "880 steps planned (first estimate)" in caplog.text
    assert "expected end" not in caplog.text and "once 8 steps are timed" in caplog.text
    planner.step_seconds = 0.5
    with caplog.at_level(logging.INFO, logger=budget_planner.__name__):
        planner._apply(trainer, None, 880, "measured")
    assert "expected end of training" in caplog.text
