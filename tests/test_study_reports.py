"""``convzoo study``: the report of each study, from fake sweeps (written with TensorBoard's SummaryWriter)
and from committed records, comparing runs by what their configs say rather than by model names."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch.utils.tensorboard import SummaryWriter

from convzoo.models import create_model
from convzoo.models.complexity import complexity
from convzoo.models.registry import model_config
from convzoo.studies.efficiency import run_precision
from convzoo.studies.registry import STUDIES, main

ROOT = Path(__file__).resolve().parents[1]


def fake_run(folder: Path, model: str, train_acc: list[float], val_acc: list[float], study: str | None = None,
             extra: dict | None = None, name: str | None = None, epoch_seconds: float | None = None,
             **overrides) -> None:
    """A run folder as train.py writes it (config.yaml, metrics.json, events), with given curves;
    ``extra``: more top-level config keys; ``name``: the model spec's name, if not ``model``;
    ``epoch_seconds``: each epoch's logged time, if any."""
    folder.mkdir(parents=True)
    spec = OmegaConf.to_container(model_config(model, **overrides), resolve=True)
    spec["name"] = name or spec["name"]
    cfg = {"model": spec, "data": {"batch_size": 128}, "trainer": {"max_epochs": len(val_acc), "limit_train_batches": 0.25},
           "optimizer": {"_target_": "torch.optim.SGD", "lr": 0.1}, "scheduler": {"_target_": "training.schedulers.cosine"}}
    OmegaConf.save({**cfg, **({"study": study} if study else {}), **(extra or {})}, folder / "config.yaml")
    rep = complexity(instantiate(spec))
    (folder / "metrics.json").write_text(json.dumps({
        "model": model, "params": rep.total_params, "macs": rep.total_macs, "val/acc": val_acc[-1],
        "val/acc_best": max(val_acc), "fit_seconds": 90.0, "train/images_per_sec": 500.0}))
    with SummaryWriter(str(folder)) as tb:
        for epoch, (t, v) in enumerate(zip(train_acc, val_acc)):
            step = (epoch + 1) * 87
            tb.add_scalar("train/acc_epoch", t, step)
            tb.add_scalar("train/loss_epoch", 2 - 2 * t, step)
            tb.add_scalar("val/acc", v, step)
            tb.add_scalar("val/loss", 2 - 2 * v, step)
            if epoch_seconds is not None:
                tb.add_scalar("train/epoch_seconds", epoch_seconds, step)


def degradation_sweep(root: Path, names: dict[str, str] | None = None) -> None:
    curves = {"plain20": [.4, .5, .6, .7], "plain56": [.3, .4, .5, .55], "resnet20": [.4, .5, .6, .7],
              "resnet56": [.42, .55, .65, .75]}
    for i, (model, acc) in enumerate(curves.items()):
        fake_run(root / f"{i}_{model}", model, acc, [a - 0.05 for a in acc], study="degradation",
                 name=(names or {}).get(model))


def test_degradation_report_tables_the_runs_and_says_what_they_show(tmp_path, capsys):
    degradation_sweep(tmp_path / "sweep")
    assert main(["degradation", str(tmp_path / "sweep"), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    rows = [line.split(" |")[0] for line in out.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows == ["| model", "| plain20", "| plain56", "| resnet20", "| resnet56"]
    assert "plain56 ends with 45.0% training error against plain20's 30.0%: the deeper plain net trains worse" in out
    assert "resnet56 ends with 25.0% training error against resnet20's 30.0%: the deeper residual net trains better" in out
    assert "changes the training error by +15.0 points without shortcuts and by -5.0 points with them" in out
    assert "Budget of every run: 4 epochs x 0.25 of the data, batch 128, SGD lr 0.1, cosine" in out
    assert (tmp_path / "out" / "degradation.png").stat().st_size > 5000
    assert "![degradation](" in (tmp_path / "out" / "degradation.md").read_text()


def test_degradation_tells_the_families_and_depths_from_the_specs_not_the_names(tmp_path, capsys):
    names = {"plain20": "deep_a", "plain56": "net_b", "resnet20": "zz_short", "resnet56": "aa"}
    degradation_sweep(tmp_path / "sweep", names)
    assert main(["degradation", str(tmp_path / "sweep"), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "net_b ends with 45.0% training error against deep_a's 30.0%: the deeper plain net trains worse" in out
    assert "aa ends with 25.0% training error against zz_short's 30.0%: the deeper residual net trains better" in out
    assert "changes the training error by +15.0 points without shortcuts and by -5.0 points with them" in out


def test_budget_names_the_precision_and_tells_fp32_and_bf16_runs_apart(tmp_path, capsys):
    degradation_sweep(tmp_path / "sweep")
    for run, precision in zip(sorted((tmp_path / "sweep").iterdir()), ["bf16-mixed"] * 3 + ["32-true"]):
        cfg = OmegaConf.load(run / "config.yaml")
        cfg.trainer.precision = precision
        OmegaConf.save(cfg, run / "config.yaml")
    assert main(["degradation", str(tmp_path / "sweep"), "--out", str(tmp_path / "out")]) == 0
    assert ("Budget of every run: 4 epochs x 0.25 of the data, batch 128, SGD lr 0.1, cosine; the precision "
            "differs: 32-true for resnet56; bf16-mixed for plain20, plain56, resnet20." in capsys.readouterr().out)
    cfg = OmegaConf.load(run / "config.yaml")
    cfg.trainer.max_epochs = 8  # a budget that differs too: a warning, each recipe whole
    OmegaConf.save(cfg, run / "config.yaml")
    assert main(["degradation", str(tmp_path / "sweep"), "--out", str(tmp_path / "out")]) == 0
    assert ("Warning: the runs had different budgets: 4 epochs x 0.25 of the data, batch 128, SGD lr 0.1, cosine, "
            "precision bf16-mixed; 8 epochs x 0.25 of the data, batch 128, SGD lr 0.1, cosine, precision 32-true."
            in capsys.readouterr().out)


def test_efficiency_report_measures_the_speed_of_each_net(tmp_path, capsys):
    for i, (form, acc) in enumerate({"standard": .62, "separable": .58}.items()):  # quarter width: quick to time
        fake_run(tmp_path / "s" / f"{i}_eff_{form}", f"eff_{form}", [acc - .1, acc], [acc - .1, acc],
                 study="efficiency", width_mult=0.25)
    assert main(["efficiency", str(tmp_path / "s"), "--out", str(tmp_path / "out"), "--repeats", "1",
                 "--batch", "8"]) == 0
    rows = {line.split(" | ")[0]: line.split(" | ") for line in capsys.readouterr().out.splitlines() if line.startswith("| eff")}
    assert set(rows) == {"| eff_standard x0.25", "| eff_separable x0.25"}
    assert rows["| eff_standard x0.25"][3] == "1.00" and float(rows["| eff_separable x0.25"][3]) < 0.5  # MACs / standard
    assert all(float(r[4].replace(",", "")) > 0 and float(r[5].replace(",", "")) > 0 for r in rows.values())
    assert main(["efficiency", str(tmp_path / "s"), "--out", str(tmp_path / "out"), "--repeats", "0"]) == 0
    assert ("eff_separable x0.25: 4.1x fewer MACs than eff_standard x0.25; 1.00x as fast in training (run log)."
            in capsys.readouterr().out)
    assert (tmp_path / "out" / "efficiency.png").stat().st_size > 5000


def test_efficiency_report_states_the_shuffle_ablation(tmp_path, capsys):
    for i, (model, acc) in enumerate({"eff_grouped": .55, "eff_grouped_shuffle": .58}.items()):
        fake_run(tmp_path / "s" / f"{i}_{model}", model, [acc - .1, acc], [acc - .1, acc], study="efficiency")
    assert main(["efficiency", str(tmp_path / "s"), "--out", str(tmp_path / "out"), "--repeats", "0"]) == 0
    assert ("Channel shuffle, the exact ablation: eff_grouped_shuffle has eff_grouped's weights and MACs plus a "
            "weightless permutation; best val acc 58.00% against 55.00% (+3.00 points, one seed each); the "
            "permutation makes training 1.00x as fast (run log).") in capsys.readouterr().out


def test_efficiency_finds_its_reference_and_the_shuffle_pair_in_the_configs(tmp_path, capsys):
    """The reference is the model the experiment config names; the ablation pair is the two specs
    that differ only by channel_shuffle blocks, whatever the models are called."""
    ref = {"study_reference": "eff_standard"}
    runs = {"eff_grouped": ("g", .55), "eff_standard": ("eff_standard", .6), "eff_grouped_shuffle": ("g_s", .58),
            "eff_shuffle": ("u", .57)}
    for i, (model, (name, acc)) in enumerate(runs.items()):
        fake_run(tmp_path / "s" / f"{i}_{model}", model, [acc - .1, acc], [acc - .1, acc], study="efficiency",
                 extra=ref, name=name)
    assert main(["efficiency", str(tmp_path / "s"), "--out", str(tmp_path / "out"), "--repeats", "0"]) == 0
    out = capsys.readouterr().out
    rows = {line.split(" | ")[0]: line.split(" | ") for line in out.splitlines() if line.startswith("| ")}
    assert rows["| eff_standard"][3] == "1.00" and rows["| g"][3] == "0.26"  # MACs / the named reference
    assert "g: 3.8x fewer MACs than eff_standard" in out
    assert out.count("Channel shuffle, the exact ablation") == 1
    assert "the exact ablation: g_s has g's weights and MACs plus a weightless permutation" in out


def test_efficiency_speed_is_measured_in_the_precision_each_run_trained_in(tmp_path):
    from convzoo.training.timing import measure_training_and_inference

    run = lambda precision: SimpleNamespace(cfg={"trainer": {"precision": precision}})  # noqa: E731
    assert [run_precision(run(p)) for p in ("bf16", "bf16-mixed", 32, "32-true", "int4")] == \
        ["bf16-mixed", "bf16-mixed", "32-true", "32-true", "32-true"]  # unknown: fp32
    nets = {"a": create_model("eff_separable", width_mult=0.25), "b": create_model("eff_shuffle", width_mult=0.25)}
    for precision in ("32-true", "bf16-mixed", {"a": "bf16-mixed", "b": "32-true"}):
        rates = measure_training_and_inference(nets, batch=4, repeats=1, warmup=0, min_seconds=0, precision=precision)
        assert all(train_ips > 0 and infer_ips > 0 for train_ips, infer_ips in rates.values())


def test_efficiency_reads_accuracy_at_equal_time_from_the_runs_epoch_times(tmp_path, capsys):
    # standard: 3 epochs of 2 min; separable: 3 of 1 min, so 3 minutes is the equal time
    for i, (form, acc, seconds) in enumerate([("standard", [.5, .6, .7], 120), ("separable", [.55, .6, .65], 60)]):
        fake_run(tmp_path / "s" / f"{i}_eff_{form}", f"eff_{form}", acc, acc, study="efficiency",
                 epoch_seconds=seconds)
    assert main(["efficiency", str(tmp_path / "s"), "--out", str(tmp_path / "out"), "--repeats", "0"]) == 0
    out = capsys.readouterr().out
    rows = {line.split(" | ")[0]: line.split(" | ") for line in out.splitlines() if line.startswith("| ")}
    assert rows["| net"][-1].rstrip(" |") == "val acc at 3.0 min"
    assert rows["| eff_standard"][-1].rstrip(" |") == "50.00% (epoch 1)"  # its second epoch ends at 4 minutes
    assert rows["| eff_separable"][-1].rstrip(" |") == "65.00% (epoch 3)"
    assert "accuracy at equal time, where eff_separable leads" in out


def test_dilation_complexity_table_needs_no_runs(tmp_path, capsys):
    assert main(["dilation", "--out", str(tmp_path)]) == 0
    rows = {line.split(" | ")[0]: line.split(" | ") for line in capsys.readouterr().out.splitlines()
            if line.startswith(("| resnet20", "| dilated"))}
    assert rows["| resnet20"][4] == "64x8x8" and rows["| dilated_resnet20"][4] == "64x16x16"
    assert rows["| resnet20"][1] == rows["| dilated_resnet20"][1]  # same parameters
    assert rows["| resnet20"][-1].rstrip(" |") == "81" and rows["| dilated_resnet20"][-1].rstrip(" |") == "85"


def test_dilation_takes_resnet20_from_the_degradation_runs_and_nothing_else(tmp_path, capsys):
    """A longer dilation study trains dilated_resnet20 alone: the degradation sweep's resnet20 (same
    recipe) is its reference, listed first, and the degradation's plain and deeper nets stay out."""
    degradation_sweep(tmp_path / "degradation")
    fake_run(tmp_path / "dilation" / "0_dilated_resnet20", "dilated_resnet20", [.4, .5, .6, .72],
             [.35, .45, .55, .66], study="dilation")
    folders = [str(tmp_path / "dilation"), str(tmp_path / "degradation")]
    assert main(["dilation", *folders, "--out", str(tmp_path / "out")]) == 0
    rows = [line.split(" | ")[0] for line in capsys.readouterr().out.splitlines() if line.startswith("| ")][1:]  # less the header
    assert rows == ["| resnet20", "| dilated_resnet20"]
    assert main(["all", str(tmp_path), "--out", str(tmp_path / "all"), "--markdown"]) == 0
    section = (tmp_path / "all" / "dilation.md").read_text()
    assert "| resnet20 |" in section and "| dilated_resnet20 |" in section and "plain" not in section
    assert "dilated_resnet20 against resnet20: 1.00x the parameters" in section


def test_all_reports_each_study_found_and_pooling_tells_the_downsampling_apart(tmp_path, capsys):
    degradation_sweep(tmp_path / "a")
    fake_run(tmp_path / "b" / "0_allconv", "allconv", [.5, .6], [.5, .6], study="pooling", width_mult=0.5)
    fake_run(tmp_path / "b" / "1_allconv_pool", "allconv_pool", [.5, .65], [.5, .63], study="pooling", width_mult=0.5)
    assert main(["all", str(tmp_path), "--out", str(tmp_path / "out"), "--markdown"]) == 0
    out = capsys.readouterr().out
    assert [line for line in out.splitlines() if line.startswith("#### ")] == [
        "#### " + t for t in ("Degradation: does the deeper plain net train worse, and the deeper residual net not? "
                              "(He et al. 2016, Fig. 6)",
                              "Stride versus dilation: receptive field, cost and accuracy (Yu et al. 2017)",
                              "Max-pooling versus strided convolution (Springenberg et al. 2015)")]
    assert "| allconv x0.5 | 3x3 conv /2 |" in out and "| allconv_pool x0.5 | 3x3 max-pool /2 |" in out
    assert {p.name for p in (tmp_path / "out").glob("*.png")} == {"degradation.png", "dilation.png", "pooling.png"}


def test_report_errors_say_what_is_missing(tmp_path, capsys):
    assert main(["pooling", str(tmp_path), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "error: no classifier runs" in err and "python train.py -m experiment=pooling" in err
    assert main(["pooling", str(tmp_path / "missing")]) == 1
    assert "missing is not a folder" in capsys.readouterr().err


@pytest.mark.parametrize("section", sorted((ROOT / "docs" / "studies").rglob("*.md")),
                         ids=lambda p: str(p.relative_to(ROOT / "docs" / "studies").with_suffix("")))
def test_readme_shows_each_generated_study_section_as_generated(section):
    """README's study tables are the report command's output (docs/studies/<study>.md), pasted whole:
    a re-run that changes a table without README changing with it fails here."""
    readme = (ROOT / "README.md").read_text()
    assert section.read_text().strip() in readme, f"README.md does not hold {section.name} as generated"


@pytest.mark.parametrize("section", sorted(p for p in (ROOT / "docs" / "studies" / "longer").glob("*.md")
                                            if p.stem != "efficiency"),  # efficiency measures its speeds anew
                         ids=lambda p: p.stem)
def test_a_longer_study_section_regenerates_from_its_committed_records(section, tmp_path, capsys, monkeypatch):
    """The `convzoo study` line a committed section shows remakes it from the records in the repository
    (on a fresh clone: every file a report reads must be committed, not ignored)."""
    text = section.read_text()
    command = next(line for line in text.splitlines() if line.startswith("convzoo study ")).split()
    needed = getattr(STUDIES[command[2]], "RECORD_FILES", ())
    missing = [str(run / f) for folder in command[3:command.index("--out")] for run in (ROOT / folder).iterdir()
               for f in needed if not (run / f).exists()]
    assert not missing, f"records without a file the {command[2]} report reads: {missing}"
    out = command[command.index("--out") + 1]
    monkeypatch.chdir(ROOT)
    assert main([*command[2:command.index("--out")], "--out", str(tmp_path), "--markdown"]) == 0
    assert capsys.readouterr().out.strip().replace(str(tmp_path), out) == text.strip()


def test_the_longer_efficiency_section_regenerates_all_but_its_measured_speeds(tmp_path, capsys, monkeypatch,
                                                                               table_rows):
    """efficiency.md measures each net's speed anew (a machine's figure), but everything the runs
    recorded (costs, accuracies, fit time, accuracy at equal time, the budget) comes back from the
    committed records alone: ``--repeats 0`` measures nothing."""
    text = (ROOT / "docs" / "studies" / "longer" / "efficiency.md").read_text()
    command = next(line for line in text.splitlines() if line.startswith("convzoo study ")).split()
    monkeypatch.chdir(ROOT)
    assert main([*command[2:command.index("--out")], "--out", str(tmp_path), "--markdown", "--repeats", "0"]) == 0
    again = capsys.readouterr().out
    measured = (4, 5)  # train and infer img/s (measured)
    kept = [[c for i, c in enumerate(row) if i not in measured] for row in table_rows(text)]
    assert kept and [[c for i, c in enumerate(row) if i not in measured] for row in table_rows(again)] == kept
    budget = next(line for line in text.splitlines() if line.startswith("Budget of every run"))
    assert budget in again.splitlines()


def test_a_study_reports_from_its_records_as_from_its_logs(tmp_path, capsys):
    """``convzoo study record`` keeps a few KB per run; the report made from them (on a fresh clone,
    without the logs) is the report made from the logs, and names the command the sweep was run with."""
    degradation_sweep(tmp_path / "sweep")
    for run in (tmp_path / "sweep").iterdir():
        (run / ".hydra").mkdir()
        (run / ".hydra" / "overrides.yaml").write_text(
            f"- model={run.name.split('_', 1)[1]}\n- experiment=degradation\n- data=folder\n- trainer.max_epochs=15\n")
    assert main(["degradation", str(tmp_path / "sweep"), "--out", str(tmp_path / "from_logs"), "--markdown"]) == 0
    from_logs = capsys.readouterr().out
    assert "python train.py -m experiment=degradation data=folder trainer.max_epochs=15\n" in from_logs
    records = tmp_path / "docs" / "records"
    assert main(["record", str(tmp_path / "sweep"), "--out", str(records)]) == 0
    assert capsys.readouterr().out.count(" KB)") == 4
    assert sorted(p.name for p in records.iterdir()) == ["0_plain20", "1_plain56", "2_resnet20", "3_resnet56"]
    assert all(sum(f.stat().st_size for f in p.iterdir()) < 20_000 for p in records.iterdir())
    assert main(["degradation", str(records), "--out", str(tmp_path / "from_records"), "--markdown"]) == 0
    from_records = capsys.readouterr().out
    tables = [[line for line in text.splitlines() if line.startswith("|") or "training error" in line]
              for text in (from_logs, from_records)]
    assert tables[0] == tables[1] and len(tables[0]) > 6


def test_record_needs_a_destination_and_runs_with_distinct_names(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["record", str(tmp_path)])
    assert "record needs --out" in capsys.readouterr().err
    fake_run(tmp_path / "a" / "0_resnet20", "resnet20", [.5], [.5])
    fake_run(tmp_path / "b" / "0_resnet20", "resnet20", [.5], [.5])
    assert main(["record", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "r")]) == 1
    assert "two runs share a folder name (0_resnet20)" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_the_budget_note_names_the_machine_each_run_trained_on(tmp_path, capsys):
    degradation_sweep(tmp_path / "sweep")
    for run, cpu in zip(sorted((tmp_path / "sweep").iterdir()), ["AMD EPYC, 2 threads"] * 4):
        metrics = json.loads((run / "metrics.json").read_text())
        (run / "metrics.json").write_text(json.dumps({**metrics, "machine": cpu}))
    assert main(["degradation", str(tmp_path / "sweep"), "--out", str(tmp_path / "out")]) == 0
    assert "cosine. Trained on AMD EPYC, 2 threads." in capsys.readouterr().out
    for run in sorted((tmp_path / "sweep").iterdir())[2:]:  # the residual pair, compiled by the calibration
        metrics = json.loads((run / "metrics.json").read_text())
        (run / "metrics.json").write_text(json.dumps({**metrics, "compile": True}))
    assert main(["degradation", str(tmp_path / "sweep"), "--out", str(tmp_path / "out")]) == 0
    assert ("cosine. Compiled with torch.compile (the calibration measured it faster): resnet20, resnet56; the others "
            "eager, so their fit minutes are not a like-for-like speed comparison. Trained on AMD EPYC, 2 threads."
            in capsys.readouterr().out)
    last = sorted((tmp_path / "sweep").iterdir())[-1] / "metrics.json"
    last.write_text(json.dumps({**json.loads(last.read_text()), "machine": "Intel Xeon, 2 threads"}))
    assert main(["degradation", str(tmp_path / "sweep"), "--out", str(tmp_path / "out")]) == 0
    assert ("Trained on different machines: plain20, plain56, resnet20 on AMD EPYC, 2 threads; resnet56 on "
            "Intel Xeon, 2 threads." in capsys.readouterr().out)
