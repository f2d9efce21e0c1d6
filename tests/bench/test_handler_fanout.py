"""handler_fanout at smoke size: both variants deliver to everyone, once; the ratio is sane."""

from __future__ import annotations

import math

import pytest

from bench import handler_fanout
from bench.record import BenchResult
from tests.bench.support import finite_non_negative, finite_positive, well_formed


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> BenchResult:
    return handler_fanout.run("smoke", tmp_path_factory.mktemp("handler_fanout"))


def test_result_is_well_formed(result: BenchResult) -> None:
    well_formed(result, handler_fanout.NAME, check_ratios=False)
    plan = handler_fanout.PLANS["smoke"]
    assert len(result.rows) == 2 * len(plan.audiences)
    assert len(result.ratios) == 3 * len(plan.audiences)  # time, CPU per post, Lambda $
    zero_cpu = {row["N"] for row in result.rows if row["Lambda CPU ms/post"] == 0}
    for ratio in result.ratios:
        if "CPU per post" in ratio.name and any(f"N={n}" in ratio.name for n in zero_cpu):
            # A handful of smoke-sized posts can cost less than one 10 ms CPU tick: 0 / 0.
            assert math.isnan(ratio.value) or finite_non_negative(ratio.value), ratio
        else:
            assert finite_positive(ratio.value), ratio


def test_every_recipient_got_the_message_once(result: BenchResult) -> None:
    for row in result.rows:
        assert row["recipients"] == row["N"] - 1  # type: ignore[operator]
        assert row["delivered"] == row["recipients"], row
        assert row["duplicates"] == 0, row
        assert row["within 29 s"] == row["recipients"], row


def test_timings_and_costs_are_sane(result: BenchResult) -> None:
    for row in result.rows:
        for column in ("to last delivery s", "posts/s", "Lambda ms", "Lambda $/M msgs"):
            assert finite_positive(row[column]), (column, row)
        for column in ("Lambda CPU ms/post", "stage CPU ms/post"):
            assert finite_non_negative(row[column]), (column, row)
        assert row["min s"] <= row["to last delivery s"] <= row["max s"]  # type: ignore[operator]
        if row["variant"] == "optimized":
            assert row["scan pages"] == 1


def test_page_boundary_is_computed(result: BenchResult) -> None:
    assert finite_positive(result.figures["items per 1 MB scan page (moto)"])
    assert finite_positive(result.figures["connection item bytes (moto rule)"])
