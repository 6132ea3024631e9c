"""``python -m models`` (``make zoo``): the zoo's complexity tables.

    python -m models                      # one line per model: params, MACs, memory, receptive field
    python -m models resnet20 googlenet   # layer-by-layer tables of the named models
    python -m models --blocks             # every registered block at a small example configuration
    python -m models --markdown           # the zoo table of README.md
"""
from __future__ import annotations

import argparse
import inspect

from .complexity import ComplexityReport, complexity, si
from .registry import create_model, get_block, list_blocks, list_models, model_config


def _rf(r: ComplexityReport) -> str:
    return "-" if r.max_local_rf is None else f"{r.max_local_rf:g}"


def _example_block(name: str):
    """``(block, in_channels)`` at a small configuration, or None when the block needs more
    arguments than the shared signature (an Inception block needs its branch widths)."""
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


def _zoo_rows(names: list[str], size: tuple[int, ...]):
    for name in names:
        cfg = model_config(name)
        yield name, complexity(create_model(name), size), cfg.get("source", ""), cfg.get("paper_params")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models", description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help="models to show layer by layer")
    parser.add_argument("--input-size", nargs=3, type=int, default=[3, 32, 32], metavar=("C", "H", "W"))
    parser.add_argument("--rows", type=int, default=None, metavar="N", help="at most N rows per table")
    parser.add_argument("--blocks", action="store_true", help="summarise the registered blocks")
    parser.add_argument("--markdown", action="store_true", help="print the zoo table as Markdown")
    args = parser.parse_args(argv)
    size = tuple(args.input_size)
    known = list_models()
    unknown = [n for n in args.names if n not in known]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; known models: {', '.join(known)}")
    for name in args.names:
        print(f"== {name}, input {size} ==\n{complexity(create_model(name), size).table(args.rows)}\n")
    if args.names:
        return 0
    if args.blocks:
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
    if args.markdown:
        print(f"| model | params | paper | MACs ({size[1]}x{size[2]}) | receptive field | source |\n"
              "|---|---:|---:|---:|---:|---|")
        for name, r, source, paper in _zoo_rows(known, size):
            paper = "" if paper is None else f"{paper}M"
            print(f"| {name} | {r.total_params / 1e6:.3f}M | {paper} | {si(r.total_macs)} | {_rf(r)} | {source} |")
        return 0
    print(f"{'model':<22} {'params':>12} {'MACs':>9} {'act MB':>8} {'RF':>5}   (input {size}, batch 1)")
    for name, r, _, _ in _zoo_rows(known, size):
        print(f"{name:<22} {r.total_params:>12,} {si(r.total_macs):>9} "
              f"{r.total_activation_bytes / 1e6:>8.2f} {_rf(r):>5}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
