"""benchmarks/compare.py on one tiny synthetic run with a FLOP budget: its record, keeping an
up-to-date record and re-training a stale one, and the leaderboard, plots and README rebuilt from
the records alone."""
from __future__ import annotations

import contextlib
import io
import json
import shutil

import pytest

from benchmarks import compare

TINY = ["data=synthetic", "data.num_samples=192", "data.val_size=64", "data.test_size=64", "data.batch_size=32",
        "trainer.accelerator=cpu", "trainer.precision=32-true", "module.whitening_images=32", "budget=1.3e11flop"]
RECORD = "fastnet_1.3e11flop_seed0.json"


def bench(*args: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert compare.main(list(args)) == 0
    return out.getvalue()


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("compare")
    results = tmp / "docs" / "amd-epyc-fp32"
    args = ["--models", "fastnet", "--seeds", "0", "--results", str(results), "--log-dir", str(tmp / "logs"),
            "--infer-batch", "8", "--", *TINY]
    bench(*args)
    return results, tmp / "logs", args


def runs(logs):
    return list((logs / "amd-epyc-fp32" / RECORD[:-5] / "train" / "runs").iterdir())


def test_a_run_leaves_a_small_record_with_its_config(board):
    results, logs, _ = board
    path = results / RECORD
    assert path.stat().st_size < 20_000
    record = json.loads(path.read_text())
    assert (record["experiment"], record["model"], record["family"], record["seed"]) == ("compare", "fastnet", "fastnet", 0)
    assert record["command"].startswith("python train.py experiment=compare model=fastnet seed=0 data=synthetic")
    # the recipe is the model-agnostic one: fastnet's own tuning (lr 0.75, batch 512) is not applied
    assert record["config"]["optimizer"]["lr"] == 0.2 and record["config"]["module"]["norm_bias_lr_scale"] == 1.0
    assert "freeze_whitening" not in record["config"]["callbacks"] and "paths" not in record["config"]
    assert record["config"]["calibration"]["enabled"] is False and record["metrics"]["channels_last"] is True
    assert len(record["fingerprint"]) == 16
    assert record["inference"]["images_per_sec"] > 0 and record["inference"]["latency_ms"] > 0
    assert record["inference"]["throughput_batch_size"] == 8
    assert 0 <= record["metrics"]["val/acc"] <= 1 and record["metrics"]["train_images_seen"] > 0
    assert len(runs(logs)) == 1


def test_an_up_to_date_record_is_kept_and_a_stale_one_retrained(board):
    results, logs, args = board
    path = results / RECORD
    assert "kept" in bench(*args) and len(runs(logs)) == 1
    record = json.loads(path.read_text())
    record["fingerprint"] = "0" * 16  # as if the model's YAML or the recipe had changed since
    path.write_text(json.dumps(record))
    assert "stale" in bench(*args) and len(runs(logs)) == 2
    assert json.loads(path.read_text())["fingerprint"] == compare.fingerprint(
        compare.composed(["experiment=compare", "model=fastnet", "seed=0", *TINY]))


def test_report_fills_the_leaderboard_the_zoo_table_and_plots(board, tmp_path):
    results, logs, _ = board
    copy = tmp_path / "amd-epyc-fp32"
    shutil.copytree(results, copy)
    readme = tmp_path / "README.md"
    readme.write_text(readme_with_boards("amd-epyc-fp32"))
    text = bench("--report", "--results", str(copy), "--readme", str(readme))
    row = next(line for line in text.splitlines() if line.startswith("| 1 "))
    assert "| fastnet | fastnet |" in row and "1.3e11flop" in row
    for suffix in ("acc_vs_macs", "acc_vs_cost", "curves"):
        assert (tmp_path / f"amd-epyc-fp32_{suffix}.png").stat().st_size > 1000
    assert (tmp_path / "amd-epyc-fp32.md").read_text() in text
    new = readme.read_text()
    assert "old" not in new and new.endswith("\nend\n") and "amd-epyc-fp32_curves.png" in new
    zoo = [line for line in new.splitlines() if line.startswith("| resnet20 |")]
    assert len(zoo) == 1 and zoo[0].count("|") == 8  # the accuracy column, empty for an untrained model
    fast = next(line for line in new.splitlines() if line.startswith("| fastnet | 0."))
    assert "%" in fast


def readme_with_boards(*boards: str) -> str:
    sections = "".join(f"<!-- leaderboard {b} -->\nold\n<!-- /leaderboard {b} -->\n\n" for b in boards)
    return ("# x\n" + sections + "| model | params | paper | MACs (32x32) | receptive field | source |\n"
            "|---|---|\n| old |\n\nend\n")


def test_every_machine_has_its_board_and_its_zoo_column(board, tmp_path):
    results, _, _ = board
    for name, acc in (("amd-epyc-fp32", None), ("amd-epyc-bf16", 0.5)):
        shutil.copytree(results, tmp_path / "boards" / name)
        if acc is not None:  # as if this machine's run had reached another accuracy
            record = json.loads((tmp_path / "boards" / name / RECORD).read_text())
            record["metrics"]["val/acc"] = acc
            (tmp_path / "boards" / name / RECORD).write_text(json.dumps(record))
    readme = tmp_path / "README.md"
    readme.write_text(readme_with_boards("amd-epyc-bf16"))
    with pytest.raises(SystemExit, match="no section for the amd-epyc-fp32 leaderboard"):
        bench("--report", "--boards", str(tmp_path / "boards"), "--readme", str(readme))
    readme.write_text(readme_with_boards("amd-epyc-fp32", "amd-epyc-bf16"))
    text = bench("--report", "--boards", str(tmp_path / "boards"), "--readme", str(readme))
    assert "## amd-epyc-bf16\n" in text and "## amd-epyc-fp32\n" in text
    new = readme.read_text()
    assert "old" not in new and "amd-epyc-bf16_curves.png" in new and "amd-epyc-fp32_curves.png" in new
    heading = next(line for line in new.splitlines() if line.startswith("| model | params |"))
    assert heading.index("val acc (1.3e11flop, amd-epyc-bf16)") < heading.index("val acc (1.3e11flop, amd-epyc-fp32)")
    fast = next(line for line in new.splitlines() if line.startswith("| fastnet | 0.")).split("|")
    fp32 = json.loads((results / RECORD).read_text())["metrics"]["val/acc"]
    assert fast[6:8] == [" 50.00% ", f" {100 * fp32:.2f}% "]


def test_the_report_leaves_stale_records_out(board, tmp_path):
    results, _, _ = board
    copy = tmp_path / "amd-epyc-fp32"
    shutil.copytree(results, copy)
    record = json.loads((copy / RECORD).read_text())
    record["seed"], record["fingerprint"] = 1, "0" * 16  # a seed trained under an older recipe
    (copy / RECORD.replace("seed0", "seed1")).write_text(json.dumps(record))
    text = bench("--report", "--results", str(copy))
    assert "stale (their model or recipe changed since): fastnet seed 1;" in text
    row = next(line for line in text.splitlines() if line.startswith("| 1 "))
    assert "| fastnet |" in row and "±" not in row  # seed 0 alone: no spread over a mixed pair


def test_bad_arguments_are_refused():
    with pytest.raises(SystemExit):
        compare.main(["--models", "resnet21", "--report"])
    with pytest.raises(SystemExit):
        compare.main(["--report", "--", "model=resnet20"])


def test_the_default_plan_trains_every_sweep_model_before_the_extra_seeds():
    plan = compare.plan(None, None)
    models = compare.sweep_models()
    assert plan[:len(models)] == [(m, 0) for m in models] and set(compare.SPREAD) <= set(models)
    assert plan[len(models):] == [(m, s) for s in (1, 2) for m in compare.SPREAD]
    assert {"resnet20", "resnet56", "plain20", "highway_19", "fastnet", "dilated_resnet20"} <= set(models)
