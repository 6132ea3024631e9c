"""The Hydra entry points: ``python train.py`` / ``convzoo-train`` and ``python evaluate.py`` /
``convzoo-eval`` take the same overrides and multiruns. Configs come from the installed package
(``pkg://convzoo.configs``), so the console scripts work from any folder."""
from __future__ import annotations

import hydra
import torch
from omegaconf import DictConfig

from .budget import mark_launch
from .cli import run_or_exit

mark_launch()  # a budget counts from here: the command's start-up is part of its time

CONFIGS = "pkg://convzoo.configs"


@hydra.main(version_base="1.3", config_path=CONFIGS, config_name="train")
def train_main(cfg: DictConfig) -> float | None:
    from .train import train  # imported inside: `--help` stays fast

    torch.set_float32_matmul_precision("high")
    metrics = run_or_exit(train, cfg)
    return metrics.get(cfg.get("optimized_metric", "val/acc_best"))  # for sweepers


@hydra.main(version_base="1.3", config_path=CONFIGS, config_name="evaluate")
def evaluate_main(cfg: DictConfig) -> None:
    from .evaluate import evaluate

    run_or_exit(evaluate, cfg)
