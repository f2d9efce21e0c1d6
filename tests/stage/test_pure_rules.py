"""The stage's pure rules: ids, event shapes, routes, faults, throttle, @connections checks.

Event shapes are compared key for key with AWS's captured events
(aws-powertools ``tests/events/apiGatewayWebSocketApi{Connect,Message,Disconnect}.json``);
the literal key sets below are copied from those files.
"""

from __future__ import annotations

import json
import math
import random
import string
from pathlib import Path
from typing import Any

import pytest

from fanbench_common.limits import MAX_MESSAGE_BYTES
from loadtest.stage import connections_api as api
from loadtest.stage import dynamodb as stage_dynamodb
from loadtest.stage.config import StageConfig
from loadtest.stage.dynamodb import emulator_command, resolve_emulator
from loadtest.stage.events import (
    clf_time,
    disconnect_status,
    is_valid_id,
    new_id,
)
from loadtest.stage.faults import (
    CLEAN_POST,
    Faults,
    PostDecision,
    decide_post,
    fail_invocation,
    lose_disconnect,
)
from loadtest.stage.routing import select_route, selection_key
from loadtest.stage.throttle import TokenBucket

URL_SAFE = set(string.ascii_letters + string.digits + "-_")


# -- ids ------------------------------------------------------------------------


def test_new_id_has_the_aws_shape() -> None:
    ids = {new_id() for _ in range(500)}
    assert len(ids) == 500
    for candidate in ids:
        assert len(candidate) == 16
        assert candidate.endswith("=")
        assert set(candidate[:15]) <= URL_SAFE
        assert is_valid_id(candidate)
    assert new_id(bytes(11)) == "AAAAAAAAAAAAAAA="
    with pytest.raises(ValueError, match="11 random bytes"):
        new_id(bytes(12))


@pytest.mark.parametrize(
    "candidate",
    [
        "BFaT_fALIAMCKug",
        "BFaT_fALIAMCKugA",
        "BFaT_fALIAMCKug==",
        "BFaT+fALIAMCKug=",
        "BFaT/fALIAMC=",
    ],
)
def test_is_valid_id_rejects_other_shapes(candidate: str) -> None:
    assert not is_valid_id(candidate)


def test_is_valid_id_accepts_captured_ids() -> None:
    for captured in ("BFaT_fALIAMCKug=", "BFHPhfCWIAMCKlQ=", "TWegAcC4EowCHnA="):
        assert is_valid_id(captured)


# -- event values -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("epoch_ms", "expected"),
    [
        (1731324924553, "11/Nov/2024:11:35:24 +0000"),  # the captured CONNECT event
        (1731333109875, "11/Nov/2024:13:51:49 +0000"),  # the captured DISCONNECT event
        (0, "01/Jan/1970:00:00:00 +0000"),
    ],
)
def test_clf_time_is_common_log_format_in_utc(epoch_ms: int, expected: str) -> None:
    assert clf_time(epoch_ms) == expected


@pytest.mark.parametrize(
    ("received", "sent", "received_first", "expected"),
    [
        ((4000, "bye"), (4000, "bye"), True, (4000, "bye")),
        ((1005, ""), (1005, ""), True, (1005, "Client-side close frame status not set")),
        ((4001, ""), (4001, ""), True, (4001, "")),  # AWS: a code without a reason is ""
        ((1001, ""), (1001, ""), True, (1001, "")),
        ((1001, "Going away"), (1001, "Going away"), False, (1001, "Going away")),
        ((1000, ""), (1009, "too big"), False, (1009, "too big")),
        (None, (1003, "Binary"), None, (1003, "Binary")),
        (None, None, None, (1006, "Connection closed abnormally")),
    ],
)
def test_disconnect_status_comes_from_the_side_that_closed_first(
    received: tuple[int, str] | None,
    sent: tuple[int, str] | None,
    received_first: bool | None,
    expected: tuple[int, str],
) -> None:
    assert disconnect_status(received, sent, received_first) == expected


# -- route selection -----------------------------------------------------------

ROUTES = {"$default", "sendmessage"}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('{"action": "sendmessage", "message": "hi"}', "sendmessage"),
        ('{"action": "SendMessage"}', "$default"),  # case-sensitive
        ('{"action": "sendmessage "}', "$default"),  # exact
        ('{"action": "$connect"}', "$default"),  # never selectable by a message
        ('{"action": "$default"}', "$default"),
        ('{"message": "no action"}', "$default"),
        ('{"action": ["sendmessage"]}', "$default"),  # not a string
        ('{"action": 1}', "$default"),
        ('["sendmessage"]', "$default"),  # a JSON array
        ("sendmessage", "$default"),  # not JSON
        ("", "$default"),
        ("[" * 100_000, "$default"),  # too deep to parse
    ],
)
def test_select_route(body: str, expected: str) -> None:
    assert select_route(body, ROUTES) == expected


def test_select_route_without_default_is_none() -> None:
    routes = {"sendmessage"}
    assert select_route('{"action": "sendmessage"}', routes) == "sendmessage"
    assert select_route('{"action": "SendMessage"}', routes) is None
    assert select_route("not json", routes) is None


def test_selection_key_reads_the_body_field() -> None:
    assert selection_key("$request.body.action") == "action"
    assert select_route('{"type": "sendmessage"}', ROUTES, field="type") == "sendmessage"
    for bad in ("$request.header.action", "$request.body.", "action"):
        with pytest.raises(ValueError, match="unsupported"):
            selection_key(bad)


# -- faults ----------------------------------------------------------------------


def _within_binomial(count: int, draws: int, rate: float, sigmas: float = 5.0) -> bool:
    mean = draws * rate
    spread = sigmas * math.sqrt(draws * rate * (1 - rate))
    return mean - spread <= count <= mean + spread


def test_decide_post_rates_follow_the_configuration() -> None:
    faults = Faults(post_failure_rate=0.1, throttle_rate=0.2, drop_rate=0.05, duplicate_rate=0.15)
    rng = random.Random(1234)
    draws = 20_000
    outcomes = [decide_post(faults, rng) for _ in range(draws)]
    failed = sum(1 for o in outcomes if o.status == 500)
    throttled = sum(1 for o in outcomes if o.status == 429)
    dropped = sum(1 for o in outcomes if o.status == 200 and o.copies == 0)
    duplicated = sum(1 for o in outcomes if o.status == 200 and o.copies == 2)
    clean = sum(1 for o in outcomes if o.status == 200 and o.copies == 1)
    assert _within_binomial(failed, draws, 0.1)
    assert _within_binomial(throttled, draws, 0.2)
    assert _within_binomial(dropped, draws, 0.05)
    assert _within_binomial(duplicated, draws, 0.15)
    assert _within_binomial(clean, draws, 0.5)
    assert failed + throttled + dropped + duplicated + clean == draws
    assert all(o.copies == 0 for o in outcomes if o.status != 200)


def test_decide_post_latency_is_fixed_plus_jitter() -> None:
    faults = Faults(post_latency_ms=200, post_latency_jitter_ms=100)
    rng = random.Random(7)
    delays = [decide_post(faults, rng).delay_s for _ in range(2_000)]
    assert all(0.2 <= d <= 0.3 for d in delays)
    assert max(delays) - min(delays) > 0.09  # the jitter is used, not a constant
    assert _within_binomial(sum(1 for d in delays if d < 0.25), 2_000, 0.5)
    assert decide_post(Faults(post_latency_ms=50), rng) == PostDecision(0.05, 200, 1)


def test_decide_post_without_faults_is_clean_and_draws_nothing() -> None:
    rng = random.Random(3)
    state = rng.getstate()
    assert decide_post(Faults(), rng) is CLEAN_POST
    assert rng.getstate() == state


@pytest.mark.parametrize(
    ("faults", "expected"),
    [
        (Faults(post_failure_rate=1.0), PostDecision(0.0, 500, 0)),
        (Faults(throttle_rate=1.0), PostDecision(0.0, 429, 0)),
        (Faults(drop_rate=1.0), PostDecision(0.0, 200, 0)),
        (Faults(duplicate_rate=1.0), PostDecision(0.0, 200, 2)),
    ],
)
def test_decide_post_at_rate_one_always_applies(faults: Faults, expected: PostDecision) -> None:
    rng = random.Random(5)
    assert {decide_post(faults, rng) for _ in range(500)} == {expected}


def test_lost_disconnect_and_lambda_error_rates() -> None:
    rng = random.Random(11)
    draws = 10_000
    lost = sum(lose_disconnect(Faults(lost_disconnect_rate=0.3), rng) for _ in range(draws))
    failed = sum(fail_invocation(Faults(lambda_error_rate=0.25), rng) for _ in range(draws))
    assert _within_binomial(lost, draws, 0.3)
    assert _within_binomial(failed, draws, 0.25)
    assert not any(lose_disconnect(Faults(), rng) for _ in range(100))
    assert all(fail_invocation(Faults(lambda_error_rate=1.0), rng) for _ in range(100))


@pytest.mark.parametrize(
    "bad",
    [
        {"drop_rate": 1.5},
        {"throttle_rate": -0.1},
        {"post_latency_ms": -1.0},
        {"cold_start_ms": -5.0},
        {"post_failure_rate": 0.6, "throttle_rate": 0.6},
    ],
)
def test_faults_reject_impossible_settings(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"must|more than 1"):
        Faults(**bad)


# -- throttle -------------------------------------------------------------------


def test_token_bucket_starts_full_refills_at_rate_and_caps_at_burst() -> None:
    bucket = TokenBucket(rate=5, burst=2, now=100.0)
    assert [bucket.take(100.0) for _ in range(3)] == [True, True, False]
    assert not bucket.take(100.1)  # 0.5 token
    assert bucket.take(100.2)  # 1.0 token
    assert not bucket.take(100.2)
    assert bucket.take(200.0)  # a long pause refills only up to the burst
    assert bucket.take(200.0)
    assert not bucket.take(200.0)
    assert not bucket.take(150.0)  # time going backwards adds nothing


def test_token_bucket_admits_rate_times_seconds_plus_burst() -> None:
    # 10 s of requests every 1/64 s (binary-exact steps, so no float drift): 8/s + burst of 1.
    bucket = TokenBucket(rate=8, burst=1, now=0.0)
    admitted = sum(bucket.take(i / 64) for i in range(640))
    assert admitted in (80, 81)


def test_token_bucket_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="token bucket"):
        TokenBucket(rate=0, burst=1, now=0.0)
    with pytest.raises(ValueError, match="token bucket"):
        TokenBucket(rate=1, burst=0.5, now=0.0)


# -- @connections rules --------------------------------------------------------


def test_parse_path() -> None:
    assert api.parse_path("/local/@connections/BFaT_fALIAMCKug%3D") == api.Target(
        "local", "BFaT_fALIAMCKug="
    )
    assert api.parse_path("/local/@connections/abc?x=1") == api.Target("local", "abc")
    for bad in (
        "/local/@connections/",
        "/local/@connections",
        "/local/connections/abc",
        "/@connections/abc",
        "local/@connections/abc",
        "/local/@connections/abc/extra",
    ):
        assert api.parse_path(bad) is None, bad


def test_check_request_orders_its_errors_as_aws() -> None:
    good = api.Target("local", "BFaT_fALIAMCKug=")
    assert api.check_request(good, "POST", "local", has_auth=True, body_size=10) is None
    assert api.check_request(good, "GET", "local", True, MAX_MESSAGE_BYTES + 1) is None
    assert api.check_request(good, "POST", "local", True, MAX_MESSAGE_BYTES) is None

    wrong_stage = api.check_request(
        api.Target("prod", good.connection_id), "POST", "local", True, 1
    )
    assert wrong_stage is not None
    assert (wrong_stage.status, wrong_stage.error_type) == (403, "ForbiddenException")
    unknown = api.check_request(None, "POST", "local", True, 1)
    assert unknown is not None
    assert unknown.status == 403

    unsigned = api.check_request(good, "POST", "local", has_auth=False, body_size=1)
    assert unsigned is not None
    assert (unsigned.status, unsigned.message) == (403, "Missing Authentication Token")

    malformed = api.check_request(api.Target("local", "nope"), "POST", "local", True, 1)
    assert malformed is not None
    assert (malformed.status, malformed.error_type) == (400, "BadRequestException")

    oversize = api.check_request(good, "POST", "local", True, MAX_MESSAGE_BYTES + 1)
    assert oversize is not None
    assert (oversize.status, oversize.error_type) == (413, "PayloadTooLargeException")


def test_api_errors_name_their_type_in_header_and_body() -> None:
    for error in (api.GONE, api.MISSING_AUTH, api.THROTTLED, api.bad_id("x"), api.too_large(9)):
        assert error.headers()["x-amzn-ErrorType"] == error.error_type
        assert json.loads(error.body())["__type"] == error.error_type
    assert (api.GONE.status, api.THROTTLED.status) == (410, 429)


# -- the DynamoDB emulators -----------------------------------------------------


def test_emulator_commands_and_a_clear_error_for_an_unknown_one() -> None:
    assert "moto.server" in emulator_command("moto", 4567)
    dynalite = emulator_command("dynalite", 4567)
    assert Path(dynalite[0]).name == "node"
    assert dynalite[1].endswith("dynalite/cli.js")
    assert dynalite[dynalite.index("--createTableMs") + 1] == "0"
    with pytest.raises(ValueError, match="unknown DynamoDB emulator 'dynamo'"):
        emulator_command("dynamo", 4567)
    with pytest.raises(ValueError, match="auto, dynalite or moto"):
        StageConfig(dynamodb_emulator="localstack")


def test_auto_takes_dynalite_in_a_checkout_and_moto_where_it_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert resolve_emulator("auto") == "dynalite"  # this checkout ran npm install
    assert resolve_emulator("moto") == "moto"
    # As from a wheel: no checkout, and no dynalite on PATH.
    monkeypatch.setattr(stage_dynamodb, "checkout_root", lambda: None)
    monkeypatch.setenv("PATH", "/nonexistent")
    assert stage_dynamodb.dynalite_command() is None
    assert resolve_emulator("auto") == "moto"
    with pytest.raises(RuntimeError, match="dynalite is not installed"):
        emulator_command("dynalite", 4567)
