"""How the efficiency study times its nets: in the precision their runs trained in, for at least
``MIN_SECONDS`` per net, mode and round (``training.timing.measure_training_and_inference``)."""
from __future__ import annotations

import torch

from ..device import canonical_precision
from .runs import Run

MIN_SECONDS = 0.5  # per net, mode and round: a training step of the small nets takes milliseconds


def runs_precision(runs: list[Run]) -> str:
    """The precision the runs trained in (config.yaml holds it resolved), if they all agree and it
    is one the speed measurement knows (fp32, bf16 or fp16 mixed); else 32-true."""
    try:
        found = {canonical_precision(r.cfg.get("trainer", {}).get("precision", "32-true"), torch.device("cpu"))
                 for r in runs}
    except ValueError:
        return "32-true"
    return found.pop() if len(found) == 1 else "32-true"
