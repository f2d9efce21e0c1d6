"""The master's running ledger (``fanbench.live_ledger``) on synthetic runs with known answers."""

from __future__ import annotations

from pathlib import Path

import pytest

from fanbench import live_ledger
from fanbench.live_ledger import final_figures, live_figures
from fanbench_common.rundir import Run, read_run
from loadtest.live_records import live_run
from reports.analysis import analyze
from tests.reports.synthetic import SECOND, START_NS, build_run

DROPPED = [(0, 2, 1), (3, 8, 4)]
"""Two lost deliveries: sender 0's third message (sent at 3 s) and sender 3's ninth (9 s)."""


@pytest.fixture
def run(tmp_path: Path) -> Run:
    return read_run(build_run(tmp_path / "run", clients=5, messages_per_sender=10, drop=DROPPED))


def as_live(run: Run, now_ns: int) -> Run:
    """The same records as the master holds them while the test runs (no drain deadline)."""
    tables = {
        name: getattr(run, name)
        for name in ("sends", "deliveries", "membership", "errors", "health")
    }
    return live_run(tables, run.scenario, START_NS, now_ns)


def test_a_missing_delivery_is_lost_only_once_its_message_passed_the_horizon(run: Run) -> None:
    live = as_live(run, START_NS + 12 * SECOND)
    nothing_settled = live_figures(live, horizon_ns=START_NS)
    assert (nothing_settled.expected, nothing_settled.lost) == (0, 0)
    assert nothing_settled.expected_sent == 5 * 10 * 4
    # Sends of seqs 0..4 are at 1..5 s: the first loss is settled, the second not yet.
    five_seconds = live_figures(live, horizon_ns=START_NS + 5 * SECOND + SECOND // 2)
    assert (five_seconds.expected, five_seconds.lost) == (5 * 5 * 4, 1)
    everything = live_figures(live, horizon_ns=START_NS + 20 * SECOND)
    assert (everything.expected, everything.lost) == (5 * 10 * 4, 2)
    assert everything.receipts == 5 * 10 * 4 - 2
    assert everything.late == 0  # no drain deadline while the test runs


def test_per_second_rows_count_lost_so_far_by_send_second(run: Run) -> None:
    figures = live_figures(as_live(run, START_NS + 12 * SECOND), START_NS + 20 * SECOND)
    by_second = {row["second"]: row for row in figures.per_second}
    assert by_second[2]["lost"] == 0  # sender 0's seq 2 is sent at 3 s
    assert by_second[3]["lost"] == 1
    assert by_second[9]["lost"] == 2
    assert by_second[3]["expected"] == 5 * 4
    assert by_second[3]["delivered"] == 5 * 4 - 1
    assert by_second[3]["p50_ms"] == pytest.approx(10.0)


def test_the_final_figures_are_the_reports(run: Run) -> None:
    counts = analyze(run).counts
    final = final_figures(run)
    assert final.final
    assert (final.expected, final.lost, final.receipts) == (
        counts.expected, counts.lost, counts.receipts,
    )  # fmt: skip
    assert (final.duplicates, final.late) == (counts.duplicates, counts.late)
    assert final.loss_rate == pytest.approx(counts.loss_rate)
    assert final.saturation.startswith("saturation: ")
    assert final.p50_ms == pytest.approx(10.0)
    assert final.p99_ms == pytest.approx(10.0)


def test_the_table_keeps_the_newest_seconds(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(live_ledger, "PER_SECOND_ROWS", 4)
    figures = final_figures(run)
    assert [row["second"] for row in figures.per_second] == [8, 9, 10, 11]
    assert figures.per_second[-1]["lost"] == 2
