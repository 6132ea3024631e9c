"""Reading checkpoints safely: ``torch.load(weights_only=True)`` only, never arbitrary unpickling."""
from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch


def safe_torch_load(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``: tensors and plain containers only, so a file that
    carries code is refused without running it. Errors name the file and the cause."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if not path.is_file():
        raise ValueError(f"checkpoint {path} is not a file (give a .ckpt file, e.g. <run>/checkpoints/last.ckpt)")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        # weights_only refuses any pickled global that is not a tensor or plain container
        found = re.search(r"Unsupported global: [^\n]*", str(err))
        what = f" ({found.group(0).strip()})" if found else ""
        raise ValueError(f"{path} is not a safe, valid checkpoint: torch.load(weights_only=True) refused it{what}; "
                         "it was not unpickled (a checkpoint should hold only tensors and plain data)") from None
    except Exception as err:  # zip or EOF errors: truncated, corrupt, or not a torch file at all
        first = str(err).splitlines()[0] if str(err) else ""
        raise ValueError(f"{path} is not a valid checkpoint (truncated, corrupt or not written by torch.save): "
                         f"{type(err).__name__}: {first}") from None
