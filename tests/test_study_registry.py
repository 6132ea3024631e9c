"""Each study lives in one module of convzoo.studies (its callbacks and its report), the registry
lists them, and the training core knows none of them."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from convzoo.studies import checkerboard
from convzoo.studies.registry import STUDIES, TITLES, main, report

ROOT = Path(__file__).resolve().parents[1]
STUDY_WORDS = ("highway", "checkerboard", "degradation")  # names only a study has a reason to say


def test_every_study_module_declares_its_title_and_report():
    assert list(STUDIES) == ["degradation", "highway", "efficiency", "checkerboard", "dilation", "pooling"]
    for name, module in STUDIES.items():
        assert module.__name__ == f"convzoo.studies.{name}" and TITLES[name] == module.TITLE
        assert callable(module.report), name


def test_the_package_exposes_the_registry_lazily():
    import convzoo.studies

    assert convzoo.studies.STUDIES is STUDIES and convzoo.studies.report is report
    with pytest.raises(AttributeError):
        convzoo.studies.no_such_thing  # noqa: B018


@pytest.mark.parametrize("path", sorted((ROOT / "training").rglob("*.py")), ids=lambda p: p.name)
def test_the_training_core_holds_no_study_code(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            names = [("." * node.level) + (node.module or "")] + [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        assert not any("studies" in n.split(".") for n in names), f"{path.name}:{node.lineno} imports a study"
    source = path.read_text().lower()
    assert not [w for w in STUDY_WORDS if w in source], f"{path.name} names a study"


def fake_autoencoder_run(folder: Path, decoder: str, originals: torch.Tensor) -> None:
    """A run folder as experiment=checkerboard leaves it: config.yaml, metrics.json and the figure data."""
    folder.mkdir(parents=True)
    OmegaConf.save({"study": "checkerboard", "task": {"name": "autoencode"}, "model": {"name": f"ae_{decoder}"},
                    "trainer": {"max_epochs": 2}}, folder / "config.yaml")
    (folder / "metrics.json").write_text(json.dumps({
        "decoder": decoder, "val/loss": 0.05, "val/psnr": 25.0, "decoder/checkerboard_score": 0.5,
        "val/checkerboard_rms": 1.5, "params": 12_300, "macs": 4_560_000, "epochs": 2, "fit_seconds": 60.0}))
    pattern = torch.randn(3, 16, 16) * (decoder != "resize")
    checkerboard.save_figure_data(folder, originals, originals.flip(-1), decoder, pattern)


def test_checkerboard_report_reads_the_autoencoder_runs(tmp_path, capsys):
    originals = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    for i, decoder in enumerate(("transposed_k3", "resize")):
        fake_autoencoder_run(tmp_path / "sweep" / f"{i}_ae_{decoder}", decoder, originals)
    text = report("checkerboard", [tmp_path / "sweep"], tmp_path / "out")
    assert text.startswith(f"#### {checkerboard.TITLE}\n\n```bash\npython train.py -m experiment=checkerboard ")
    assert f"convzoo study checkerboard <the sweep folder> --out {tmp_path / 'out'}\n```" in text
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert rows[0].startswith("| `transposed_k3` | 0.0500 | 25.00 | 0.50 | 1.50 | 12.3k | 4.56M | 2 | 1.0")
    assert len(rows) == 2 and "Budget" not in text
    assert f"![checkerboard: reconstructions by decoder]({tmp_path / 'out' / 'checkerboard.png'})" in text
    assert (tmp_path / "out" / "checkerboard.png").stat().st_size > 5000
    # `all` finds it by the study key, next to the classifier studies; a study without runs is an error.
    assert main(["all", str(tmp_path / "sweep"), "--out", str(tmp_path / "all")]) == 0
    assert {p.name for p in (tmp_path / "all").glob("*.md")} == {"checkerboard.md", "dilation.md"}
    capsys.readouterr()
    assert main(["checkerboard", str(tmp_path / "out")]) == 1
    assert "error: no autoencoder runs" in capsys.readouterr().err
    # its records keep the figure's images, so the table and figure come back from them
    assert main(["record", str(tmp_path / "sweep"), "--out", str(tmp_path / "records")]) == 0
    assert {p.name for p in (tmp_path / "records" / "1_ae_resize").iterdir()} >= set(checkerboard.RECORD_FILES)
    again = report("checkerboard", [tmp_path / "records"], tmp_path / "again")
    assert [line for line in again.splitlines() if line.startswith("| `")] == rows
    assert (tmp_path / "again" / "checkerboard.png").stat().st_size > 5000


def test_checkerboard_figure_data_round_trips_without_tensor_files(tmp_path):
    """The figure's data is a lossless PNG and a JSON pattern (records in git hold no tensors), and
    reads back as written: the pixels exactly, the pattern to 0.01 grey levels, cropped to 32 pixels."""
    originals = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    recon = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    pattern = torch.randn(3, 64, 64) * 3
    checkerboard.save_figure_data(tmp_path / "run", originals, recon, "transposed_k4", pattern)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == sorted(checkerboard.RECORD_FILES)
    back = checkerboard.load_figure_data(tmp_path / "run")
    assert torch.equal(back["originals"], originals) and torch.equal(back["reconstructions"], recon)
    assert back["decoder"] == "transposed_k4" and back["pattern"].shape == (3, 32, 32)
    assert (back["pattern"] - pattern[:, :32, :32]).abs().max() <= 0.005 + 1e-6
    with pytest.raises(ValueError, match=r"uint8 tensors of one shape, got torch.float32"):
        checkerboard.save_figure_data(tmp_path / "bad", originals.float(), recon, "resize", pattern)
    (tmp_path / "run" / checkerboard.PATTERN).unlink()
    with pytest.raises(FileNotFoundError, match="no flat_code_pattern.json in .*run: the run did not finish"):
        checkerboard.load_figure_data(tmp_path / "run")


def test_checkerboard_report_refuses_runs_of_other_images(tmp_path):
    for i, decoder in enumerate(("transposed_k3", "resize")):
        fake_autoencoder_run(tmp_path / "s" / f"{i}_ae_{decoder}", decoder,
                             torch.full((2, 3, 32, 32), i, dtype=torch.uint8))
    with pytest.raises(ValueError, match="reconstructed other validation images"):
        report("checkerboard", [tmp_path / "s"], tmp_path / "out")
