"""Train a zoo model: ``python train.py model=resnet20 data=cifar10 optimizer.lr=0.05``.

The same as the ``convzoo-train`` command; ``convzoo.training.train.train(cfg)`` does the work.
"""
from convzoo.training.entry import train_main
from convzoo.training.train import train  # noqa: F401  (train(cfg) from Python: `from train import train`)

if __name__ == "__main__":
    train_main()
