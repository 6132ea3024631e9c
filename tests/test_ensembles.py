"""benchmarks/ensembles.py on tiny real runs: a member's accuracy is its run's own last validation,
a pair's gain is its ensemble against its members on the images both held out, and runs whose
data differ, or too few runs, are refused in words."""
from __future__ import annotations

import pytest

from benchmarks.ensembles import main as ensembles_main
from convzoo.training.train import train


@pytest.fixture(scope="module")
def runs(compose_train, tiny, tmp_path_factory):
    """Two runs holding out the same images (data.seed=0) from different initialisations, and one on
    other synthetic images (data.seed=1 draws other images and labels)."""
    folders = {}
    for name, seeds in (("a", ("seed=0",)), ("b", ("seed=1", "data.seed=0")), ("other", ("seed=0", "data.seed=1"))):
        out = tmp_path_factory.mktemp(name)
        metrics = train(compose_train(*tiny, *seeds, "trainer.max_epochs=2", "test=false", tmp_path=out))
        folders[name] = (out, metrics)
    return folders


def test_members_pairs_and_the_ensemble_of_one_split(runs, tmp_path):
    (a, metrics_a), (b, metrics_b) = runs["a"], runs["b"]
    result = ensembles_main([str(a), str(b), "--out", str(tmp_path / "ens.md")])
    # each member as its run's last validation measured it (same checkpoint, split and evaluation)
    recorded = [metrics_a["val/acc"], metrics_b["val/acc"]]
    assert [s["acc"] for s in result["singles"]] == pytest.approx(recorded, abs=1e-6)
    assert [s["seed"] for s in result["singles"]] == [0, 1]
    assert [s["held-out images"] for s in result["singles"]] == [64, 64]
    (pair,) = result["pairs"]
    assert pair["shared images"] == 64  # one data seed: the same held-out images
    assert pair["gain"] == pytest.approx(pair["ensemble acc"] - (pair["acc a"] + pair["acc b"]) / 2)
    assert result["all"] == pytest.approx(pair["ensemble acc"])  # two runs: the pair is the whole ensemble
    assert "mean gain" in (tmp_path / "ens.md").read_text()


def test_runs_of_other_images_are_refused(runs):
    with pytest.raises(ValueError, match="other labels to the same held-out image indices"):
        ensembles_main([str(runs["a"][0]), str(runs["other"][0])])


def test_fewer_than_two_runs_exit_with_a_message(runs, tmp_path, capsys):
    with pytest.raises(SystemExit):
        ensembles_main([str(runs["a"][0])])
    assert "an ensemble needs 2 or more" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        ensembles_main([str(tmp_path)])
    assert "found 0 classifier run(s)" in capsys.readouterr().err
