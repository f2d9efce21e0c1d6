"""variant_faults at smoke size: well-formed, and each experiment shows what it is for."""

from __future__ import annotations

import pytest

from bench import variant_faults
from bench.record import BenchResult, Scalar
from tests.bench.support import finite_non_negative, well_formed


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> BenchResult:
    return variant_faults.run("smoke", tmp_path_factory.mktemp("variant_faults"))


def rows_of(result: BenchResult, experiment: str) -> dict[str, dict[str, Scalar]]:
    found = {
        str(row["variant"]): row for row in result.rows if experiment in str(row["experiment"])
    }
    assert set(found) == set(variant_faults.VARIANTS), experiment
    return found


def test_result_is_well_formed(result: BenchResult) -> None:
    well_formed(result, variant_faults.NAME)
    assert len(result.rows) == 4 * len(variant_faults.VARIANTS)
    assert len(result.ratios) == 4


def test_optimized_loses_nothing_at_transient_failures(result: BenchResult) -> None:
    for label in ("SDK defaults", "off (AWS_MAX_ATTEMPTS=1)"):
        rows = rows_of(result, f"SDK retries {label}")
        assert rows["optimized"]["lost in all"] == 0, rows
        assert finite_non_negative(rows["baseline"]["lost in all"])


def test_only_the_optimized_handler_reads_past_the_first_scan_page(result: BenchResult) -> None:
    rows = rows_of(result, "past one scan page")
    assert rows["optimized"]["reach %"] == 100
    assert 0 < rows["baseline"]["reach %"] < 100  # type: ignore[operator]


def test_only_the_optimized_handler_stops_posting_to_stale_ids(result: BenchResult) -> None:
    rows = rows_of(result, "vanished without $disconnect")
    plan = variant_faults.PLANS["smoke"]
    vanished = max(1, int(plan.audience * variant_faults.VANISH_SHARE))
    for row in rows.values():
        assert row["stale ids at start"] == vanished
    assert rows["optimized"]["posts to stale ids"] == vanished
    assert rows["optimized"]["on the last broadcast"] == 0
    assert rows["optimized"]["stale ids left in table"] == 0
    assert rows["baseline"]["posts to stale ids"] == vanished * plan.stale_broadcasts
    assert rows["baseline"]["stale ids left in table"] == vanished
    for row in rows.values():
        assert row["delivered to live"] is True
