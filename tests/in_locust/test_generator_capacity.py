"""generator_capacity at smoke size: both users receive and record every frame."""

from __future__ import annotations

import pytest

from bench import generator_capacity
from bench.record import BenchResult
from tests.bench.support import finite_non_negative, finite_positive, well_formed


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> BenchResult:
    return generator_capacity.run("smoke", tmp_path_factory.mktemp("generator_capacity"))


def test_result_is_well_formed(result: BenchResult) -> None:
    # Sustained-rate ratios need a rung passed by both users, which a loaded host may deny
    # even at smoke rates; the burst ratios always exist.
    well_formed(result, generator_capacity.NAME, check_ratios=False)
    for ratio in result.ratios:
        assert ratio.value > 0 or "sustained" in ratio.name, ratio
    assert [row["user"] for row in result.rows] == list(generator_capacity.USERS)
    assert result.tables["ladder"]


def test_every_user_records_every_receipt(result: BenchResult) -> None:
    for row in result.rows:
        assert row["every receipt recorded"] is True, row
        assert row["Locust counted every receipt"] is True, row
        assert finite_non_negative(row["sustained rung, frames/s"]), row
        assert finite_positive(row["burst receipts/s"]), row


def test_ladder_rungs_are_sane(result: BenchResult) -> None:
    for rung in result.tables["ladder"]:
        assert rung["server skipped"] == 0, rung
        assert finite_positive(rung["receipts/s by rung end"]), rung


def test_one_process_holds_its_connections_and_each_receives(result: BenchResult) -> None:
    (held,) = result.tables["connections held"]
    asked = generator_capacity.PLANS["smoke"].hold
    assert held["held (connected)"] == asked, held
    assert held["connect failures"] == 0, held
    assert held["burst received"] == held["burst frames"] == asked * 5, held
    assert held["Locust counted every receipt"] is True, held
    assert finite_positive(held["RSS KB per connection"]), held


def test_holdable_follows_the_open_files_limit() -> None:
    assert generator_capacity.holdable(20_000, 10_000) == 6_496
    assert generator_capacity.holdable(1_000_000, 10_000) == 10_000
    assert generator_capacity.holdable(100, 10_000) == 0
