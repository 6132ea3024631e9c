"""``train(cfg)``: fit (and test) one model from a composed config; plain Python, so tests and other
programs call it without the CLI. ``train.py`` / ``convzoo-train`` are its Hydra entry point
(``convzoo.training.entry``). Multiruns (``-m model=a,b``) give one run folder and one TensorBoard
run per model.
"""
from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path

import hydra
import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from convzoo.models.complexity import complexity
from .allocator import set_cpu_allocator
from .budget import parse_budget, run_start_time, steps_for_flops, train_flops_per_image
from .budget_planner import make_planner
from .calibrate import choose
from .cli import ensure_writable
from .config_checks import accumulation, check_data_fits, check_resume_checkpoint, validate_config
from .console import board_dir, end_line, honour_trainer_switches, quiet_lightning, start_line
from .instantiate import instantiate_checked, instantiate_list
from .machine import summary as machine_summary
from .metrics import final_eval_cost
from .model_card import model_card
from .progressive import ProgressiveCrop
from .runs import find_last_checkpoint, run_dir_of
from .task import TaskModule

log = logging.getLogger(__name__)


def task_class(cfg: DictConfig) -> type[TaskModule]:
    """The LightningModule class of the run's task (``module._target_``, set by the ``task`` group)."""
    target = cfg.get("module", {}).get("_target_")
    try:
        cls = hydra.utils.get_class(str(target))
    except Exception:
        cls = None
    if not (isinstance(cls, type) and issubclass(cls, TaskModule)):
        raise ValueError(f"module._target_={target!r} should name a TaskModule subclass; choose a task with "
                         "task=classify or task=autoencode")
    return cls


def resume_path(cfg: DictConfig) -> str:
    """``ckpt_path``: a file, or ``last``: the newest ``checkpoints/last.ckpt`` under ``paths.log_dir``
    written by a run of the same model on the same data set."""
    wanted = str(cfg.ckpt_path)
    if wanted != "last":
        if not Path(wanted).is_file():
            raise FileNotFoundError(f"ckpt_path={wanted} does not exist; give a checkpoint file or 'last'")
        return wanted
    return str(find_last_checkpoint(cfg.paths.log_dir, cfg.model.get("name"), cfg.data.get("_target_")))


def train(cfg: DictConfig) -> dict:
    """Fit (and test, when the data has a test split); returns the final metrics."""
    started = run_start_time()
    quiet_lightning()
    allocator = set_cpu_allocator(cfg.get("cpu_allocator", "retain"))  # before the data and the net are allocated
    task = task_class(cfg)
    validate_config(cfg, net_args=task.NET_ARGS)
    budget = parse_budget(cfg.get("budget"))
    ckpt_path = resume_path(cfg) if cfg.get("ckpt_path") else None
    # A resume checks its checkpoint (it loads safely, same model) before anything is read or written.
    resumed = check_resume_checkpoint(cfg, ckpt_path) if ckpt_path is not None else None
    with open_dict(cfg):
        if ckpt_path is not None:  # resume into the same run folder, so the logger run goes on
            cfg.paths.output_dir = str(run_dir_of(ckpt_path))
    out = ensure_writable(cfg.paths.output_dir)
    L.seed_everything(cfg.seed, workers=True)

    datamodule = instantiate_checked(cfg.data, "data")
    check_data_fits(cfg, datamodule, net_args=task.NET_ARGS, checkpoint_hparams=resumed)  # known up front
    # Classes, channels, size and normalisation are known once the data is read: read it now,
    # before the model is built (setup is idempotent; Lightning's own call reuses the splits).
    datamodule.prepare_data()
    datamodule.setup("fit")
    check_data_fits(cfg, datamodule, net_args=task.NET_ARGS, checkpoint_hparams=resumed)  # known from the files
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    model_cfg.update({key: getattr(datamodule, key) for key in task.NET_ARGS})
    # model.pretrained=...: trained weights to start from; a resumed run's come from its checkpoint
    skip = {"pretrained": None} if resumed is not None and model_cfg.get("pretrained") else {}
    net = instantiate_checked(model_cfg, "model", **skip)
    task.check_data(net, datamodule)
    report = complexity(net, (datamodule.in_chans, *datamodule.image_size))
    card = model_card(model_cfg, net, report, (datamodule.in_chans, *datamodule.image_size))  # before compile
    options = {k: v for k, v in OmegaConf.to_container(cfg.module, resolve=True).items() if k != "_target_"}
    choice = choose_setting(cfg, net, model_cfg, datamodule, options, out, budget=budget, macs=report.total_macs)
    setting = choice.setting
    with open_dict(cfg):
        cfg.trainer.precision = setting.precision
    options.update({k: getattr(setting, k) for k in ("channels_last", "compile") if k in options})
    module = task(net, hydra.utils.instantiate(cfg.optimizer), hydra.utils.instantiate(cfg.scheduler),
                  model_cfg=model_cfg, data_info=datamodule_info(datamodule), **options)

    hparams = {**model_hparams(cfg, report), **module.hparams_summary(),
               "channels_last": setting.channels_last, "compile": setting.compile,
               "cpu_allocator": allocator.choice}
    if budget is not None:  # the budget, not max_epochs, sizes the run
        hparams["budget"] = budget.text
        hparams.pop("epochs", None)
    callbacks = honour_trainer_switches(instantiate_list(cfg.get("callbacks"), "callbacks", hparams=hparams, complexity_table=card),
                                        cfg.trainer)
    if budget is not None and cfg.trainer.get("fast_dev_run"):
        log.info("budget=%s not planned: trainer.fast_dev_run runs its own few steps", budget.text)
    elif budget is not None:
        callbacks.append(budget_planner(cfg, budget, report.total_macs, datamodule, choice, started))
    loggers = instantiate_list(cfg.get("logger"), "logger")
    trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    OmegaConf.save(cfg, out / "config.yaml", resolve=True)
    if trainer.is_global_zero:
        log.info(start_line(hparams, datamodule, trainer, out))

    start = time.perf_counter()
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    fit_seconds = time.perf_counter() - start
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    if cfg.get("test") and datamodule.has_test and not trainer.fast_dev_run:
        trainer.test(module, datamodule=datamodule, ckpt_path=best or None, weights_only=True, verbose=False)
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")})
    images = trainer.global_step * int(cfg.data.batch_size) * accumulation(cfg) * trainer.world_size
    flops_scale = math.prod(c.flops_scale(trainer.global_step) for c in trainer.callbacks if isinstance(c, ProgressiveCrop))
    summary = {**hparams, **metrics, "fit_seconds": fit_seconds, "run_seconds": time.monotonic() - started,
               "train_images_seen": images, "train_flops": train_flops_per_image(report.total_macs) * images * flops_scale,
               "epochs_trained": images / max(1, datamodule.num_train or 1),
               "best_checkpoint": best, "machine": machine_summary()}
    if trainer.is_global_zero:
        (out / "metrics.json").write_text(json.dumps(summary, indent=2))
        log.info(end_line(summary, out, board_dir(out)))
    return summary


def budget_planner(cfg: DictConfig, budget, macs: float, datamodule, choice, started: float):
    """The callback that sizes a budgeted run (``training/budget_planner.py``)."""
    if cfg.get("test") and datamodule.has_test:
        datamodule.setup("test")  # its size decides the time the final test takes
    val = max(1, datamodule.num_val or 1)
    tests = 2 * (datamodule.num_test or 0) / val if cfg.get("test") and datamodule.has_test else 0.0
    cap = cfg.trainer.get("max_steps") or -1
    return make_planner(budget, macs_per_image=macs, batch_size=int(cfg.data.batch_size),
                        accumulate=accumulation(cfg), world_size=world_size(cfg),
                        steps_per_epoch=planned_steps_per_epoch(cfg, datamodule),
                        images_per_second=choice.rates.get(choice.setting.label()), started=started,
                        steps_cap=cap if cap > 0 else None, end_passes=tests,
                        final_eval_cost=final_eval_cost(cfg.get("module") or {}),
                        model=str(cfg.model.get("name", "the model")))


def world_size(cfg: DictConfig) -> int:
    """Processes of a distributed run as configured (1 when it cannot be told before the trainer starts)."""
    devices, nodes = cfg.trainer.get("devices", 1), cfg.trainer.get("num_nodes", 1) or 1
    return (devices if isinstance(devices, int) and devices > 0 else 1) * int(nodes)


def planned_steps_per_epoch(cfg: DictConfig, datamodule) -> int:
    batches = len(datamodule.train_dataloader())
    limit = cfg.trainer.get("limit_train_batches")
    if limit is not None:
        batches = min(batches, int(limit) if isinstance(limit, int) else int(batches * float(limit)))
    return max(1, batches // accumulation(cfg))


def planned_steps(cfg: DictConfig, datamodule) -> int:
    """Optimizer steps the run will take, from the trainer's limits and the training batches."""
    trainer = cfg.trainer
    if trainer.get("fast_dev_run"):
        return int(trainer.fast_dev_run)
    epochs, max_steps = trainer.get("max_epochs"), trainer.get("max_steps") or -1
    if epochs is None or epochs < 0:  # bounded by max_steps alone (validate_config saw to that)
        return max(max_steps, 0)
    steps = epochs * planned_steps_per_epoch(cfg, datamodule)
    return min(steps, max_steps) if max_steps > 0 else steps


def choose_setting(cfg: DictConfig, net, model_cfg: dict, datamodule, options: dict, out: Path, *,
                   budget=None, macs: float = 0.0):
    """Precision, memory format and torch.compile for this run (``training/calibrate.py``): what the
    config fixes, and for each ``auto`` the fastest measured here (or cached, or the default for a
    run too short to calibrate). A task without a ``channels_last`` / ``compile`` option trains
    contiguous and uncompiled. Logged, and written to the run folder's calibration.json. A
    distributed run measures nothing (its processes would time each other, and might choose
    differently): it takes a cached choice or the defaults."""
    calib = cfg.get("calibration") or {}
    distributed = "ddp" in str(cfg.trainer.get("strategy", "")) or int(os.environ.get("WORLD_SIZE", "1")) > 1
    on_gpu = str(cfg.trainer.get("accelerator", "auto")) in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    device = torch.device("cuda" if on_gpu else "cpu")
    steps, seconds = planned_steps(cfg, datamodule), None
    if budget is not None and budget.kind == "flop":
        steps = steps_for_flops(budget, macs, int(cfg.data.batch_size) * accumulation(cfg), str(cfg.model.get("name")))
    elif budget is not None:
        seconds = budget.amount
    choice = choose(net, model_cfg, precision=cfg.trainer.get("precision", "auto"),
                    channels_last=options.get("channels_last", False), compile_=options.get("compile", False),
                    batch_size=int(cfg.data.batch_size), input_shape=(datamodule.in_chans, *datamodule.image_size),
                    num_classes=getattr(datamodule, "num_classes", 10), planned_steps=steps, planned_seconds=seconds,
                    device=device, cache=calib.get("cache"), min_steps=calib.get("min_steps", 1000),
                    min_seconds=calib.get("min_seconds", 120.0),
                    compile_min_minutes=calib.get("compile_min_minutes", 15.0),
                    enabled=calib.get("enabled", True) and not distributed)
    (log.info if choice.source == "measured" else log.debug)(choice.describe())  # else the start line says it
    (out / "calibration.json").write_text(json.dumps(choice.to_dict(), indent=2))
    return choice


def datamodule_info(dm) -> dict:
    """What evaluate needs to read a checkpoint back: classes and normalisation."""
    return {"num_classes": dm.num_classes, "class_names": list(dm.class_names), "in_chans": dm.in_chans,
            "image_size": list(dm.image_size), "mean": list(dm.mean), "std": list(dm.std)}


def family_of(name: str | None) -> str | None:
    """The zoo family of a model (models.families), or its own name for a model outside the zoo."""
    from convzoo.models.families import model_family
    from convzoo.models.registry import list_models

    return model_family(name) if name in list_models() else name


def model_hparams(cfg: DictConfig, report) -> dict:
    """The run's key facts for TensorBoard's HParams tab and the leaderboard."""
    return {
        "task": cfg.get("task", "classify"), "model": cfg.model.get("name", "?"), "family": family_of(cfg.model.get("name")),
        "data": cfg.data._target_.rsplit(".", 1)[-1],
        "params": report.total_params, "macs": report.total_macs,
        "batch_size": cfg.data.get("batch_size"), "lr": cfg.optimizer.get("lr"),
        "optimizer": cfg.optimizer._target_.rsplit(".", 1)[-1], "epochs": cfg.trainer.get("max_epochs"),
        "weight_decay": cfg.optimizer.get("weight_decay"),
        "scheduler": str((cfg.get("scheduler") or {}).get("_target_", "none")).rsplit(".", 1)[-1],
        "precision": str(cfg.trainer.get("precision")), "seed": cfg.seed,
    }
