"""Inference speed with batch norm folded into the convolutions (``convzoo.models.fuse_conv_bn``)
against the same net unfused, side by side in one run: throughput at a batch and latency at batch 1.

    python benchmarks/fused_inference.py                                   # four models, fp32
    python benchmarks/fused_inference.py --models resnet20,mobilenet_v2_x1_0 --repeats 7

The two forms of each net take turns (unfused, fused, unfused), so machine noise hits both; the
table gives both unfused measurements and the ratio against their mean. It asserts nothing.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

from convzoo.models import create_model, fuse_conv_bn  # noqa: E402
from convzoo.training.machine import summary  # noqa: E402
from convzoo.training.tables import records_table  # noqa: E402
from convzoo.training.timing import measure_inference  # noqa: E402

MODELS = "resnet20,mobilenet_v2_x1_0,shufflenet_v2_x1_0,eff_separable"


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(prog="python benchmarks/fused_inference.py", description=__doc__.split("\n")[0])
    p.add_argument("--models", default=MODELS, help="comma-separated model names")
    p.add_argument("--batch", type=int, default=256, help="batch size of the throughput measurement")
    p.add_argument("--repeats", type=int, default=7, help="timed repeats per measurement (median)")
    p.add_argument("--latency-iters", type=int, default=20, help="batch-1 passes per latency repeat")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True)
    opts = p.parse_args(argv)
    device, rows = torch.device("cpu"), []
    timing = dict(batch_size=opts.batch, repeats=opts.repeats, latency_iters=opts.latency_iters)
    for name in opts.models.split(","):
        net = create_model(name).eval()
        if opts.channels_last:
            net = net.to(memory_format=torch.channels_last)
        fused = fuse_conv_bn(net)
        before = measure_inference(net, (3, 32, 32), device, **timing)
        after = measure_inference(fused, (3, 32, 32), device, **timing)
        again = measure_inference(net, (3, 32, 32), device, **timing)
        ips = (before["images_per_sec"] + again["images_per_sec"]) / 2
        lat = (before["latency_ms"] + again["latency_ms"]) / 2
        rows.append({"model": name, "folded pairs": fused.fused_pairs,
                     "img/s unfused": f"{before['images_per_sec']:,.0f} / {again['images_per_sec']:,.0f}",
                     "img/s fused": after["images_per_sec"], "throughput ratio": after["images_per_sec"] / ips,
                     "ms bs1 unfused": f"{before['latency_ms']:.2f} / {again['latency_ms']:.2f}",
                     "ms bs1 fused": after["latency_ms"], "latency ratio": after["latency_ms"] / lat})
    layout = "channels_last" if opts.channels_last else "contiguous"
    print(f"{summary()}; fp32, {layout}, batch {opts.batch}, medians of {opts.repeats}\n")
    print(records_table(rows))
    return rows


if __name__ == "__main__":
    main()
