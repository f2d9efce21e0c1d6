"""The ledger's rows in Locust's own statistics (``fanbench.locust_ledger``), without a swarm."""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path
from typing import Any

import gevent
import pytest
from locust.stats import RequestStats

from fanbench import locust_ledger
from fanbench.live_ledger import LiveFigures
from fanbench.locust_ledger import (
    COLUMNS,
    DUPLICATE,
    LATE,
    LEDGER,
    LOST,
    ledger_rows,
    set_rows,
    tab_csv,
    tab_rows,
    wait_for_csv_tick,
)

NOW_S = 1_700_000_000.0


def figures(expected: int, lost: int, receipts: int = 0, duplicates: int = 0, late: int = 0,
            final: bool = False) -> LiveFigures:  # fmt: skip
    per_second: list[dict[str, Any]] = [
        {"second": 0, "expected": expected, "delivered": receipts, "lost": lost,
         "p50_ms": 12.5, "p99_ms": None},
        {"second": 1, "expected": 0, "delivered": 0, "lost": lost, "p50_ms": None,
         "p99_ms": None},
    ]  # fmt: skip
    return LiveFigures(
        expected=expected, expected_sent=expected + 7, lost=lost, receipts=receipts,
        duplicates=duplicates, late=late, saturation="saturation: neither side",
        per_second=per_second, final=final, p50_ms=11.0, p99_ms=42.0,
    )  # fmt: skip


def errors_of(stats: RequestStats) -> dict[str, int]:
    return {error.name: error.occurrences for error in stats.errors.values()}


def test_each_rows_failure_ratio_is_one_of_the_reports_rates() -> None:
    rows = {row.name: row for row in ledger_rows(figures(200, 4, 190, 3, 2), drain_s=3.0)}
    assert (rows[LOST].requests, rows[LOST].failures) == (200, 4)
    assert (rows[DUPLICATE].requests, rows[DUPLICATE].failures) == (190, 3)
    assert (rows[LATE].requests, rows[LATE].failures) == (190, 2)
    assert "3 s drain window" in rows[LOST].error


def test_rows_follow_the_ledger_up_and_down() -> None:
    stats = RequestStats()
    stats.log_request("WS", "fanout", 10, 0)
    set_rows(stats, ledger_rows(figures(100, 5, 95), 3.0), NOW_S)
    lost = stats.get(LOST, LEDGER)
    assert (lost.num_requests, lost.num_failures) == (100, 5)
    assert lost.avg_response_time == 0.0  # no response times of its own
    assert errors_of(stats) == {LOST: 5}
    assert (stats.total.num_requests, stats.total.num_failures) == (1, 5)
    # A late receipt turns a counted loss back into a delivery.
    set_rows(stats, ledger_rows(figures(120, 4, 116), 3.0), NOW_S + 1)
    assert (lost.num_requests, lost.num_failures) == (120, 4)
    assert errors_of(stats) == {LOST: 4}
    assert stats.total.num_failures == 4
    set_rows(stats, ledger_rows(figures(130, 0, 130), 3.0), NOW_S + 2)
    assert lost.num_failures == 0
    assert errors_of(stats) == {}
    assert stats.total.num_failures == 0


def test_rows_come_back_after_locust_resets_its_statistics() -> None:
    stats = RequestStats()
    set_rows(stats, ledger_rows(figures(100, 5, 95, 1, 0), 3.0), NOW_S)
    stats.reset_all()
    set_rows(stats, ledger_rows(figures(110, 6, 104, 1, 0), 3.0), NOW_S + 1)
    assert (stats.get(LOST, LEDGER).num_requests, stats.get(LOST, LEDGER).num_failures) == (110, 6)
    assert errors_of(stats) == {LOST: 6, DUPLICATE: 1}
    assert stats.total.num_failures == 7


def test_the_tab_shows_the_whole_test_then_each_second_newest_first() -> None:
    assert tab_rows(None) == []
    rows = tab_rows(figures(200, 4, 190))
    assert rows[0]["second"] == "so far"
    assert (rows[0]["expected"], rows[0]["delivered"], rows[0]["lost"]) == (207, 190, 4)
    assert rows[0]["note"] == "saturation: neither side"
    assert (rows[0]["p50"], rows[0]["p99"]) == (11.0, 42.0)
    assert [row["second"] for row in rows[1:]] == [1, 0]
    assert rows[2]["p50"] == 12.5
    assert tab_rows(figures(200, 4, 190, final=True))[0]["second"] == "final"
    assert all(set(row) == {key for key, _ in COLUMNS} for row in rows)
    table = list(csv.reader(io.StringIO(tab_csv(figures(200, 4, 190)))))
    assert table[0] == [title for _, title in COLUMNS]
    assert table[3][:6] == ["0", "200", "190", "4", "12.5", ""]


def test_the_final_rows_wait_for_the_csv_writers_next_rewrite_not_a_whole_interval(
    tmp_path: Path,
) -> None:
    stats_csv = tmp_path / "locust_stats.csv"
    stats_csv.write_text("Type,Name\n")
    gevent.spawn_later(0.1, stats_csv.write_text, "Type,Name\nledger,lost deliveries\n")
    began = time.monotonic()
    assert wait_for_csv_tick(stats_csv)
    assert time.monotonic() - began < 0.6  # not the writer's whole 1 s interval plus slack


def test_without_a_rewrite_the_wait_ends_after_one_interval_and_some_slack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(locust_ledger, "CSV_STATS_INTERVAL_SEC", 0.2)
    monkeypatch.setattr(locust_ledger, "CSV_TICK_SLACK_S", 0.1)
    stats_csv = tmp_path / "locust_stats.csv"
    stats_csv.write_text("Type,Name\n")
    began = time.monotonic()
    assert not wait_for_csv_tick(stats_csv)
    assert 0.3 <= time.monotonic() - began < 1.0
