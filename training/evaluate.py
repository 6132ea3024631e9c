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
from .runs import Run, read_config, run_dir_of
from .timing import measure_inference
from .metrics import accuracy_report, predict
from .leaderboard import collect, write_leaderboard


def evaluate(cfg: DictConfig) -> dict:
    """``ckpt_path=...``: the evaluation report; ``runs=...``: the leaderboard rows and files."""
    ckpt_path, runs = cfg.get("ckpt_path"), cfg.get("runs")
    if (ckpt_path is None) == (runs is None):
        raise ValueError("give exactly one of ckpt_path=<checkpoint file> (evaluate it) or runs=<folder> "
                         f"(leaderboard of its runs); got ckpt_path={ckpt_path!r} and runs={runs!r}")
    if ckpt_path is not None:
        return evaluate_checkpoint(cfg, ckpt_path)
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

    device = resolve_device(cfg.get("device", "auto"))
    net = net.to(device)
    split = "test" if dm.has_test else "val"
    loader = dm.test_dataloader() if dm.has_test else dm.val_dataloader()
    tta_flip = bool(ckpt["hyper_parameters"].get("tta_flip", False))  # evaluate as validation did
    tta_translate = int(ckpt["hyper_parameters"].get("tta_translate", 0))
    preds, targets, loss_sum = predict(net, loader, device, tta_flip=tta_flip, tta_translate=tta_translate)
    input_shape = (dm.in_chans, *dm.image_size)
    report = complexity(net, input_shape, device=device)

    info = ckpt["hyper_parameters"].get("data_info") or {}
    notes = []
    if split == "val":
        notes.append(f"data {getattr(dm, 'name', type(dm).__name__)} has no test split: accuracy is on the validation split")
    if info.get("class_names") and list(info["class_names"]) != list(dm.class_names):
        notes.append("the data's class names differ from the checkpoint's: check the label order")
    result = {
        "checkpoint": str(Path(ckpt_path).resolve()), "run_dir": str(run_dir), "model": str(ckpt["hyper_parameters"]["model_cfg"].get("name", "model")),
        "data": str(data_cfg.get("_target_", "?")).rsplit(".", 1)[-1], "split": split,
        "class_names": list(dm.class_names), **accuracy_report(preds, targets, loss_sum, dm.class_names),
        "params": report.total_params, "macs": report.total_macs, "device": str(device),
        "epoch": ckpt.get("epoch"), "global_step": ckpt.get("global_step"), "tta_flip": tta_flip,
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
    if (run_dir / "metrics.json").is_file():
        recorded = Run(run_dir).metrics
        result["recorded"] = {k: recorded[k] for k in ("val/acc_best", "test/acc") if k in recorded}

    out_dir = Path(cfg.get("output_dir") or run_dir)
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


def _pct(value) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.2f}%"


def format_report(r: dict) -> str:
    lines = [f"{r['model']} ({r['checkpoint']})",
             f"  {r['split']} accuracy  {_pct(r['acc'])}  ({r['num_samples']} images of {r['data']}; "
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
        lines.append(f"  recorded by training: {key} {_pct(value)}")
    lines += [f"  note: {n}" for n in r["notes"]]
    width = max(len(n) for n in r["class_names"])
    lines.append("  per-class accuracy:")
    lines += [f"    {name.ljust(width)}  {_pct(acc)}" for name, acc in r["per_class_acc"].items()]
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
            ckpt = _best_checkpoint(row)
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


def _best_checkpoint(row: dict) -> Path | None:
    """The best checkpoint named by metrics.json, looked up in the run's own checkpoints/ first (the
    run folder may have been moved or copied since), else last.ckpt."""
    run_dir = Path(row["run_dir"])
    named = Path(row.get("best_checkpoint") or "")
    for candidate in (run_dir / "checkpoints" / named.name, named):  # the run's own copy first
        if named.name and candidate.is_file():
            return candidate
    last = run_dir / "checkpoints" / "last.ckpt"
    return last if last.is_file() else None
