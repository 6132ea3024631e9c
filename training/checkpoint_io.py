"""Crash-safe checkpoint files: a kill at any moment leaves the previous checkpoint or the new one.

Lightning's ``TorchCheckpointIO`` writes straight onto the target path, so a process killed
mid-write (OOM killer, a pre-empted job, Ctrl-C twice) leaves a truncated ``last.ckpt`` and
the run cannot be resumed. Here the bytes go to a hidden temporary file in the same folder,
are flushed to disk, and only then renamed onto the target: ``os.replace`` within one file
system is atomic, so readers see either the old file or the complete new one.

Loading is safe too: ``torch.load(weights_only=True)`` unpickles tensors and plain data only,
never code, so a checkpoint from an untrusted source cannot run anything.
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from lightning.fabric.utilities.cloud_io import _is_local_file_protocol
from lightning.pytorch.plugins.io import TorchCheckpointIO

from convzoo.models.serialization import safe_torch_load

log = logging.getLogger(__name__)

# ".last.ckpt.tmp-1234": the temporary file of a write of last.ckpt by process 1234.
_TEMP = re.compile(r"^\.(?P<name>.+)\.tmp-(?P<pid>\d+)$")


def temp_path(path: str | os.PathLike, pid: int | None = None) -> Path:
    """Where a write of ``path`` goes before it is renamed onto ``path``."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid() if pid is None else pid}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def remove_stale_temp_files(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files that killed writes left in ``folder``: those of processes that
    no longer run, and this process's own (its writes are sequential, so any is a leftover)."""
    removed = []
    try:
        entries = list(Path(folder).iterdir())
    except FileNotFoundError:
        return removed
    for entry in entries:
        found = _TEMP.match(entry.name)
        if not found or not entry.is_file():
            continue
        pid = int(found["pid"])
        if pid == os.getpid() or not _alive(pid):
            entry.unlink(missing_ok=True)
            removed.append(entry)
            log.info(f"removed {entry}, left by an interrupted checkpoint write")
    return removed


def _fsync_dir(folder: Path) -> None:
    # The rename is durable only once the directory entry is on disk (POSIX); Windows cannot
    # open a directory, and there the rename is as durable as the file system makes it.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save(obj, path)`` that never leaves a partial file at ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(path.parent)
    tmp = temp_path(path)
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())  # the bytes are on disk before the name points at them
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # an error (not a kill): clean up now; a kill's is cleaned next time
        raise
    _fsync_dir(path.parent)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Saves with write-to-temp + fsync + ``os.replace`` (atomic), loads with ``weights_only=True``.

    Use it as a trainer plugin: ``Trainer(plugins=[AtomicCheckpointIO()])`` (configs/trainer/default.yaml).
    Remote (fsspec) paths fall back to Lightning's own writer, which cannot rename atomically.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Optional[Any] = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__}.save_checkpoint does not take storage_options, "
                            f"got {storage_options!r}")
        if not _is_local_file_protocol(path):
            return super().save_checkpoint(checkpoint, path)
        atomic_torch_save(checkpoint, path)

    def load_checkpoint(self, path, map_location: Optional[Callable] = lambda storage, loc: storage,
                        weights_only: Optional[bool] = None) -> dict[str, Any]:
        if weights_only is False:
            raise ValueError(f"{type(self).__name__} loads checkpoints with weights_only=True only (no arbitrary "
                             f"unpickling); refusing weights_only=False for {path}")
        if not _is_local_file_protocol(path):
            return super().load_checkpoint(path, map_location=map_location, weights_only=True)
        return safe_torch_load(path, map_location=map_location)
