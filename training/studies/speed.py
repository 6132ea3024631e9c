"""Training and inference speed of the nets of a study, measured side by side in the precision
their runs trained in (the efficiency study's "measured" columns)."""
from __future__ import annotations

import statistics
import time

import torch

from ..setup import autocast, canonical_precision
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


def measure_speed(nets: dict[str, torch.nn.Module], batch: int = 128, repeats: int = 5, warmup: int = 2,
                  min_seconds: float = MIN_SECONDS, precision: str = "32-true") -> dict[str, tuple[float, float]]:
    """(training, inference) images per second of each net on random CIFAR-sized batches,
    channels_last, under ``precision``'s autocast, as train.py runs them: medians over
    ``repeats`` rounds, the nets taking turns in each round so that load on the machine slows
    all of them alike. In a round each net runs training steps, then inference batches, for at
    least ``min_seconds`` each (one step is a few milliseconds for the small nets: too short to
    time alone)."""
    cpu = torch.device("cpu")
    x = torch.randn(batch, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))
    opts = {n: torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9) for n, net in nets.items()}

    def train_step(n: str) -> None:
        opts[n].zero_grad(set_to_none=True)
        with autocast(precision, cpu):
            loss = torch.nn.functional.cross_entropy(nets[n](x), y)
        loss.backward()
        opts[n].step()

    def timed(step, seconds: float) -> float:
        """Seconds per call of ``step``, over as many calls as fill ``seconds``."""
        calls, start = 0, time.perf_counter()
        while calls == 0 or time.perf_counter() - start < seconds:
            step()
            calls += 1
        return (time.perf_counter() - start) / calls

    times = {n: ([], []) for n in nets}
    for net in nets.values():
        net.to(memory_format=torch.channels_last)
    for i in range(warmup + repeats):
        seconds = min_seconds if i >= warmup else 0.0  # warm-up rounds: one call each
        for n, net in nets.items():
            net.train()
            t = timed(lambda: train_step(n), seconds)
            net.eval()
            with torch.no_grad(), autocast(precision, cpu):
                e = timed(lambda: net(x), seconds)
            if i >= warmup:
                times[n][0].append(t)
                times[n][1].append(e)
    return {n: (batch / statistics.median(t), batch / statistics.median(e)) for n, (t, e) in times.items()}
