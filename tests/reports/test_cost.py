"""The cost model and the price table, against hand-computed figures."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fanbench_common.rundir import Run, read_run
from loadtest.stage.template import load_template
from reports.cost import (
    DEFAULT_MEMORY_MB,
    ITEM_BYTES,
    SENDMESSAGE_WRAPPER_BYTES,
    api_gateway_messages,
    estimate,
    metering_increments,
    scan_read_units,
    send_index_of,
)
from reports.prices import (
    LAMBDA_ARM64_PER_GB_SECOND,
    Prices,
    Usage,
    lambda_usd_per_million_sends,
    priced,
)
from tests.repo import REPO_ROOT as PROJECT_ROOT
from tests.reports.synthetic import SECOND, START_NS, build_run

KB = 1024
ARM64 = 0.0000133334


def synthetic(tmp_path: Path, **kwargs: Any) -> Run:
    return read_run(build_run(tmp_path / "run", **kwargs))


def test_metering_counts_32_kb_increments_and_at_least_one() -> None:
    sizes = np.array([0, 1, 32 * KB, 32 * KB + 1, 40 * KB, 64 * KB, 128 * KB])
    assert metering_increments(sizes).tolist() == [1, 1, 1, 2, 2, 2, 4]


def test_scan_read_units_round_each_request_up_to_4_kb_at_half_a_unit() -> None:
    assert ITEM_BYTES == 100
    # 0 items still costs the minimum; 40 items = 4,000 B = one 4 KB block; 41 = two.
    assert scan_read_units(np.array([0, 40, 41])).tolist() == [0.5, 0.5, 1.0]
    # 20,000 items = 2,000,000 B: one full 1 MB page (256 blocks) + 951,424 B (233 blocks).
    assert scan_read_units(np.array([20_000])).tolist() == [(256 + 233) * 0.5]
    # The baseline reads only the first page.
    assert scan_read_units(np.array([20_000]), paginated=False).tolist() == [256 * 0.5]


def test_ten_sends_to_four_recipients_hand_computed(tmp_path: Path) -> None:
    # 5 clients x 2 messages = 10 sends of 64 B, each to the 4 others after 10 ms.
    run = synthetic(tmp_path, clients=5, messages_per_sender=2, latency_ms=10.0)
    cost = estimate(run, Prices())
    usage = cost["usage"]
    assert usage["api_gateway_messages"] == {"in": 10, "out": 40, "total": 50}
    # 5 connections open from the start to end_ns = start + 4 s: 20 s = 1/3 minute.
    assert usage["connection_minutes"] == pytest.approx(20 / 60)
    send = usage["lambda"]["SendMessageFunction"]
    assert (send["requests"], send["requests_from"]) == (10, "records")
    # No stage timing: the fan-out completion (10 ms) stands in; 10 x 10 ms x 1 GB.
    assert send["billed_ms_mean"] == 10.0
    assert send["gb_seconds"] == pytest.approx(0.1)
    connect = usage["lambda"]["ConnectFunction"]
    assert (connect["requests"], connect["billed_ms_mean"], connect["memory_mb"]) == (5, 20.0, 256)
    assert usage["lambda_requests"] == 20  # 5 connects + 5 disconnects + 10 sends
    assert usage["lambda_gb_seconds"] == pytest.approx(0.1 + 2 * 5 * 0.020 * 0.25)
    # Per send: consistent GetItem 1 + Scan of 5 items (500 B -> one 4 KB block) 0.5.
    assert usage["dynamodb_read_units"] == 10 * 1.5
    assert usage["dynamodb_write_units"] == 10.0  # 5 puts + 5 deletes

    lines = cost["breakdown_usd"]
    assert lines["api_gateway_messages"] == pytest.approx(50e-6)
    assert lines["api_gateway_connection_minutes"] == pytest.approx(20 / 60 * 0.25e-6)
    assert lines["sendmessage_requests"] == pytest.approx(10 * 0.2e-6)
    assert lines["sendmessage_compute"] == pytest.approx(0.1 * ARM64)
    assert lines["connection_lambda_requests"] == pytest.approx(10 * 0.2e-6)
    assert lines["connection_lambda_compute"] == pytest.approx(0.05 * ARM64)
    assert lines["dynamodb_reads"] == pytest.approx(15 * 0.125e-6)
    assert lines["dynamodb_writes"] == pytest.approx(10 * 0.625e-6)
    assert cost["run_total_usd"] == pytest.approx(sum(lines.values()))

    per_message = (50e-6 + 10 * 0.2e-6 + 0.1 * ARM64 + 15 * 0.125e-6) / 10
    assert cost["usd_per_million_messages"] == pytest.approx(per_message * 1e6)
    # 10 sends in the 3 s sending window; 5 connections open throughout.
    assert cost["send_rate_per_s"] == pytest.approx(10 / 3)
    assert cost["mean_connections"] == pytest.approx(5.0)
    assert cost["usd_per_hour"] == pytest.approx(per_message * 10 / 3 * 3600 + 5 * 60 * 0.25e-6)
    session = 2 * 0.2e-6 + 2 * 0.020 * 0.25 * ARM64 + 2 * 0.625e-6
    assert cost["usd_per_connection_session"] == pytest.approx(session)


def test_a_40_kb_message_is_two_increments_each_way(tmp_path: Path) -> None:
    run = synthetic(tmp_path, clients=2, messages_per_sender=1)
    run.sends["bytes"][:] = 40 * KB
    assert api_gateway_messages(run, send_index_of(run)) == {"in": 4, "out": 4, "total": 8}


def test_the_action_wrapper_pushes_a_32_kb_message_over_one_increment_inbound(
    tmp_path: Path,
) -> None:
    run = synthetic(tmp_path, clients=2, messages_per_sender=1)
    run.sends["bytes"][:] = 32 * KB
    assert len('{"action":"sendmessage","message":""}') == SENDMESSAGE_WRAPPER_BYTES
    assert api_gateway_messages(run, send_index_of(run)) == {"in": 4, "out": 2, "total": 6}


def test_duplicates_and_error_frames_are_billed_out(tmp_path: Path) -> None:
    run = synthetic(tmp_path, clients=3, messages_per_sender=1, duplicate=[(0, 0, 1)], errors=2)
    # 3 sends in; 3 x 2 receipts + 1 duplicate + 2 error frames out.
    assert estimate(run, Prices())["usage"]["api_gateway_messages"] == {
        "in": 3,
        "out": 9,
        "total": 12,
    }


def test_rooms_query_the_room_and_write_the_index_too(tmp_path: Path) -> None:
    run = synthetic(tmp_path, clients=4, messages_per_sender=1)
    run = replace(
        run, membership={**run.membership, "audience": np.array(["r0", "r0", "r1", "r1"])}
    )
    usage = estimate(run, Prices())["usage"]
    assert usage["dynamodb_read_units"] == 4 * (1.0 + 0.5)  # GetItem + Query of 2 items
    assert usage["dynamodb_write_units"] == 2 * (4 + 4)  # table + room index, put and delete


def test_baseline_scans_one_page_and_skips_the_sender_lookup(tmp_path: Path) -> None:
    run = synthetic(tmp_path, clients=5, messages_per_sender=2, variant="baseline")
    assert estimate(run, Prices())["usage"]["dynamodb_read_units"] == 10 * 0.5


def test_items_counted_are_those_connected_at_each_send(tmp_path: Path) -> None:
    run = synthetic(tmp_path, clients=3, messages_per_sender=1)
    gone = run.membership["disconnected_ns"].copy()
    gone[2] = START_NS + SECOND // 2  # client 2 leaves before the first send
    run = replace(run, membership={**run.membership, "disconnected_ns": gone})
    cost = estimate(run, Prices())
    # Connection time: 2 clients for 3 s (start to end_ns) + one for 0.5 s.
    assert cost["usage"]["connection_minutes"] == pytest.approx((2 * 3 + 0.5) / 60)
    assert cost["usage"]["dynamodb_read_units"] == 3 * 1.5  # still one 4 KB block each


def test_stage_statistics_win_over_records(tmp_path: Path) -> None:
    run = synthetic(tmp_path, clients=2, messages_per_sender=1)
    stats = {
        "invocations": {"ConnectFunction": 3, "SendMessageFunction": 2, "DefaultFunction": 1},
        "duration_ms": {"SendMessageFunction": [1.2, 2.0], "ConnectFunction": [4.5, 5.0, 6.0]},
    }
    run = replace(
        run,
        meta={
            **run.meta,
            "stage": {"stats": {"lambda": stats}, "memory_mb": {"DefaultFunction": 128}},
        },
    )
    functions = estimate(run, Prices())["usage"]["lambda"]
    send = functions["SendMessageFunction"]
    assert (send["requests"], send["requests_from"], send["duration_from"]) == (
        2,
        "local stage",
        "local stage timing",
    )
    assert send["billed_ms_mean"] == 2.0  # each rounded up to the millisecond
    assert send["gb_seconds"] == pytest.approx(2 * 0.002 * 1.0)
    assert functions["ConnectFunction"]["gb_seconds"] == pytest.approx((5 + 5 + 6) / 1000 * 0.25)
    assert functions["DisconnectFunction"]["requests_from"] == "records"
    assert functions["DefaultFunction"]["memory_mb"] == 128
    assert functions["DefaultFunction"]["gb_seconds"] == pytest.approx(1 * 0.005 * 0.125)


def test_a_run_without_sends_or_receipts_costs_only_its_connections(tmp_path: Path) -> None:
    run = synthetic(tmp_path, clients=2, messages_per_sender=0)
    cost = estimate(run, Prices())
    assert cost["usd_per_million_messages"] is None
    assert cost["usage"]["api_gateway_messages"]["total"] == 0
    assert cost["usage"]["lambda"]["SendMessageFunction"]["duration_from"] == "assumed"
    assert cost["run_total_usd"] > 0
    json.dumps(cost, allow_nan=False)


def test_estimate_is_json_ready_and_scales_with_prices(tmp_path: Path) -> None:
    run = synthetic(tmp_path)
    base = estimate(run, Prices())
    json.dumps(base, allow_nan=False)
    doubled = estimate(run, Prices.with_overrides(["api_gateway_per_million_messages=2"]))
    assert doubled["breakdown_usd"]["api_gateway_messages"] == pytest.approx(
        2 * base["breakdown_usd"]["api_gateway_messages"]
    )


def test_default_memory_matches_template_yaml() -> None:
    template = load_template(PROJECT_ROOT / "template.yaml")
    resources = template["Resources"]
    declared = {name: resources[name]["Properties"]["MemorySize"] for name in DEFAULT_MEMORY_MB}
    assert declared == DEFAULT_MEMORY_MB


def test_default_duration_price_is_arm64_because_the_template_deploys_arm64() -> None:
    template = load_template(PROJECT_ROOT / "template.yaml")
    assert template["Globals"]["Function"]["Architectures"] == ["arm64"]
    assert Prices().lambda_per_gb_second == LAMBDA_ARM64_PER_GB_SECOND == ARM64


def test_price_overrides_parse_name_equals_value() -> None:
    prices = Prices.with_overrides(
        ["lambda_per_gb_second=0.0000166667", " dynamodb_per_million_read_request_units = 0.25"]
    )
    assert prices.lambda_per_gb_second == 0.0000166667
    assert prices.dynamodb_per_million_read_request_units == 0.25
    assert prices.api_gateway_per_million_messages == 1.00
    assert Prices.with_overrides([]) == Prices()


@pytest.mark.parametrize(
    ("pair", "words"),
    [
        ("lambda_per_gigabyte=1", "unknown price 'lambda_per_gigabyte'"),
        ("lambda_per_gb_second=cheap", "'cheap' is not a number"),
        ("lambda_per_gb_second", "expected NAME=USD"),
        ("lambda_per_gb_second=-1", ">= 0"),
        ("lambda_per_gb_second=nan", "finite"),
    ],
)
def test_bad_price_overrides_raise_one_line_value_errors(pair: str, words: str) -> None:
    with pytest.raises(ValueError, match="price") as caught:
        Prices.with_overrides([pair])
    assert words in str(caught.value)
    assert "\n" not in str(caught.value)


def test_priced_applies_each_list_price_to_its_own_quantity_once() -> None:
    usage = Usage(
        api_gateway_messages=2e6,
        connection_minutes=4e6,
        sendmessage_requests=3e6,
        sendmessage_gb_seconds=10.0,
        connection_lambda_requests=1e6,
        connection_lambda_gb_seconds=5.0,
        dynamodb_read_units=8e6,
        dynamodb_write_units=2e6,
    )
    assert priced(usage, Prices()) == pytest.approx({
        "api_gateway_messages": 2.0,
        "api_gateway_connection_minutes": 1.0,
        "sendmessage_requests": 0.6,
        "sendmessage_compute": 10 * LAMBDA_ARM64_PER_GB_SECOND,
        "connection_lambda_requests": 0.2,
        "connection_lambda_compute": 5 * LAMBDA_ARM64_PER_GB_SECOND,
        "dynamodb_reads": 1.0,
        "dynamodb_writes": 1.25,
    })  # fmt: skip


def test_a_million_sends_of_100_ms_at_1_gb_cost_requests_plus_100k_gb_seconds() -> None:
    assert lambda_usd_per_million_sends(100.0, 1.0, Prices()) == pytest.approx(
        0.20 + 100_000 * LAMBDA_ARM64_PER_GB_SECOND
    )
