"""The text card a run writes to TensorBoard so it explains its own architecture: the composed model
config and a per-stage complexity table (params, MACs, output shape)."""
from __future__ import annotations

import torch
import yaml
from torch import nn

from convzoo.models.complexity import ComplexityReport, si


def stages_of(net: nn.Module) -> list[tuple[str, nn.Module]]:
    """The net's top-level parts in order; a ModuleList (``Net.stages``) counts as one part per entry,
    since it is never called as a whole."""
    parts = []
    for name, child in net.named_children():
        if isinstance(child, nn.ModuleList):
            parts += [(f"{name}.{i}", m) for i, m in enumerate(child)]
        else:
            parts.append((name, child))
    return parts


def stage_table(net: nn.Module, report: ComplexityReport, input_shape: tuple[int, ...]) -> str:
    """Markdown table, one row per part of ``stages_of``: its parameters, its MACs (the report's rows
    under it) and its output shape for one image (one eval-mode forward; parts that hold no weights
    and do no multiply-adds, such as dropout, are left out)."""
    parts = stages_of(net)
    shapes: dict[str, str] = {}

    def remember(name):
        def hook(module, args, out):
            out = out[0] if isinstance(out, (tuple, list)) else out
            if isinstance(out, torch.Tensor):
                shapes.setdefault(name, "x".join(map(str, out.shape[1:])))
        return hook

    hooks = [m.register_forward_hook(remember(name)) for name, m in parts]
    was_training = net.training
    try:
        net.eval()
        device = next(net.parameters(), torch.zeros(())).device
        with torch.no_grad():
            net(torch.zeros(1, *input_shape, device=device))
    finally:
        net.train(was_training)
        for h in hooks:
            h.remove()
    lines = ["| part | params | MACs | output |", "|---|---:|---:|---|"]
    for name, module in parts:
        params = sum(p.numel() for p in module.parameters())
        macs = sum(r.macs for r in report.rows if r.name == name or r.name.startswith(name + "."))
        if params or macs:
            lines.append(f"| {name} | {params:,} | {si(macs)} | {shapes.get(name, '-')} |")
    lines.append(f"| **total** | {report.total_params:,} | {si(report.total_macs)} | |")
    return "\n".join(lines)


def model_card(model_cfg: dict, net: nn.Module, report: ComplexityReport, input_shape: tuple[int, ...]) -> str:
    """Markdown: the model's name and size, its per-stage table, its composed config (as train() built
    it) and the per-layer table of ``report``."""
    name = model_cfg.get("name", type(net).__name__)
    config = yaml.safe_dump(model_cfg, sort_keys=False, default_flow_style=None, width=100)
    return (f"**{name}**: {report.total_params:,} parameters, {si(report.total_macs)} MACs per "
            f"{'x'.join(map(str, input_shape))} image\n\n{stage_table(net, report, input_shape)}\n\n"
            f"Composed model config:\n\n```yaml\n{config}```\n\n"
            f"Per layer:\n\n```\n{report.table()}\n```\n")
