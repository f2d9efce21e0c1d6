"""sharded_fanout at smoke size: both variants deliver to everyone, once; shards really ran."""

from __future__ import annotations

import pytest

from bench import sharded_fanout
from bench.record import BenchResult
from tests.bench.support import finite_non_negative, finite_positive, well_formed


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> BenchResult:
    return sharded_fanout.run("smoke", tmp_path_factory.mktemp("sharded_fanout"))


def test_result_is_well_formed(result: BenchResult) -> None:
    well_formed(result, sharded_fanout.NAME)
    plan = sharded_fanout.PLANS["smoke"]
    assert [row["variant"] for row in result.rows] == list(sharded_fanout.VARIANTS)
    assert len(result.tables["shard-size sweep"]) == len(plan.shard_sizes)
    assert len(result.ratios) == len(plan.shard_sizes) + 1


def test_every_recipient_got_every_message_once(result: BenchResult) -> None:
    for row in [*result.rows, *result.tables["shard-size sweep"]]:
        assert row["recipients"] == row["N"] - 1  # type: ignore[operator]
        assert row["delivered"] == row["recipients"], row
        assert row["duplicates"] == 0, row
        assert row["async retries"] == 0, row
    assert not result.notes[:-1], result.notes  # only the conditions note


def test_the_sharded_sends_were_fanned_out(result: BenchResult) -> None:
    plan = sharded_fanout.PLANS["smoke"]
    optimized, sharded = result.rows
    assert optimized["fan-outs"] == 0
    assert sharded["fan-outs"] == sharded_fanout.expected_shards(plan.audience - 1, plan.shard_size)
    for row in result.tables["shard-size sweep"]:
        shard = row["shard size"]
        assert isinstance(shard, int)
        assert row["fan-outs"] == sharded_fanout.expected_shards(plan.sweep_audience - 1, shard)
        assert row["fan-outs"] >= 2


def test_timings_and_costs_are_sane(result: BenchResult) -> None:
    for row in [*result.rows, *result.tables["shard-size sweep"]]:
        for column in ("to last delivery s", "posts/s", "busy cores"):
            assert finite_positive(row[column]), (column, row)
        for column in ("Lambda CPU ms/post", "stage CPU ms/post", "client CPU ms/post"):
            assert finite_non_negative(row[column]), (column, row)
        assert row["min s"] <= row["to last delivery s"] <= row["max s"]  # type: ignore[operator]


def test_expected_shards() -> None:
    assert sharded_fanout.expected_shards(500, 500) == 0  # posted by sendmessage itself
    assert sharded_fanout.expected_shards(501, 500) == 2
    assert sharded_fanout.expected_shards(9_999, 500) == 20
    assert sharded_fanout._phase_order(2) == ["optimized", "sharded", "sharded", "optimized"]
