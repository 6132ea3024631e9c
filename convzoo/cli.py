"""The convzoo command: the zoo's utilities under one name.

Training and evaluation are ``convzoo-train`` / ``convzoo-eval`` (Hydra overrides, as train.py and
evaluate.py take them).

    convzoo list [PATTERN]              # model names (shell pattern, e.g. "resnet*"); --blocks: block names;
                                        # --pretrained: registered weights (<model>.<tag>)
    convzoo info resnet20 [NAME ...]    # layer-by-layer complexity: shapes, params, MACs, memory, receptive field
    convzoo zoo [--markdown]            # one line per model (README's zoo table with --markdown)
    convzoo blocks                      # every registered block at a small example configuration
    convzoo study <study> <folders>     # a study's table and figure from its runs (docs/studies)
    convzoo curves <run> [<run> ...]    # learning curves of runs from their TensorBoard events
    convzoo export <ckpt|run|model>     # safetensors folder with config and model card, or ONNX (--format onnx)
"""
from __future__ import annotations

import argparse
import inspect
import sys

from convzoo import __version__


def _rf(report) -> str:
    return "-" if report.max_local_rf is None else f"{report.max_local_rf:g}"


def _example_block(name: str):
    """``(block, in_channels)`` at a small configuration, or None when the block needs more
    arguments than the shared signature (an Inception block needs its branch widths)."""
    from convzoo.models.registry import get_block

    cls = get_block(name)
    required = [p.name for p in inspect.signature(cls).parameters.values()
                if p.default is p.empty and p.name not in ("in_channels", "out_channels")
                and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if required:
        return None
    for cin, cout in ((32, 32), (48, 48), (48, 96)):  # divisible by the usual group counts
        try:
            return cls(cin, cout, stride=1), cin
        except ValueError:
            continue
    return None


def cmd_list(args) -> int:
    from convzoo.models.pretrained import list_pretrained
    from convzoo.models.registry import list_blocks, list_models

    names = (list_blocks if args.blocks else list_pretrained if args.pretrained else list_models)(args.pattern)
    print("\n".join(names))
    return 0 if names else 1


def cmd_info(args) -> int:
    from convzoo.models.complexity import complexity
    from convzoo.models.registry import create_model, list_models

    known = list_models()
    unknown = [n for n in args.names if n not in known]
    if unknown:
        raise ValueError(f"unknown model(s) {', '.join(unknown)}; known models: {', '.join(known)}")
    size = tuple(args.input_size)
    for name in args.names:
        print(f"== {name}, input {size} ==\n{complexity(create_model(name), size).table(args.rows)}\n")
    return 0


def zoo_rows(pattern: str = "*", size=(3, 32, 32)) -> list[tuple]:
    """(name, complexity report, source, paper params in M) of every model matching ``pattern``."""
    from convzoo.models.complexity import complexity
    from convzoo.models.registry import create_model, list_models, model_config

    rows = []
    for name in list_models(pattern):
        cfg = model_config(name)
        rows.append((name, complexity(create_model(name), tuple(size)), cfg.get("source", ""), cfg.get("paper_params")))
    return rows


def zoo_markdown(rows: list[tuple], size=(3, 32, 32), accuracy: dict[str, dict[str, str]] | None = None) -> str:
    """README's zoo table; ``accuracy`` (column heading -> model -> cell text) adds one column per
    heading, in its order, filled for the models that have a cell."""
    from convzoo.models.complexity import si

    columns = accuracy or {}
    extra = "".join(f" {heading} |" for heading in columns)
    lines = [f"| model | params | paper | MACs ({size[1]}x{size[2]}) | receptive field |{extra} source |",
             "|---|---:|---:|---:|---:|" + "---:|" * len(columns) + "---|"]
    for name, r, source, paper in rows:
        paper = "" if paper is None else f"{paper}M"
        acc = "".join(f" {cells.get(name, '')} |" for cells in columns.values())
        lines.append(f"| {name} | {r.total_params / 1e6:.3f}M | {paper} | {si(r.total_macs)} | {_rf(r)} |{acc} {source} |")
    return "\n".join(lines)


def cmd_zoo(args) -> int:
    from convzoo.models.complexity import si

    size = tuple(args.input_size)
    rows = zoo_rows(args.pattern, size)
    if args.markdown:
        print(zoo_markdown(rows, size))
        return 0
    print(f"{'model':<22} {'params':>12} {'MACs':>9} {'act MB':>8} {'RF':>5}   (input {size}, batch 1)")
    for name, r, _, _ in rows:
        print(f"{name:<22} {r.total_params:>12,} {si(r.total_macs):>9} "
              f"{r.total_activation_bytes / 1e6:>8.2f} {_rf(r):>5}")
    return 0


def cmd_blocks(args) -> int:
    from convzoo.models.complexity import complexity, si
    from convzoo.models.registry import get_block, list_blocks

    size = tuple(args.input_size)
    print(f"{'block':<20} {'class':<24} {'params':>9} {'MACs':>9} {'RF':>5}   (input C x {size[1]} x {size[2]})")
    for name in list_blocks():
        example = _example_block(name)
        if example is None:
            print(f"{name:<20} {get_block(name).__name__:<24} (needs block-specific arguments)")
            continue
        block, cin = example
        r = complexity(block, (cin, *size[1:]))
        print(f"{name:<20} {type(block).__name__:<24} {r.total_params:>9,} {si(r.total_macs):>9} {_rf(r):>5}")
    return 0


# Subcommands whose parser lives with their code: ``convzoo study ...`` is that module's ``main``.
FORWARDED = {"study": ("convzoo.studies", "a study's report from its runs (see 'convzoo study -h')"),
             "curves": ("convzoo.training.curves", "learning curves of runs (see 'convzoo curves -h')"),
             "export": ("convzoo.training.export", "weights out: safetensors folder or ONNX (see 'convzoo export -h')")}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="convzoo", description=__doc__.split("\n")[0],
                                epilog="Training: convzoo-train model=resnet20 ...; evaluation: convzoo-eval ckpt_path=...")
    p.add_argument("--version", action="version", version=f"convzoo {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def size_arg(sp):
        sp.add_argument("--input-size", nargs=3, type=int, default=[3, 32, 32], metavar=("C", "H", "W"))

    sp = sub.add_parser("list", help="model names (or block names with --blocks)")
    sp.add_argument("pattern", nargs="?", default="*", help="shell-style pattern, e.g. 'resnet*'")
    sp.add_argument("--blocks", action="store_true", help="list the registered block names instead")
    sp.add_argument("--pretrained", action="store_true", help="list the registered pretrained weights instead")
    sp.set_defaults(run=cmd_list)
    sp = sub.add_parser("info", help="layer-by-layer complexity table of models")
    sp.add_argument("names", nargs="+", metavar="NAME")
    sp.add_argument("--rows", type=int, default=None, metavar="N", help="at most N rows per table")
    size_arg(sp)
    sp.set_defaults(run=cmd_info)
    sp = sub.add_parser("zoo", help="one line per model: params, MACs, activation memory, receptive field")
    sp.add_argument("pattern", nargs="?", default="*", help="shell-style pattern of model names")
    sp.add_argument("--markdown", action="store_true", help="README's zoo table")
    size_arg(sp)
    sp.set_defaults(run=cmd_zoo)
    sp = sub.add_parser("blocks", help="every registered block at a small example configuration")
    size_arg(sp)
    sp.set_defaults(run=cmd_blocks)
    for name, (_, text) in FORWARDED.items():
        sub.add_parser(name, help=text, add_help=False)  # listed in --help; main() hands the rest over
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in FORWARDED:
        import importlib

        return importlib.import_module(FORWARDED[argv[0]][0]).main(argv[1:])
    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
