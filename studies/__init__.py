"""The studies: each one reproduces a claim of the literature with zoo models and stock training.

A study is its experiment config (``configs/experiment/<study>.yaml``) and one module here holding
what it alone needs: callbacks that log what the claim is about (the gates of a highway network, the
checkerboard of a decoder) and the report that turns its runs into a table and a figure
(``convzoo study <study> <sweep folders> --out docs/studies``; the registry and the command are in
``registry``, the helpers the reports share in ``common``). The training core knows no study; a
study plugs in through its config.
"""
from __future__ import annotations

__all__ = ["STUDIES", "TITLES", "report", "report_all", "main"]


def main(argv: list[str] | None = None) -> int:
    """``convzoo study ...``: ``argv`` is what follows ``study`` on the command line."""
    from .registry import main as registry_main

    return registry_main(argv)


def __getattr__(name: str):
    # The registry imports every study's report (matplotlib and all); a training run that only
    # needs a study's callback imports this package without it.
    if name in ("STUDIES", "TITLES", "report", "report_all"):
        from . import registry

        return getattr(registry, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
