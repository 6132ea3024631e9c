"""``train(cfg)``: fit (and test) one model from a composed config; plain Python, so tests and other
programs call it without the CLI. ``train.py`` / ``convzoo-train`` are its Hydra entry point
(``convzoo.training.entry``). Multiruns (``-m model=a,b``) give one run folder and one TensorBoard
run per model.
"""
from __future__ import annotations

import json
import time

import hydra
import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from convzoo.models.complexity import complexity
from convzoo.training.cli import ensure_writable, run_or_exit
from convzoo.training.evaluation import run_dir_of
from convzoo.training.module import ClassificationModule
from convzoo.training.setup import (check_data_fits, check_resume_checkpoint, find_last_checkpoint,
                            instantiate_checked, instantiate_list, model_hparams, resolve_precision,
                            validate_config)


def train(cfg: DictConfig) -> dict:
    """Fit (and test, when the data has a test split); returns the final metrics."""
    task = cfg.get("task", "classification")
    if task == "autoencoder":  # experiment=checkerboard
        from convzoo.training.autoencoder import train_autoencoder  # imported only when asked for

        return train_autoencoder(cfg)
    if task != "classification":
        raise ValueError(f"task should be classification or autoencoder, got {task!r}")
    validate_config(cfg)
    ckpt_path = find_last_checkpoint(cfg) if cfg.get("ckpt_path") else None
    # A resume checks its checkpoint (it loads safely, same model) before anything is read or written.
    resumed = check_resume_checkpoint(cfg, ckpt_path) if ckpt_path is not None else None
    with open_dict(cfg):
        if ckpt_path is not None:  # resume into the same run folder, so the logger run goes on
            cfg.paths.output_dir = str(run_dir_of(ckpt_path))
        cfg.trainer.precision = resolve_precision(cfg.trainer.get("precision", "auto"),
                                                  cfg.trainer.get("accelerator", "auto"))
    out = ensure_writable(cfg.paths.output_dir)
    L.seed_everything(cfg.seed, workers=True)

    datamodule = instantiate_checked(cfg.data, "data")
    check_data_fits(cfg, datamodule, checkpoint_hparams=resumed)  # classes known up front
    # Classes, channels, size and normalisation are known once the data is read: read it now,
    # before the model is built (setup is idempotent; Lightning's own call reuses the splits).
    datamodule.prepare_data()
    datamodule.setup("fit")
    check_data_fits(cfg, datamodule, checkpoint_hparams=resumed)  # classes known from the files
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    model_cfg.update(num_classes=datamodule.num_classes, in_chans=datamodule.in_chans)
    net = hydra.utils.instantiate(model_cfg)
    report = complexity(net, (datamodule.in_chans, *datamodule.image_size))
    module = ClassificationModule(
        net, hydra.utils.instantiate(cfg.optimizer), hydra.utils.instantiate(cfg.scheduler),
        num_classes=datamodule.num_classes, model_cfg=model_cfg, data_info=datamodule_info(datamodule),
        **cfg.module)

    hparams = model_hparams(cfg, report)
    callbacks = instantiate_list(cfg.get("callbacks"), hparams=hparams, complexity_table=report.table())
    loggers = instantiate_list(cfg.get("logger"))
    trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    OmegaConf.save(cfg, out / "config.yaml", resolve=True)

    start = time.perf_counter()
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    if cfg.get("test") and datamodule.has_test and not trainer.fast_dev_run:
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        trainer.test(module, datamodule=datamodule, ckpt_path=best or None, weights_only=True)
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")})
    summary = {**hparams, **metrics, "fit_seconds": time.perf_counter() - start,
               "best_checkpoint": trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""}
    if trainer.is_global_zero:
        (out / "metrics.json").write_text(json.dumps(summary, indent=2))
    return summary


def datamodule_info(dm) -> dict:
    """What evaluate needs to read a checkpoint back: classes and normalisation."""
    return {"num_classes": dm.num_classes, "class_names": list(dm.class_names), "in_chans": dm.in_chans,
            "image_size": list(dm.image_size), "mean": list(dm.mean), "std": list(dm.std)}
