"""Markdown tables: the one table writer every report, benchmark and leaderboard calls.

A table is a header and rows of cells. Each caller formats its own values (percentages, SI
units, minutes); this module owns the layout: the header line, the rule that sets each
column's alignment (text left, numbers right), the rows, and the empty cell. Two layouts:
compact (``| a | b |`` with a ``---:`` rule, what the README's study sections hold) and padded
(columns space-aligned, readable as plain text in a terminal: the benchmarks' tables).
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

EMPTY = "-"  # a missing value, in every table


def markdown_table(header: Sequence[str], rows: Iterable[Sequence], align: str | None = None, *,
                   pad: bool = False, empty: str = EMPTY) -> str:
    """A markdown table. ``align`` has one letter per column, ``l`` (text) or ``r`` (numbers);
    by default the first column is left-aligned and the others right-aligned. Cells are written
    with ``str``, ``None`` as ``empty``. ``pad`` space-aligns the columns."""
    header = [str(h) for h in header]
    align = align if align is not None else "l" + "r" * (len(header) - 1)
    if len(align) != len(header) or set(align) - {"l", "r"}:
        raise ValueError(f"align should be one of 'l'/'r' per column ({len(header)}), got {align!r}")
    cells = [[empty if c is None else str(c) for c in row] for row in rows]
    for row in cells:
        if len(row) != len(header):
            raise ValueError(f"a row has {len(row)} cells for {len(header)} columns: {row}")
    right = [a == "r" for a in align]
    if not pad:
        def line(values):
            return "| " + " | ".join(values) + " |"

        rule = "|" + "|".join("---:" if r else "---" for r in right) + "|"
    else:
        widths = [max(len(h), *(len(row[i]) for row in cells), 3) for i, h in enumerate(header)]

        def line(values):
            return "| " + " | ".join(v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right)) + " |"

        rule = "|" + "|".join("-" * (w + 1) + ":" if r else "-" * (w + 2) for w, r in zip(widths, right)) + "|"
    return "\n".join([line(header), rule, *map(line, cells)])


def format_number(value) -> str:
    """A number as the benchmark tables print it: thousands separated, about three significant
    digits (three decimals below 1: ratios next to a 0.95 goal need them), ``-`` for None."""
    if isinstance(value, bool) or value is None:
        return EMPTY if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}" if abs(value) >= 1 else f"{value:.3f}"
    return str(value)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def records_table(records: list[dict], fmt=format_number) -> str:
    """A padded markdown table of dicts sharing their keys (the first dict's keys are the
    columns); a column whose values are all numbers (or missing) is right-aligned."""
    if not records:
        return "(no rows)"
    keys = list(records[0])
    align = "".join("r" if all(_is_number(r.get(k)) or r.get(k) is None for r in records) else "l" for k in keys)
    return markdown_table(keys, [[fmt(r.get(k)) for k in keys] for r in records], align, pad=True)
