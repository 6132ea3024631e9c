"""Evaluate a checkpoint (``python evaluate.py ckpt_path=<file>``) or rank a folder of runs
(``python evaluate.py runs=<folder>``). The same as the ``convzoo-eval`` command;
``convzoo.training.evaluate.evaluate(cfg)`` does the work.
"""
from convzoo.training.entry import evaluate_main
from convzoo.training.evaluate import evaluate  # noqa: F401

if __name__ == "__main__":
    evaluate_main()
