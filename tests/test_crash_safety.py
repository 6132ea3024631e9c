"""Crash safety: atomic checkpoint writes, a SIGKILLed run resumed to the same result as an
uninterrupted one, and ``create_model(checkpoint=...)`` reading weights safely."""
from __future__ import annotations

import inspect
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import open_dict

from convzoo.models.registry import create_model
from convzoo.training.checkpoint_io import AtomicCheckpointIO, temp_path

ROOT = Path(__file__).resolve().parents[1]
# A tiny run: 12 batches of 16 a epoch, half-width ResNet-20, one thread (the runs are compared
# bit for bit, so every run uses the same thread count).
RUN = ["data=synthetic", "data.num_samples=256", "data.val_size=64", "data.test_size=64", "data.batch_size=16",
       "trainer.accelerator=cpu", "trainer.precision=32-true", "trainer.log_every_n_steps=1",
       "callbacks.progress_bar=null", "scheduler.warmup_epochs=0", "trainer.max_epochs=3",
       "trainer.deterministic=true", "model.head.dropout=0.2", "model.width_mult=0.5", "test=false"]
SMALL = {"width_mult": 0.5}  # create_model overrides matching RUN's model


def temp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name)


# ---- atomic save ------------------------------------------------------------------------------

def half_writing_save(fail):
    """A torch.save that writes half of the real bytes to the file, then calls ``fail()``."""
    real = torch.save

    def save(obj, f, *args, **kwargs):
        buf = io.BytesIO()
        real(obj, buf, *args, **kwargs)
        data = buf.getvalue()
        f.write(data[: len(data) // 2])
        f.flush()
        fail()

    return save


def test_failed_save_keeps_the_old_checkpoint_and_leaves_no_temp_file(tmp_path, monkeypatch):
    ckpt_io, path = AtomicCheckpointIO(), tmp_path / "last.ckpt"
    ckpt_io.save_checkpoint({"epoch": 0, "w": torch.zeros(1000)}, path)

    def disk_full():
        raise OSError("no space left on device")

    monkeypatch.setattr(torch, "save", half_writing_save(disk_full))
    with pytest.raises(OSError, match="no space left"):
        ckpt_io.save_checkpoint({"epoch": 1, "w": torch.ones(1000)}, path)
    old = ckpt_io.load_checkpoint(path)
    assert old["epoch"] == 0 and torch.equal(old["w"], torch.zeros(1000))
    assert temp_files(tmp_path) == []
    monkeypatch.undo()
    ckpt_io.save_checkpoint({"epoch": 1, "w": torch.ones(1000)}, path)
    assert ckpt_io.load_checkpoint(path)["epoch"] == 1 and temp_files(tmp_path) == []


# The child runs half_writing_save's own source (pasted in below), so it imports no test module.
KILLED_WRITE = """
import io, os, signal, sys, torch
sys.path[:0] = [{root!r}]
from convzoo.training.checkpoint_io import AtomicCheckpointIO
{half_writing_save}
torch.save = half_writing_save(lambda: os.kill(os.getpid(), signal.SIGKILL))
AtomicCheckpointIO().save_checkpoint({{"epoch": 1, "w": torch.ones(1000)}}, {path!r})
"""


def test_kill_during_a_write_leaves_the_old_checkpoint_and_the_next_save_cleans_up(tmp_path):
    ckpt_io, path = AtomicCheckpointIO(), tmp_path / "last.ckpt"
    ckpt_io.save_checkpoint({"epoch": 0, "w": torch.zeros(1000)}, path)
    script = KILLED_WRITE.format(root=str(ROOT), half_writing_save=inspect.getsource(half_writing_save), path=str(path))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    leftover = temp_files(tmp_path)
    assert len(leftover) == 1 and leftover[0].startswith(".last.ckpt.tmp-")  # the killed write's half file
    assert ckpt_io.load_checkpoint(path)["epoch"] == 0  # the target was never touched
    ckpt_io.save_checkpoint({"epoch": 2, "w": torch.ones(1000)}, tmp_path / "best.ckpt")  # any save there
    assert temp_files(tmp_path) == []
    assert ckpt_io.load_checkpoint(path)["epoch"] == 0 and ckpt_io.load_checkpoint(tmp_path / "best.ckpt")["epoch"] == 2


def test_a_live_process_temp_file_is_left_alone(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        busy = temp_path(tmp_path / "last.ckpt", pid=sleeper.pid)
        busy.write_bytes(b"half")
        AtomicCheckpointIO().save_checkpoint({"epoch": 0}, tmp_path / "last.ckpt")
        assert busy.exists()
    finally:
        sleeper.kill()
        sleeper.wait()


@pytest.mark.parametrize("trainer", ["default", "cpu", "ddp"])
def test_trainer_configs_use_the_atomic_checkpoint_io(trainer, compose_train):
    cfg = compose_train(f"trainer={trainer}", "trainer.accelerator=cpu", "trainer.precision=32-true")
    with open_dict(cfg.trainer):
        cfg.trainer.default_root_dir = None
    built = instantiate(cfg.trainer, logger=False, enable_progress_bar=False)
    assert isinstance(built.strategy.checkpoint_io, AtomicCheckpointIO)


# ---- kill and resume --------------------------------------------------------------------------

class SleepMidEpoch(L.Callback):
    """Test-only: in the second epoch (its first epoch's last.ckpt is written) touch ``marker``
    and sleep, so the test's SIGKILL lands mid-epoch whatever the machine's speed."""

    def __init__(self, marker: str, epoch: int = 1, batch: int = 5) -> None:
        self.marker, self.epoch, self.batch = marker, epoch, batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            Path(self.marker).touch()
            time.sleep(600)


def start_train(args: list[str], cwd: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]),
           "HYDRA_FULL_ERROR": "1", "OMP_NUM_THREADS": "1"}
    with open(log, "w") as out:
        return subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args], cwd=cwd, env=env,
                                stdout=out, stderr=subprocess.STDOUT)


def finish(proc: subprocess.Popen, log: Path, timeout: float = 240) -> None:
    assert proc.wait(timeout=timeout) == 0, log.read_text()[-3000:]


def test_sigkilled_run_resumes_to_the_same_result_as_an_uninterrupted_one(tmp_path):
    # ckpt_path=last takes the newest last.ckpt under paths.log_dir: the reference lives elsewhere.
    logs, ref, marker = tmp_path / "logs", tmp_path / "ref", tmp_path / "mid_epoch_2"
    killed = start_train([*RUN, f"hydra.run.dir={logs / 'killed'}", f"paths.log_dir={logs}",
                          "+callbacks.sleep._target_=test_crash_safety.SleepMidEpoch", f"+callbacks.sleep.marker={marker}"],
                         tmp_path, tmp_path / "killed.log")
    reference = start_train([*RUN, f"hydra.run.dir={ref / 'run'}", f"paths.log_dir={ref}"], tmp_path, tmp_path / "reference.log")
    try:
        deadline = time.monotonic() + 240
        while not marker.exists():
            assert killed.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the run never reached its second epoch"
            time.sleep(0.1)
        last = logs / "killed" / "checkpoints" / "last.ckpt"
        assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == 12  # epoch 1 done
        killed.send_signal(signal.SIGKILL)
        assert killed.wait(timeout=30) == -signal.SIGKILL
    finally:
        if killed.poll() is None:
            killed.kill()
    assert not (logs / "killed" / "metrics.json").exists()

    resumed = start_train([*RUN, "ckpt_path=last", f"hydra.run.dir={tmp_path / 'resumed'}", f"paths.log_dir={logs}"],
                          tmp_path, tmp_path / "resumed.log")
    finish(resumed, tmp_path / "resumed.log")
    finish(reference, tmp_path / "reference.log")

    got = json.loads((logs / "killed" / "metrics.json").read_text())  # the resumed run goes on in its folder
    want = json.loads((ref / "run" / "metrics.json").read_text())
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == 36
    for key in ("val/acc", "val/loss", "train/loss"):
        assert got[key] == want[key], (key, got[key], want[key])  # bit for bit, not approximately
    assert temp_files(logs / "killed" / "checkpoints") == []


# ---- create_model(checkpoint=...) -------------------------------------------------------------

@pytest.fixture(scope="module")
def run_ckpt(tmp_path_factory, compose_train) -> Path:
    """A real checkpoint of a tiny train.py run (two steps, one validation batch)."""
    from train import train

    out = tmp_path_factory.mktemp("tiny_run")
    cfg = compose_train(*RUN, "trainer.max_epochs=1", "+trainer.limit_train_batches=2",
                        "+trainer.limit_val_batches=1", tmp_path=out)
    train(cfg)
    return out / "checkpoints" / "last.ckpt"


def test_create_model_loads_a_run_checkpoint_and_a_plain_state_dict(run_ckpt, tmp_path):
    from convzoo.models.serialization import load_checkpoint, net_from_checkpoint

    net = create_model("resnet20", checkpoint=run_ckpt, **SMALL).eval()
    reference = net_from_checkpoint(load_checkpoint(run_ckpt), run_ckpt)  # evaluate.py's reading of the same file
    fresh = create_model("resnet20", **SMALL)
    for name, value in reference.state_dict().items():
        assert torch.equal(net.state_dict()[name], value), name
    assert any(not torch.equal(fresh.state_dict()[k], v) for k, v in reference.state_dict().items())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(net(x), reference(x))

    plain = tmp_path / "weights.pt"
    torch.save(reference.state_dict(), plain)
    again = create_model("resnet20", checkpoint=str(plain), **SMALL)
    assert all(torch.equal(again.state_dict()[k], v) for k, v in reference.state_dict().items())


def test_create_model_names_a_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.ckpt"):
        create_model("resnet20", checkpoint=tmp_path / "nowhere.ckpt")


def test_create_model_refuses_a_truncated_file(run_ckpt, tmp_path):
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(run_ckpt.read_bytes()[:5000])
    with pytest.raises(ValueError, match=r"broken\.ckpt is not a valid checkpoint"):
        create_model("resnet20", checkpoint=broken, **SMALL)


def test_create_model_says_which_weights_do_not_fit(run_ckpt):
    with pytest.raises(ValueError, match="checkpoint has 10 classes, model resnet20 was built for 100"):
        create_model("resnet20", checkpoint=run_ckpt, num_classes=100, **SMALL)
    with pytest.raises(ValueError, match=r"shapes differ: fc\.weight \(10, 32\) in the checkpoint vs \(10, 64\) in the model"):
        create_model("resnet20", checkpoint=run_ckpt)  # full width: the same keys, other shapes
    with pytest.raises(ValueError, match=r"missing from it: .*; .* not in mobilenet_v2_x0_5: .*another architecture"):
        create_model("mobilenet_v2_x0_5", checkpoint=run_ckpt)


def make_marker(path: str) -> None:
    Path(path).write_text("the checkpoint ran code")


class Payload:
    """Unpickling this calls ``make_marker``: what a malicious checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return make_marker, (self.marker,)


def test_a_malicious_pickle_is_refused_and_never_runs(tmp_path):
    marker, evil = tmp_path / "marker", tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"net.fc.weight": Payload(marker)}}, evil)
    with pytest.raises(ValueError, match=r"evil\.ckpt is not a safe, valid checkpoint.*not unpickled"):
        create_model("resnet20", checkpoint=evil)
    with pytest.raises(ValueError, match=r"evil\.ckpt is not a safe.*not unpickled"):
        AtomicCheckpointIO().load_checkpoint(evil)
    with pytest.raises(ValueError, match="weights_only=False"):
        AtomicCheckpointIO().load_checkpoint(evil, weights_only=False)
    assert not marker.exists()
    torch.load(evil, weights_only=False)  # the payload is real: an unsafe load does run it
    assert marker.exists()
