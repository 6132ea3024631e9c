"""Command-line behaviour shared by train.py and evaluate.py: a user's mistake costs one line,
not a page of traceback."""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Callable, TypeVar

from convzoo.data.cifar import DataUnavailableError

T = TypeVar("T")

# Errors that describe bad input (configs, files, data), raised with a message that names the
# value and what would be valid. Anything else is a bug and keeps its traceback.
USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, PermissionError, FloatingPointError,
               DataUnavailableError)


def run_or_exit(fn: Callable[..., T], *args) -> T:
    """Call ``fn``; on a user error print ``error: <message>`` to stderr and exit with status 1
    (``HYDRA_FULL_ERROR=1`` re-raises, for the full traceback)."""
    try:
        return fn(*args)
    except USER_ERRORS as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"error: {err}", file=sys.stderr, flush=True)
        print("(set HYDRA_FULL_ERROR=1 for the full traceback)", file=sys.stderr, flush=True)
        raise SystemExit(1) from None


def ensure_writable(folder: str | Path) -> Path:
    """Create ``folder`` if needed and prove a file can be written there, so an unwritable output
    folder fails at start rather than at the first checkpoint."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as err:
        raise PermissionError(f"cannot write to the output folder {folder.resolve()} ({err.strerror}); "
                              "set paths.log_dir (or hydra.run.dir) to a writable folder") from None
    return folder
