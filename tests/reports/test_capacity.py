"""The capacity model's arithmetic, limit by limit, and ``fanbench plan``."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest

from fanbench.cli import main
from reports.capacity import (
    AWS,
    LOCAL_STAGE,
    VARIANTS,
    Platform,
    bucket_seconds,
    function_post_rate,
    plan,
    predict,
)
from reports.prices import Prices

OPTIMIZED, BASELINE, SHARDED = VARIANTS["optimized"], VARIANTS["baseline"], VARIANTS["sharded"]
SIMPLE = Platform(
    name="simple",
    cpu_ms_per_post=1.0,
    scan_ms_per_item=0.0,
    post_latency_ms=10.0,
    scan_page_ms=0.0,
    item_bytes=1024,
    memory_mb=1769,
    callback_rps=None,
)
"""Round numbers: 1 ms CPU per post on a full core, 10 ms per post, 1,024 items per scan page."""


def test_a_token_bucket_runs_at_the_offered_rate_until_the_burst_is_spent() -> None:
    assert bucket_seconds(100, 50, None, 0) == 2.0
    assert bucket_seconds(100, 50, 100, 10) == 2.0  # under the rate: never throttled
    # 200/s offered against 100/s with a burst of 100: the bucket empties after 1 s (200 posts).
    assert bucket_seconds(200, 200, 100, 100) == pytest.approx(1.0)
    assert bucket_seconds(500, 200, 100, 100) == pytest.approx(1.0 + 300 / 100)
    assert bucket_seconds(0, 200, 100, 100) == 0.0


def test_one_function_is_bound_by_in_flight_posts_or_by_cpu() -> None:
    rate, limit = function_post_rate(SIMPLE, replace(OPTIMIZED, post_concurrency=1))
    assert rate == pytest.approx(1 / 0.011)
    assert limit == "in-flight posts"
    rate, limit = function_post_rate(SIMPLE, replace(OPTIMIZED, post_concurrency=100))
    assert rate == pytest.approx(1000.0)
    assert limit == "cpu"


def test_less_memory_means_less_cpu() -> None:
    half = replace(SIMPLE, memory_mb=1769 // 2)
    assert half.effective_cores == pytest.approx(0.5, abs=1e-3)
    assert function_post_rate(half, replace(OPTIMIZED, post_concurrency=100))[0] == pytest.approx(
        500, rel=1e-3
    )
    assert replace(SIMPLE, memory_mb=10240).effective_cores == 1.0  # the GIL: one core


def test_a_single_function_broadcast_is_scan_plus_posts_plus_one_round_trip() -> None:
    p = predict(SIMPLE, replace(OPTIMIZED, post_concurrency=100), 1001)
    assert (p.recipients, p.reached, p.invocations) == (1000, 1000, 1)
    assert p.seconds == pytest.approx(1000 / 1000 + 0.010)
    assert p.limit == "cpu"


def test_a_variant_that_reads_one_scan_page_reaches_only_that_page() -> None:
    p = predict(SIMPLE, BASELINE, 5000)
    assert p.reached == SIMPLE.items_per_page - 1 == 1023
    assert predict(SIMPLE, OPTIMIZED, 5000).reached == 4999


def test_past_the_function_timeout_the_rest_is_never_delivered() -> None:
    slow = replace(SIMPLE, post_latency_ms=50.0)  # 999 posts x 51 ms = 51 s, past 29 s
    p = predict(slow, VARIANTS["sequential"], 1000)
    assert p.limit == "timeout"
    assert p.seconds == slow.function_timeout_s
    assert p.reached == int((slow.function_timeout_s - 0.050) / 0.051)


def test_sharded_posts_shards_in_parallel_up_to_the_concurrency() -> None:
    variant = replace(SHARDED, post_concurrency=100, shard_size=100, scan_segments=1)
    wide = replace(SIMPLE, concurrency=1000, invoke_ms=0.0, async_start_ms=0.0)
    p = predict(wide, variant, 1001)
    assert p.invocations == 11
    assert p.seconds == pytest.approx(100 / 1000 + 0.010)  # one shard's worth
    narrow = predict(replace(wide, concurrency=2), variant, 1001)
    assert narrow.limit == "concurrency"
    assert narrow.seconds == pytest.approx(1000 / 2000 + 0.010)


def test_sharded_at_aws_scale_is_bound_by_the_callback_quota() -> None:
    p = predict(AWS, SHARDED, 100_000)
    assert p.limit == "callback quota"
    floor_s = (99_999 - AWS.callback_burst) / AWS.callback_rps  # type: ignore[operator]
    assert floor_s < p.seconds < floor_s + 2.0
    assert p.reached == 99_999


def test_past_a_thousand_shards_the_function_scales_in_ten_second_steps() -> None:
    variant = replace(SHARDED, shard_size=10)
    p = predict(replace(AWS, callback_rps=None, concurrency=5000), variant, 30_001)
    assert p.limit == "scaling"
    assert p.seconds > 20.0


def test_on_a_shared_host_parallel_shards_share_its_cores() -> None:
    p = predict(LOCAL_STAGE, SHARDED, 10_000)
    per_post_s = (LOCAL_STAGE.cpu_ms_per_post + LOCAL_STAGE.host_cpu_ms_per_post) / 1000
    assert p.limit == "host cpu"
    assert p.seconds >= 9_999 * per_post_s / 2


def test_the_tutorial_runs_on_its_own_templates_cpu_share_and_timeout() -> None:
    tutorial = VARIANTS["tutorial"]
    assert (tutorial.memory_mb, tutorial.timeout_s, tutorial.post_concurrency) == (256, 10.0, 50)
    cores = 256 / 1769
    rate, limit = function_post_rate(SIMPLE, tutorial)
    assert limit == "cpu"
    assert rate == pytest.approx(cores / (tutorial.cpu_ms_per_post / 1000))  # type: ignore[operator]
    p = predict(SIMPLE, tutorial, 1001)
    setup_s = tutorial.invocation_cpu_ms / 1000 / cores
    assert p.seconds == pytest.approx(setup_s + 1000 / rate + 0.010)
    assert p.lambda_gb_seconds == pytest.approx(0.25 * p.seconds)
    # The platform's own figures stay the Python handlers'.
    assert predict(SIMPLE, OPTIMIZED, 1001).seconds == pytest.approx(1000 / 1000 + 0.010)


def test_the_tutorial_stops_at_its_ten_second_timeout_on_aws() -> None:
    tutorial = VARIANTS["tutorial"]
    p = predict(AWS, tutorial, 10_000)
    assert (p.limit, p.seconds) == ("timeout", 10.0)
    rate, _ = function_post_rate(AWS, tutorial)
    assert 0 < p.reached < 10.0 * rate < 9_999
    assert predict(AWS, OPTIMIZED, 10_000).reached == 9_999


def test_a_memory_given_on_the_command_line_is_the_tutorials_too(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["plan", "--sizes", "1000", "--variants", "tutorial", "--json"]
    assert main(argv) == 0
    (own,) = json.loads(capsys.readouterr().out)
    assert main([*argv, "--memory-mb", "1769"]) == 0
    (given,) = json.loads(capsys.readouterr().out)
    assert given["seconds"] < own["seconds"] / 5  # a full vCPU instead of 256 MB's share


def test_cost_counts_messages_requests_duration_and_reads() -> None:
    prices = Prices()
    p = predict(SIMPLE, replace(OPTIMIZED, post_concurrency=100), 1001, prices, message_bytes=64)
    expected = (
        1001 * prices.api_gateway_per_million_messages / 1e6
        + 1 * prices.lambda_per_million_requests / 1e6
        + (SIMPLE.memory_mb / 1024) * p.seconds * prices.lambda_per_gb_second
        + math.ceil(1001 * 1024 / 4096) * 0.5 * prices.dynamodb_per_million_read_request_units / 1e6
    )
    assert p.cost_usd == pytest.approx(expected)
    big = predict(SIMPLE, replace(OPTIMIZED, post_concurrency=100), 1001, prices, 40 * 1024)
    assert big.cost_usd - p.cost_usd == pytest.approx(1001 * 1e-6, rel=1e-3)  # two 32 KB units


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_time_never_falls_as_the_room_grows(variant: str) -> None:
    times = [p.seconds for p in plan(AWS, [VARIANTS[variant]], (100, 1_000, 10_000, 100_000))]
    assert times == sorted(times)


def test_plan_prints_every_size_variant_and_assumption(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--sizes", "100,10000", "--post-latency-ms", "25"]) == 0
    out = capsys.readouterr().out
    assert out.count("| 100 |") == len(VARIANTS)
    assert out.count("| 10,000 |") == len(VARIANTS)
    assert "`post_latency_ms` = 25.0: given on the command line" in out
    assert "callback_rps" in out


def test_plan_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--sizes", "1000", "--variants", "optimized", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert (row["variant"], row["audience"], row["reached"]) == ("optimized", 1000, 999)


@pytest.mark.parametrize(
    "argv",
    [
        ["plan", "--sizes", "1"],
        ["plan", "--sizes", "ten"],
        ["plan", "--variants", "fastest"],
        ["plan", "--post-latency-ms", "-1"],
        ["plan", "--shard-size", "0"],
    ],
)
def test_plan_refuses_bad_arguments(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    assert code == 2
    assert capsys.readouterr().err.strip()
