"""The page toolkit both reports use: formats, tables, the skeleton, one look for both pages."""

from __future__ import annotations

from pathlib import Path

import pytest

from reports import page
from reports.compare import write_comparison
from reports.prices import Prices
from reports.render import write_report
from tests.reports.synthetic import build_run


@pytest.mark.parametrize(
    ("value", "text"),
    [(None, "–"), (0.04, "0.0"), (12.345, "12.3"), (1234.56, "1,234.6")],
)
def test_milliseconds(value: float | None, text: str) -> None:
    assert page.ms(value) == text


@pytest.mark.parametrize(
    ("rate", "places", "text"),
    [(0.0, 2, "0.00 %"), (0.0201, 2, "2.01 %"), (0.00001, 2, "0.001 %"),
     (0.05556, 3, "5.556 %"), (0.0000012, 3, "0.00012 %")],
)  # fmt: skip
def test_percent_keeps_tiny_rates_visible(rate: float, places: int, text: str) -> None:
    assert page.percent(rate, places) == text


def test_signed_factor_and_usd() -> None:
    assert (page.signed(-2.01), page.signed(0.001), page.signed(1.5)) == ("−2.01", "0.00", "+1.50")
    assert (page.factor(0.954), page.factor(12.34), page.factor(140.2)) == ("0.95", "12.3", "140")
    assert (page.usd(None), page.usd(0.0123), page.usd(12.5)) == ("–", "$0.0123", "$12.50")


def test_tables_escape_and_align() -> None:
    html = page.table([("<b>", "12", "words"), ("x", "−1", "$3")], ("name", "n", "w"))
    assert html.startswith("<table><tr><th>name</th><th>n</th><th>w</th></tr>")
    assert "<th>&lt;b&gt;</th>" in html
    assert '<td class="n">12</td><td>words</td>' in html
    assert '<td class="n">−1</td><td class="n">$3</td>' in html
    assert page.markdown_table([("a|b", "1")], ("k", "v")) == ["| k | v |", "|---|---|",
                                                              "| a\\|b | 1 |"]  # fmt: skip


def test_report_and_comparison_are_built_on_the_same_page(tmp_path: Path) -> None:
    a = build_run(tmp_path / "a", variant="baseline")
    b = build_run(tmp_path / "b", variant="optimized", latency_ms=5.0)
    pages = [
        write_report(a, Prices()).read_text(),
        write_comparison([a, b], tmp_path / "out", force=False).read_text(),
    ]
    for html in pages:
        assert html.startswith('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">')
        assert f"<style>{page.CSS}</style>" in html
        assert '<figure><img alt="' in html
        assert html.endswith("</body></html>\n")
