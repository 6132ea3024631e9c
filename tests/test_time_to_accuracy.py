"""benchmarks/time_to_accuracy.py on a tiny synthetic run: records, tables and plot."""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import time_to_accuracy  # noqa: E402

TINY = ["data=synthetic", "data.num_samples=96", "data.val_size=32", "data.test_size=32", "data.batch_size=32",
        "trainer.accelerator=cpu", "trainer.max_epochs=2", "scheduler.warmup_epochs=0", "test=false",
        "module.whitening_images=32"]


def test_runs_seeds_and_reports(tmp_path, capsys):
    out = tmp_path / "tta.png"
    assert time_to_accuracy.main(["--seeds", "0", "--target", "0.01", "--log-dir", str(tmp_path / "logs"),
                                  "--out", str(out), *TINY]) == 0
    text = capsys.readouterr().out
    record = json.loads((tmp_path / "logs" / "seed0.json").read_text())
    assert record["wall_seconds"] > 0 and Path(record["run_dir"]).is_dir()
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| seed | final val acc") and rows[1].startswith("| 0 | 0.")
    assert sum(r.split("|")[1].strip() in ("1", "2") for r in rows[3:]) == 2  # one row per epoch
    assert "target 1% met" in text and out.stat().st_size > 1000
    # report mode reads the same records back without training
    assert time_to_accuracy.main(["--report", str(tmp_path / "logs")]) == 0
    assert "| 0 | 0." in capsys.readouterr().out
