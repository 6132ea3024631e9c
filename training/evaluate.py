"""Evaluate a checkpoint, or rank a folder of runs.

``python evaluate.py ckpt_path=<run>/checkpoints/<best>.ckpt``: accuracy on the test split (the
validation split when the data has none), per-class accuracy, the confusion matrix, params, MACs
and fp32 inference speed; printed, and written to ``eval.json`` in the run folder.
``python evaluate.py runs=<folder>``: leaderboard.md / .csv / .png of every run under the folder.

``evaluate(cfg)`` is plain Python (tests call it with a composed config); ``evaluate.py`` /
``convzoo-eval`` are its Hydra entry point (``convzoo.training.entry``).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from convzoo.models.complexity import complexity
from convzoo.models.fuse import fuse_conv_bn
from convzoo.models.serialization import load_checkpoint, net_from_checkpoint

from .device import resolve_device
from .eval_data import build_datamodule, resolve_data_config
from .instantiate import instantiate_checked
from .runs import Run, read_config, run_dir_of
from .timing import measure_inference
from .metrics import accuracy_report, final_translate, predict
from .leaderboard import collect, write_leaderboard


def evaluate(cfg: DictConfig) -> dict:
    """``ckpt_path=...``: the evaluation report; ``runs=...``: the leaderboard rows and files;
    ``model=<name> model.pretrained=...``: the report of pretrained weights, no checkpoint."""
    ckpt_path, runs, model = cfg.get("ckpt_path"), cfg.get("runs"), cfg.get("model")
    if [ckpt_path, runs, model].count(None) != 2:
        raise ValueError("give exactly one of ckpt_path=<checkpoint file> (evaluate it), runs=<folder> "
                         "(leaderboard of its runs) or model=<name> model.pretrained=<weights> (evaluate pretrained "
                         f"weights); got ckpt_path={ckpt_path!r}, runs={runs!r} and model="
                         f"{None if model is None else model.get('name')!r}")
    if ckpt_path is not None:
        return evaluate_checkpoint(cfg, ckpt_path)
    if model is not None:
        return evaluate_pretrained(cfg)
    return leaderboard(cfg, runs)


def _command_line_overrides() -> list[str]:
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def evaluate_checkpoint(cfg: DictConfig, ckpt_path: str | Path, *, verbose: bool = True) -> dict:
    ckpt = load_checkpoint(ckpt_path)  # first: a bad file fails before any data is read
    net = net_from_checkpoint(ckpt, ckpt_path)
    run_dir = run_dir_of(ckpt_path)
    run_cfg = read_config(run_dir)
    data_cfg = resolve_data_config(cfg, run_cfg, _command_line_overrides())
    dm = build_datamodule(data_cfg, ckpt, batch_size=cfg.get("batch_size"))
    result = {"checkpoint": str(Path(ckpt_path).resolve()), "run_dir": str(run_dir)}
    result = _evaluate_net(cfg, net, dm, data_cfg, ckpt["hyper_parameters"], result)
    result.update(epoch=ckpt.get("epoch"), global_step=ckpt.get("global_step"))
    if (run_dir / "metrics.json").is_file():
        recorded = Run(run_dir).metrics
        result["recorded"] = {k: recorded[k] for k in ("val/acc_best", "test/acc") if k in recorded}
    return _write(result, Path(cfg.get("output_dir") or run_dir), verbose)


def evaluate_pretrained(cfg: DictConfig, *, verbose: bool = True) -> dict:
    """``model=<name> model.pretrained=<weights>``: the weights on ``cfg.data``, normalised as they
    were trained (their mean and std, unless the data config sets its own)."""
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    if not model_cfg.get("pretrained"):
        raise ValueError(f"model={model_cfg.get('name')} alone would evaluate untrained weights: add "
                         "model.pretrained=true (its default weights), a tag, a file or an exported folder")
    net = instantiate_checked(model_cfg, "model").float().eval()
    weights = net.pretrained_cfg
    hparams = {"model_cfg": model_cfg, "data_info": {"mean": weights.get("mean"), "std": weights.get("std")}}
    dm = build_datamodule(cfg.data, {"hyper_parameters": hparams}, batch_size=cfg.get("batch_size"))
    result = {"checkpoint": None, "weights": weights.get("weights"), "run_dir": None}
    result = _evaluate_net(cfg, net, dm, cfg.data, hparams, result)
    if weights.get("accuracy") is not None:  # what the weights' authors measured, for comparison
        result["published"] = {"acc": weights["accuracy"] / 100, "data": weights.get("dataset")}
    return _write(result, Path(cfg.get("output_dir") or cfg.paths.output_dir), verbose)


def _evaluate_net(cfg: DictConfig, net, dm, data_cfg, hparams: dict, result: dict) -> dict:
    """Accuracy, per-class accuracy, confusion matrix, size and (``benchmark.enabled``) speed of
    ``net`` on ``dm``'s test split (its validation split when it has none)."""
    device = resolve_device(cfg.get("device", "auto"))
    net = net.to(device)
    split = "test" if dm.has_test else "val"
    loader = dm.test_dataloader() if dm.has_test else dm.val_dataloader()
    tta_flip = bool(hparams.get("tta_flip", False))  # evaluate as validation did
    tta_translate = final_translate(hparams)
    preds, targets, loss_sum = predict(net, loader, device, tta_flip=tta_flip, tta_translate=tta_translate)
    input_shape = (dm.in_chans, *dm.image_size)
    report = complexity(net, input_shape, device=device)

    info = hparams.get("data_info") or {}
    notes = []
    if split == "val":
        notes.append(f"data {getattr(dm, 'name', type(dm).__name__)} has no test split: accuracy is on the validation split")
    if info.get("class_names") and list(info["class_names"]) != list(dm.class_names):
        notes.append("the data's class names differ from the checkpoint's: check the label order")
    result = {
        **result, "model": str(hparams["model_cfg"].get("name", "model")),
        "data": str(data_cfg.get("_target_", "?")).rsplit(".", 1)[-1], "split": split,
        "class_names": list(dm.class_names), **accuracy_report(preds, targets, loss_sum, dm.class_names),
        "params": report.total_params, "macs": report.total_macs, "device": str(device), "tta_flip": tta_flip,
        "tta_translate": tta_translate,
        "notes": notes,
    }
    bench = cfg.get("benchmark") or {}
    if bench.get("enabled", True):
        timing = dict(batch_size=bench.get("batch_size", 256), repeats=bench.get("repeats", 5),
                      warmup=bench.get("warmup", 2), latency_iters=bench.get("latency_iters", 10))
        result.update(measure_inference(net, input_shape, device, **timing))
        if bench.get("fused", True):  # batch norm folded into the convs: the same outputs, fewer layers
            fused = fuse_conv_bn(net)
            speed = measure_inference(fused, input_shape, device, **timing)
            result["fused"] = {"pairs": fused.fused_pairs, "images_per_sec": speed["images_per_sec"],
                               "latency_ms": speed["latency_ms"]}
    return result


def _write(result: dict, out_dir: Path, verbose: bool) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    result["output"] = str(out_dir / "eval.json")
    (out_dir / "eval.json").write_text(json.dumps(result, indent=2))
    _save_confusion_figure(result, out_dir / "eval_confusion_matrix.png")
    if verbose:
        print(format_report(result), flush=True)
    return result


def _save_confusion_figure(result: dict, path: Path) -> None:
    import matplotlib.pyplot as plt

    from convzoo.training.reporting import confusion_matrix_figure

    fig = confusion_matrix_figure(torch.tensor(result["confusion_matrix"]), result["class_names"])
    fig.savefig(path)
    plt.close(fig)


def percent(value) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.2f}%"


def format_report(r: dict) -> str:
    lines = [f"{r['model']} ({r['checkpoint'] or r.get('weights')})",
             f"  {r['split']} accuracy  {percent(r['acc'])}  ({r['num_samples']} images of {r['data']}; "
             f"cross-entropy {r['loss']:.4f})",
             f"  params {r['params']:,}   MACs/image {r['macs']:,}"]
    if "images_per_sec" in r:
        lines.append(f"  speed on {r['device']} (fp32, {r['threads']} threads): {r['images_per_sec']:,.0f} images/s "
                     f"at batch {r['throughput_batch_size']}, {r['latency_ms']:.2f} ms at batch 1 "
                     f"(median of {r['repeats']})")
    if "fused" in r:
        f = r["fused"]
        lines.append(f"  batch norm folded into the convs ({f['pairs']} pairs): {f['images_per_sec']:,.0f} images/s, "
                     f"{f['latency_ms']:.2f} ms at batch 1")
    for key, value in (r.get("recorded") or {}).items():
        lines.append(f"  recorded by training: {key} {percent(value)}")
    if r.get("published"):
        lines.append(f"  published by the weights' source: {percent(r['published']['acc'])} on {r['published']['data']}'s test split")
    lines += [f"  note: {n}" for n in r["notes"]]
    width = max(len(n) for n in r["class_names"])
    lines.append("  per-class accuracy:")
    lines += [f"    {name.ljust(width)}  {percent(acc)}" for name, acc in r["per_class_acc"].items()]
    if len(r["class_names"]) <= 20:
        cell = max(len(str(v)) for row in r["confusion_matrix"] for v in row) + 1
        lines.append("  confusion matrix (rows: true class, columns: predicted):")
        lines += [f"    {name.ljust(width)} " + "".join(str(v).rjust(cell) for v in row)
                  for name, row in zip(r["class_names"], r["confusion_matrix"])]
    lines.append(f"  written to {r['output']}")
    return "\n".join(lines)


def leaderboard(cfg: DictConfig, folder: str | Path) -> dict:
    """Rank every run under ``folder`` (from metrics.json); with ``evaluate_checkpoints=true``
    evaluate each run's best checkpoint first (a failing run is reported and skipped)."""
    rows, warnings = collect(folder)
    if not rows:
        raise FileNotFoundError(f"no runs under {folder}: no metrics.json in it or its subfolders")
    if cfg.get("evaluate_checkpoints"):
        for row in rows:
            ckpt = best_checkpoint(row)
            if ckpt is None:
                warnings.append(f"{row['run']}: no checkpoint to evaluate")
                continue
            try:  # each run writes eval.json into its own folder
                evaluate_checkpoint(OmegaConf.merge(cfg, {"output_dir": row["run_dir"]}), ckpt, verbose=False)
            except (OSError, ValueError, RuntimeError) as err:
                warnings.append(f"{row['run']}: evaluating {ckpt} failed: {err}")
        rows, more = collect(folder)
        warnings += more
    paths = write_leaderboard(folder, rows)
    print((Path(paths["md"])).read_text(), flush=True)
    for w in warnings:
        print(f"warning: {w}", flush=True)
    print("written: " + ", ".join(str(p) for p in paths.values()), flush=True)
    return {"rows": rows, "files": {k: str(v) for k, v in paths.items()}, "warnings": warnings}


def best_checkpoint(row: dict) -> Path | None:
    """The best checkpoint named by metrics.json, looked up in the run's own checkpoints/ first (the
    run folder may have been moved or copied since), else last.ckpt."""
    run_dir = Path(row["run_dir"])
    named = Path(row.get("best_checkpoint") or "")
    for candidate in (run_dir / "checkpoints" / named.name, named):  # the run's own copy first
        if named.name and candidate.is_file():
            return candidate
    last = run_dir / "checkpoints" / "last.ckpt"
    return last if last.is_file() else None
