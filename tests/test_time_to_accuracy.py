"""benchmarks/time_to_accuracy.py on one tiny synthetic run with a FLOP budget (the same steps on any
machine): its record, resuming a grid, and the tables and plot rebuilt from the records alone."""
from __future__ import annotations

import contextlib
import copy
import io
import json
import shutil

import pytest

from benchmarks import time_to_accuracy

TINY = ["data=synthetic", "data.num_samples=192", "data.val_size=64", "data.test_size=64", "data.batch_size=32",
        "trainer.accelerator=cpu", "trainer.precision=32-true", "callbacks.progress_bar=null",
        "module.whitening_images=32"]
BUDGET = "1.3e11flop"  # 15 steps of fastnet_cpu (the recipe's model) at batch 32: 3.75 epochs of 4


def bench(*args: str) -> str:
    """Run the benchmark's main; its stdout."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert time_to_accuracy.main(list(args)) == 0
    return out.getvalue()


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """(results folder, log folder, arguments) of one benchmark run: one budget, one seed."""
    tmp = tmp_path_factory.mktemp("tta")
    args = ["--budgets", BUDGET, "--seeds", "0", "--results", str(tmp / "results"), "--log-dir", str(tmp / "logs"),
            "--", *TINY]
    bench(*args)
    return tmp / "results", tmp / "logs", args


def test_a_run_leaves_a_small_record(grid):
    results, logs, _ = grid
    path = results / f"fast_{BUDGET}_seed0.json"
    assert path.stat().st_size < 10_000
    record = json.loads(path.read_text())
    assert [record[k] for k in ("experiment", "budget", "budget_kind", "seed")] == ["fast", BUDGET, "flop", 0]
    assert record["budget_seconds"] is None and record["budget_flops"] == 1.3e11
    assert record["overrides"] == TINY  # a data= override: the shared CIFAR-10 folder is not added
    assert record["command"].startswith(f"python train.py experiment=fast budget={BUDGET} seed=0 data=synthetic")
    metrics = record["metrics"]
    assert "best_checkpoint" not in metrics and metrics["budget"] == BUDGET and 0 <= metrics["val/acc"] <= 1
    assert 0 < metrics["train_flops"] <= 1.3e11 and metrics["train_images_seen"] % 32 == 0
    assert record["recipe"]["model"] == "fastnet_cpu" and record["recipe"]["batch_size"] == 32
    assert record["recipe"]["lr"] == 1.5 and record["recipe"]["scheduler"].endswith("linear")  # fastnet_cpu's tuning
    assert record["recipe"]["precision"] == "32-true"
    curve = record["val_curve"]
    assert len(curve) >= 1 and all(0 < t <= record["wall_seconds"] and 0 <= a <= 1 for t, a in curve)
    assert [t for t, _ in curve] == sorted(t for t, _ in curve)
    assert set(record["machine"]) == {"cpu", "native_bf16", "cores", "torch"}
    calibration = record["calibration"]  # the run folder's calibration.json: fastnet's tuning turns timing off
    assert calibration["setting"]["precision"] == "32-true" and calibration["seconds"] is None
    assert len(list((logs / "results" / path.stem / "train" / "runs").iterdir())) == 1


def test_a_recorded_run_is_kept_and_a_different_one_refused(grid):
    results, logs, args = grid
    path = results / f"fast_{BUDGET}_seed0.json"
    before = path.read_text()
    assert "kept" in bench(*args)  # no second training run
    assert path.read_text() == before
    assert len(list((logs / "results" / path.stem / "train" / "runs").iterdir())) == 1
    with pytest.raises(SystemExit, match="--force replaces it"):
        bench(*args, "optimizer.lr=0.1")  # same file name, other overrides
    with pytest.raises(SystemExit):
        bench("--budgets", "ten", "--report", str(results))


def test_report_rebuilds_the_tables_from_the_records_alone(grid, tmp_path, table_rows):
    results, logs, _ = grid
    shutil.rmtree(logs)  # no run folders, no events: the records are enough
    md, png = tmp_path / "tta.md", tmp_path / "tta.png"
    text = bench("--report", str(results), "--out", str(md), "--plot", str(png))
    assert md.read_text() in text and png.stat().st_size > 1000
    assert f"--budgets {BUDGET} --seeds 0" in text and "native bf16" in text
    (row,) = table_rows(text, BUDGET)[:1]
    assert row[1:6] == ["fast", "fastnet_cpu", "Muon", "flip+translate1", "1"] and " ± " in row[6]  # fastnet's tuning
    assert row[10:12] == ["-", "-"]  # a FLOP budget is no deadline
    assert table_rows(text, BUDGET)[1][1] == "0"  # the per-run row of seed 0


def test_time_budgets_report_wall_time_against_the_budget(grid, tmp_path, table_rows):
    real = json.loads((grid[0] / f"fast_{BUDGET}_seed0.json").read_text())
    for budget, seed, wall, opt, translate in (("20s", 0, 19.8, "Muon", 1), ("20s", 1, 19.5, "Muon", 1),
                                               ("10s", 0, 11.0, "Muon", 1), ("20s", 2, 19.0, "SGD", 1),
                                               ("20s", 3, 19.6, "Muon", 0)):  # 0: before the final views
        record = copy.deepcopy(real)
        record.update(budget=budget, budget_kind="time", budget_seconds=float(budget[:-1]), budget_flops=None,
                      seed=seed, wall_seconds=wall)
        record["metrics"].update(optimizer=opt, final_tta_translate=translate)
        (tmp_path / f"fast_{budget}_seed{seed}.json").write_text(json.dumps(record))
    record = copy.deepcopy(real)  # the recipe's default model before it changed
    record.update(budget="20s", budget_kind="time", budget_seconds=20.0, budget_flops=None, seed=4, wall_seconds=19.7)
    record["recipe"]["model"] = "fastnet"
    (tmp_path / "fast_20s_seed4.json").write_text(json.dumps(record))
    text = bench("--report", str(tmp_path))
    twenty = next(r for r in table_rows(text, "20s") if r[2:5] == ["fastnet_cpu", "Muon", "flip+translate1"])
    ten = table_rows(text, "10s")[0]
    assert (twenty[5], twenty[10], twenty[11]) == ("2", "0.990", "yes")
    assert (ten[5], ten[10], ten[11]) == ("1", "1.100", "no")
    # the same experiment and overrides with another model, optimizer or final evaluation (a recipe
    # that changed) is a row of its own
    assert [tuple(r[2:6]) for r in table_rows(text, "20s") if len(r) > 11 and r[3] in ("Muon", "SGD")] == [
        ("fastnet_cpu", "Muon", "flip", "1"), ("fastnet_cpu", "Muon", "flip+translate1", "2"),
        ("fastnet", "Muon", "flip+translate1", "1"), ("fastnet_cpu", "SGD", "flip+translate1", "1")]
    assert text.index("| 10s ") < text.index("| 20s ")  # budgets in order of size


@pytest.mark.parametrize("cpu, bf16, slug", [
    ("AMD EPYC (family 25, model 1)", False, "amd-epyc-fp32"),
    ("AMD EPYC 9R14 96-Core Processor (family 25, model 17)", True, "amd-epyc-9r14-bf16"),
    ("Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz (family 6, model 106)", True, "intel-xeon-platinum-8375c-bf16"),
])
def test_results_are_filed_by_machine(cpu, bf16, slug):
    assert time_to_accuracy.machine_slug(cpu, bf16) == slug
