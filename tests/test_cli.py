"""The convzoo command: list, info, zoo, blocks, and the subcommands it hands to their own modules."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from torch import nn

from convzoo import __version__
from convzoo.cli import main
from convzoo.models import registry
from convzoo.models.complexity import complexity
from convzoo.models.layers.conv import ConvNormAct


def test_list_models_and_blocks(capsys):
    assert main(["list", "resnet*"]) == 0
    assert capsys.readouterr().out.split() == registry.list_models("resnet*")
    assert main(["list", "--blocks"]) == 0
    assert capsys.readouterr().out.split() == registry.list_blocks()
    assert main(["list", "nothing*"]) == 1  # a pattern that matches nothing is a failed lookup
    assert main(["list", "--pretrained", "resnet2*"]) == 0
    assert capsys.readouterr().out.split() == ["resnet20.cifar10.akamaster"]


def test_info_prints_a_table_per_named_model(capsys):
    assert main(["info", "resnet20", "--input-size", "3", "16", "16", "--rows", "2"]) == 0
    out = capsys.readouterr().out
    assert "== resnet20, input (3, 16, 16)" in out and "more rows" in out and "total" in out
    params = sum(p.numel() for p in registry.create_model("resnet20").parameters())
    assert f"{params:,}" in out


def test_info_names_an_unknown_model(capsys):
    assert main(["info", "resnet21"]) == 1
    assert "error: unknown model(s) resnet21; known models:" in capsys.readouterr().err


def test_zoo_summarises_every_model(capsys):
    assert main(["zoo"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["model", "params", "MACs"]
    assert [line.split()[0] for line in lines[1:]] == registry.list_models()
    row = next(line.split() for line in lines if line.startswith("resnet20 "))
    report = complexity(registry.create_model("resnet20"))
    assert row[1] == f"{report.total_params:,}" and row[-1] == f"{report.max_local_rf:g}"


def test_zoo_markdown_table_has_a_row_per_model(capsys):
    assert main(["zoo", "--markdown"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")][1:]
    assert [r.split("|")[1].strip() for r in rows] == registry.list_models()


def test_blocks_summary(monkeypatch, capsys):
    class NeedsExtra(nn.Module):
        def __init__(self, in_channels, out_channels, width, *, stride=1):
            super().__init__()

    monkeypatch.setitem(registry._BLOCKS, "zz_needs_extra", NeedsExtra)
    assert main(["blocks", "--input-size", "3", "16", "16"]) == 0
    out = capsys.readouterr().out
    conv = next(line for line in out.splitlines() if line.startswith("conv "))
    assert conv.split()[2] == f"{sum(p.numel() for p in ConvNormAct(32, 32).parameters()):,}"
    assert "zz_needs_extra" in out and "needs block-specific arguments" in out


@pytest.mark.parametrize("command, prog", [("study", "convzoo study"), ("curves", "convzoo curves"),
                                           ("export", "convzoo export")])
def test_forwarded_commands_keep_their_own_help(command, prog, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0 and capsys.readouterr().out.startswith(f"usage: {prog}")


def test_console_scripts_and_module_entry_point():
    bindir = Path(sys.executable).parent
    version = subprocess.run([sys.executable, "-m", "convzoo", "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.strip() == f"convzoo {__version__}"
    for script, task in (("convzoo-train", "train"), ("convzoo-eval", "evaluate")):
        # From a folder outside the repository: the configs come from the installed package.
        out = subprocess.run([str(bindir / script), "--help"], capture_output=True, text=True, cwd=bindir)
        assert out.returncode == 0, out.stderr
        assert out.stdout.startswith(f"{task} is powered by Hydra") and "\nmodel: allconv," in out.stdout
