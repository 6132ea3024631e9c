"""``convzoo export``: a trained network out of its checkpoint, for other people and other runtimes.

    convzoo export logs/train/runs/<run>/checkpoints/last.ckpt --out exported/resnet20
    convzoo export logs/train/runs/<run> --out DIR      # the run's best checkpoint, as the leaderboard picks it
    convzoo export resnet20 --pretrained true --format onnx --out DIR
    convzoo export resnet20 --pretrained true --format onnx --time   # batch norm folded vs not; onnxruntime

``safetensors`` (the default) writes a self-describing folder, the layout timm uses on the Hugging Face
Hub: model.safetensors (weights only, nothing executable), config.json and config.yaml (the composed
architecture, the input normalisation) and README.md (a model card: data, recipe, budget, accuracy,
machine). ``create_model(pretrained=DIR)`` loads it, and so does ``hf-hub:owner/name`` once uploaded.
``onnx`` writes DIR/model.onnx (batch norm folded, dynamic batch) and checks onnxruntime's logits
against PyTorch's.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from convzoo.models.complexity import complexity, si
from convzoo.models.serialization import load_checkpoint, net_from_checkpoint
from convzoo.models.weights_io import CONFIG_JSON, read_folder, write_folder

from .evaluate import best_checkpoint, percent
from .runs import Run, run_dir_of

FORMATS = ("safetensors", "onnx")


def load_source(source: str, pretrained: str | None = None) -> tuple[torch.nn.Module, dict, Run | None]:
    """``(net, hyper_parameters, run or None)`` of a checkpoint file, a run folder (its best checkpoint),
    an exported folder, or a model name (with ``pretrained`` weights, or fresh ones). The hyper_parameters
    are a checkpoint's, or what stands for them: ``model_cfg`` and ``data_info`` (normalisation)."""
    from omegaconf import OmegaConf

    from convzoo.models.registry import create_model, list_models, model_config

    path = Path(source)
    if path.is_dir() and (path / CONFIG_JSON).is_file():
        config, _ = read_folder(path)
        return create_model(pretrained=str(path)), {"model_cfg": config["model_cfg"],
                                                    "data_info": config.get("pretrained_cfg") or {}}, None
    if path.is_dir():
        if not (path / "metrics.json").is_file():
            raise FileNotFoundError(f"{path} is neither a run folder (no metrics.json) nor an exported folder "
                                    f"(no {CONFIG_JSON})")
        ckpt = best_checkpoint({"run_dir": str(path), "best_checkpoint": Run(path).metrics.get("best_checkpoint")})
        if ckpt is None:
            raise FileNotFoundError(f"run {path} has no checkpoint to export")
        path = ckpt
    if path.is_file():
        ckpt = load_checkpoint(path)
        return net_from_checkpoint(ckpt, path), ckpt["hyper_parameters"], Run(run_dir_of(path))
    if source in list_models():
        net = create_model(source, pretrained={"true": True}.get(pretrained, pretrained))
        model_cfg = OmegaConf.to_container(model_config(source), resolve=True)
        return net, {"model_cfg": model_cfg, "data_info": net.pretrained_cfg}, None
    raise FileNotFoundError(f"{source} is not a checkpoint, a run folder, an exported folder or a model name "
                            f"(convzoo list)")


def export_card(net, hparams: dict, run: Run | None, report) -> str:
    """README.md of an exported folder: what the net is, how it was trained, how well, where."""
    from .machine import summary

    name = getattr(net, "name", type(net).__name__)
    metrics = run.metrics if run is not None and (run.path / "metrics.json").is_file() else {}
    cfg = run.cfg if run is not None else {}
    weights = getattr(net, "pretrained_cfg", {}) or {}
    rows = {"architecture": f"{name}: {getattr(net, 'source', '') or '-'}",
            "size": f"{report.total_params:,} parameters, {si(report.total_macs)} MACs per 32x32 image"}
    if metrics:
        optimizer = cfg.get("optimizer") or {}
        rows["data"] = f"{(cfg.get('data') or {}).get('_target_', metrics.get('data'))}, {net.num_classes} classes"
        rows["recipe"] = (f"{metrics.get('optimizer')} lr {optimizer.get('lr', metrics.get('lr'))}, batch "
                          f"{metrics.get('batch_size')}, {metrics.get('precision')}, experiment "
                          f"{cfg.get('experiment') or '-'}, seed {metrics.get('seed')}")
        rows["budget"] = (f"{metrics.get('budget') or 'by epochs'}: {metrics.get('epochs_trained', 0):.1f} epochs, "
                          f"{metrics.get('fit_seconds', 0):.0f} s of training")
        rows["accuracy"] = f"val {percent(metrics.get('val/acc_best'))} (best)" + (
            f", test {percent(metrics['test/acc'])}" if metrics.get("test/acc") is not None else "")
        rows["machine"] = metrics.get("machine") or "not recorded by the run"
        rows["weights from"] = str(run.path)
    elif weights:
        rows["data"] = f"{weights.get('dataset')}, {net.num_classes} classes"
        rows["accuracy"] = f"{weights.get('accuracy')}% top-1 on the test split, as published"
        rows["weights from"] = f"{weights.get('weights')} ({weights.get('source', '-')})"
        rows["licence"] = weights.get("license", "-")
    else:
        rows["weights from"] = "a fresh initialisation (untrained)"
    rows["exported on"] = summary()
    info = hparams.get("data_info") or {}
    table = "\n".join(f"| {k} | {v} |" for k, v in rows.items())
    return (f"# {name}\n\nA convzoo network: the weights in model.safetensors, the architecture in config.json and "
            f"config.yaml.\n\n| | |\n|---|---|\n{table}\n\nInputs: (N, 3, H, W) float images in [0, 1], normalised "
            f"with mean {info.get('mean')} and std {info.get('std')}.\n\n```python\nimport convzoo\n"
            f"net = convzoo.create_model(pretrained=\"<this folder>\")  # or \"hf-hub:<owner>/<name>\"\n```\n")


def export(source: str, out: str | Path, formats=("safetensors",), *, pretrained: str | None = None,
           fuse: bool = True, check: bool = True) -> dict:
    """Write ``source`` (see ``load_source``) into ``out`` in each of ``formats``; returns what was written."""
    net, hparams, run = load_source(source, pretrained)
    net = net.float().eval()
    out = Path(out)
    size = (net.in_chans, 32, 32)
    written: dict = {"model": net.name}
    if "safetensors" in formats:
        info = hparams.get("data_info") or {}
        pretrained_cfg = {"input_size": list(size), "num_classes": net.num_classes, "mean": info.get("mean"),
                          "std": info.get("std"), "class_names": info.get("class_names"),
                          **{k: net.pretrained_cfg[k] for k in ("dataset", "license", "accuracy", "source")
                             if k in net.pretrained_cfg}}
        model_cfg = {**hparams["model_cfg"], "pretrained": None}  # the folder's weights are the net's own
        card = export_card(net, hparams, run, complexity(net, size))
        write_folder(out, net.state_dict(), model_cfg, pretrained_cfg, card)
        written["folder"] = str(out)
    if "onnx" in formats:
        from convzoo.models.onnx_export import check_onnx, export_onnx

        written["onnx"] = str(export_onnx(net, out / "model.onnx", input_shape=size, fuse=fuse))
        if check:
            x = torch.randn(4, *size, generator=torch.Generator().manual_seed(0))
            written["onnx max abs diff"] = check_onnx(out / "model.onnx", net, x)
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="convzoo export", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("source", help="a train.py checkpoint, a run folder, an exported folder or a model name")
    p.add_argument("--out", default=None, help="output folder (default: exported/<source's name>)")
    p.add_argument("--format", nargs="+", choices=FORMATS, default=["safetensors"], dest="formats")
    p.add_argument("--pretrained", default=None, help="with a model name: true, a tag, a file, a folder or hf-hub:...")
    p.add_argument("--no-fuse", dest="fuse", action="store_false", help="ONNX: keep batch norm as its own op")
    p.add_argument("--no-check", dest="check", action="store_false", help="ONNX: skip the onnxruntime check")
    p.add_argument("--time", action="store_true",
                   help="time PyTorch eager with batch norm folded and not, and onnxruntime (after exporting)")
    p.add_argument("--batch", type=int, default=256, help="--time: the throughput batch size")
    p.add_argument("--repeats", type=int, default=7, help="--time: timed repeats (medians)")
    opts = p.parse_args(argv)
    try:
        out = opts.out or str(Path("exported") / Path(opts.source).name.removesuffix(".ckpt"))
        written = export(opts.source, out, opts.formats, pretrained=opts.pretrained, fuse=opts.fuse, check=opts.check)
        for key, value in written.items():
            print(f"{key}: {value:.3g}" if isinstance(value, float) else f"{key}: {value}")
        if opts.time:
            from .export_timing import fused_timing

            print(fused_timing(load_source(opts.source, opts.pretrained)[0], batch=opts.batch, repeats=opts.repeats))
    except (ValueError, FileNotFoundError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0
