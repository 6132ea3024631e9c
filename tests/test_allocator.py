"""cpu_allocator: the choice is checked, applied once per process, and reported in the run's hparams."""
from __future__ import annotations

import pytest

from convzoo.training import allocator
from convzoo.training.train import train


def test_a_bad_choice_names_the_value_and_the_choices(tmp_path, compose_train, tiny):
    with pytest.raises(ValueError, match=r"cpu_allocator='fast' should be one of retain, default"):
        train(compose_train(*tiny, "cpu_allocator=fast", tmp_path=tmp_path))
    assert not (tmp_path / "checkpoints").exists()  # refused before anything was written


def test_default_changes_nothing_and_retain_holds_for_the_process(monkeypatch):
    monkeypatch.setattr(allocator, "_applied", None)
    assert allocator.set_cpu_allocator("default").choice == "default" and allocator._applied is None
    if allocator._glibc() is None:
        pytest.skip("no glibc here: retain falls back to the C library's allocator")
    held = allocator.set_cpu_allocator("retain")
    assert held.choice == "retain" and held.detail.startswith("mmap threshold ") and held.detail.endswith(" MiB, no trim")
    assert allocator.set_cpu_allocator("default") == held  # glibc cannot go back within a process


def test_the_run_records_its_allocator(tmp_path, compose_train, tiny):
    metrics = train(compose_train(*tiny, "trainer.max_epochs=1", "test=false", tmp_path=tmp_path))
    assert metrics["cpu_allocator"] == ("retain" if allocator._glibc() else "default")
