"""at_limits at smoke size: throttled, every receiver gets the message once; near the
deadline, nobody gets it twice and the optimized handler's EMF counts match."""

from __future__ import annotations

import pytest

from bench import at_limits
from bench.record import BenchResult
from tests.bench.support import well_formed


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> BenchResult:
    return at_limits.run("smoke", tmp_path_factory.mktemp("at_limits"))


def test_result_is_well_formed(result: BenchResult) -> None:
    well_formed(result, at_limits.NAME)
    plan = at_limits.PLANS["smoke"]
    assert [(row["experiment"], row["variant"]) for row in result.rows] == [
        (experiment, variant)
        for experiment in ("throttled", "near the deadline")
        for variant in plan.variants
    ]


def test_throttled_every_receiver_gets_it_once(result: BenchResult) -> None:
    for row in result.rows:
        assert row["duplicates (each)"] == "0", row
        if row["experiment"] == "throttled":
            assert row["delivered (each)"] == str(row["receivers"]), row


def test_the_optimized_handlers_counts_say_what_receivers_got(result: BenchResult) -> None:
    assert not result.notes[:-1], result.notes  # only the conditions note


def test_the_stage_configs_carry_the_limits() -> None:
    plan = at_limits.PLANS["default"]
    throttled = at_limits._config("optimized-signed", "throttled", plan)
    assert (throttled.throttle_rps, throttled.throttle_burst) == (300.0, 100.0)
    assert throttled.faults.post_latency_ms == 20.0
    assert throttled.parameters["PostClient"] == "signed"
    late = at_limits._config("sharded", "near the deadline", plan)
    assert late.function_timeout_s == 3.0
    assert late.faults.post_latency_ms == 400.0
    assert late.parameters == {"PostClient": "boto3", "ShardSize": "100"}
    tutorial = at_limits._config("tutorial", "near the deadline", plan)
    assert (tutorial.variant, tutorial.parameters) == ("tutorial", {})  # its template has none
    assert tutorial.function_timeout_s == 3.0
    assert plan.variants[0] == "tutorial"
