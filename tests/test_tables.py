"""training.tables: the one markdown table writer, in both layouts, and the benchmarks' number format."""
from __future__ import annotations

import pytest

from convzoo.training.tables import format_number, markdown_table, records_table


def test_compact_table_left_text_right_numbers_and_a_dash_for_none():
    text = markdown_table(["model", "params", "acc"], [["a", "1.2k", None], ["b", 3, "90.00%"]])
    assert text.splitlines() == ["| model | params | acc |", "|---|---:|---:|", "| a | 1.2k | - |",
                                 "| b | 3 | 90.00% |"]


def test_alignment_per_column():
    assert markdown_table(["a", "b", "c"], [], "llr").splitlines()[1] == "|---|---|---:|"


def test_padded_table_lines_up_columns():
    text = markdown_table(["name", "n"], [["a", "1,234"], ["bb", "5"]], "lr", pad=True)
    assert text.splitlines() == ["| name |     n |", "|------|------:|", "| a    | 1,234 |", "| bb   |     5 |"]


def test_bad_alignment_or_row_length_is_refused():
    with pytest.raises(ValueError, match="one of 'l'/'r' per column"):
        markdown_table(["a", "b"], [], "l")
    with pytest.raises(ValueError, match="1 cells for 2 columns"):
        markdown_table(["a", "b"], [["x"]])


def test_records_table_aligns_number_columns_right_and_formats_them():
    text = records_table([{"name": "a", "n": 1234, "x": 0.5}, {"name": "bb", "n": 5, "x": None}])
    assert text.splitlines() == ["| name |     n |     x |", "|------|------:|------:|",
                                 "| a    | 1,234 | 0.500 |", "| bb   |     5 |     - |"]
    assert records_table([]) == "(no rows)"
    assert [format_number(v) for v in (0.9621, 2.5, 12.34, 1234.5, 7, True, None, "x")] == [
        "0.962", "2.50", "12.3", "1,234", "7", "True", "-", "x"]
