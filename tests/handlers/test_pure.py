"""Pure parts of the handlers: no network, no AWS."""

from __future__ import annotations

import json
import random
import time
from typing import Any

import botocore.parsers
import botocore.session
import pytest
from botocore.awsrequest import HTTPHeaders
from botocore.exceptions import ClientError

import callbacks
import connection_store
import deadline
import emf
import settings
import validation
from aws_limits import (
    CONNECTION_KEY,
    MAX_CONNECTION_DURATION_S,
    MAX_MESSAGE_BYTES,
    ROOM_ATTRIBUTE,
    ROOM_INDEX,
    TTL_ATTRIBUTE,
    TTL_MARGIN_S,
)
from callbacks import Outcome
from connection_store import CONNECTED_AT
from loadtest.stage.template import load_template, stage_template
from tests.repo import TEMPLATE_PATH

# --- validation.parse_sendmessage_body -----------------------------------------------


def test_parses_the_message() -> None:
    parsed = validation.parse_sendmessage_body('{"action": "sendmessage", "message": "hi"}')
    assert parsed == validation.ChatMessage(message="hi")


def test_empty_and_unicode_messages_are_valid() -> None:
    assert validation.parse_sendmessage_body('{"message": ""}').message == ""
    assert (
        validation.parse_sendmessage_body('{"message": "\\ud83d\\udc4b"}').message == "\U0001f44b"
    )


@pytest.mark.parametrize(
    "body",
    [
        None,
        b'{"message": "hi"}',
        42,
        "",
        "hi",
        "{'message': 'hi'}",
        "[]",
        '"message"',
        "null",
        "{}",
        '{"message": 1}',
        '{"message": true}',
        '{"message": null}',
        '{"message": ["hi"]}',
        '{"Message": "hi"}',
        "[" * 50_000,
    ],
)
def test_rejects_anything_but_an_object_with_a_string_message(body: object) -> None:
    with pytest.raises(validation.BadRequest):
        validation.parse_sendmessage_body(body)


def _body_of_size(size: int) -> str:
    body = json.dumps({"message": "a" * (size - len('{"message": ""}'))})
    assert len(body.encode()) == size
    return body


def test_size_limit_is_in_utf8_bytes_and_inclusive() -> None:
    assert validation.parse_sendmessage_body(_body_of_size(MAX_MESSAGE_BYTES)).message
    with pytest.raises(validation.BadRequest, match="exceeds"):
        validation.parse_sendmessage_body(_body_of_size(MAX_MESSAGE_BYTES + 1))
    # 3-byte characters: under the limit in characters, over it in bytes.
    euros = json.dumps({"message": "\u20ac" * 50_000}, ensure_ascii=False)
    assert len(euros) < MAX_MESSAGE_BYTES < len(euros.encode())
    with pytest.raises(validation.BadRequest, match="exceeds"):
        validation.parse_sendmessage_body(euros)


def test_lone_surrogates_do_not_crash_the_size_check() -> None:
    with pytest.raises(validation.BadRequest):
        validation.parse_sendmessage_body("\ud800")


# --- validation.validate_room, connection_id_of --------------------------------------


@pytest.mark.parametrize("room", ["a", "lobby", "Room_1.b-2", "x" * 64, "0", "..", "-"])
def test_valid_rooms(room: str) -> None:
    assert validation.validate_room(room) == room


@pytest.mark.parametrize(
    "room",
    ["", "x" * 65, "a b", "a/b", "caf\u00e9", "a\n", "\na", "a\x00", "*", None, 7, ["a"]],
)
def test_invalid_rooms(room: object) -> None:
    with pytest.raises(validation.BadRequest):
        validation.validate_room(room)


@pytest.mark.parametrize(
    "event",
    [
        None,
        {},
        {"requestContext": None},
        {"requestContext": {}},
        {"requestContext": {"connectionId": ""}},
        {"requestContext": {"connectionId": 5}},
    ],
)
def test_connection_id_of_rejects_events_without_one(event: object) -> None:
    with pytest.raises(validation.BadRequest):
        validation.connection_id_of(event)


def test_connection_id_of() -> None:
    event = {"requestContext": {"connectionId": "BFaT_fALIAMCKug="}}
    assert validation.connection_id_of(event) == "BFaT_fALIAMCKug="


# --- callbacks.classify_error, is_throttle, backoff_s --------------------------------


def _client_error(status: int, code: str) -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": "m"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "PostToConnection")


@pytest.mark.parametrize(
    ("status", "code", "outcome", "throttle"),
    [
        (410, "GoneException", Outcome.GONE, False),
        (410, "410", Outcome.GONE, False),
        (0, "GoneException", Outcome.GONE, False),
        (429, "LimitExceededException", Outcome.RETRYABLE, True),
        (429, "429", Outcome.RETRYABLE, True),
        (400, "ThrottlingException", Outcome.RETRYABLE, True),
        (400, "TooManyRequests", Outcome.RETRYABLE, True),
        (500, "500", Outcome.RETRYABLE, False),
        (500, "InternalServerErrorException", Outcome.RETRYABLE, False),
        (502, "502", Outcome.RETRYABLE, False),
        (503, "ServiceUnavailable", Outcome.RETRYABLE, False),
        (504, "504", Outcome.RETRYABLE, False),
        (413, "PayloadTooLargeException", Outcome.FAILED, False),
        (403, "ForbiddenException", Outcome.FAILED, False),
        (400, "BadRequestException", Outcome.FAILED, False),
        (404, "404", Outcome.FAILED, False),
    ],
)
def test_classify_error(status: int, code: str, outcome: Outcome, throttle: bool) -> None:
    error = _client_error(status, code)
    assert callbacks.classify_error(error) is outcome
    assert callbacks.is_throttle(error) is throttle


def test_classify_error_tolerates_a_bare_response() -> None:
    assert callbacks.classify_error(ClientError({}, "PostToConnection")) is Outcome.FAILED


# --- callbacks.error_response: botocore's rest-json error parsing, for the signed client ---

_TYPED = {"x-amzn-errortype": "GoneException", "x-amzn-requestid": "r-1"}


@pytest.mark.parametrize(
    ("status", "headers", "body"),
    [
        (410, _TYPED, b'{"message": "Gone"}'),
        (410, {}, b'{"message": "Gone"}'),
        (410, {}, b""),
        (429, {"x-amzn-errortype": "LimitExceededException:http://internal/"}, b"{}"),
        (429, {}, b'{"Message": "Too Many Requests"}'),
        (413, {"x-amzn-errortype": "PayloadTooLargeException"}, b'{"message": "too long"}'),
        (400, {}, b'{"__type": "com.amazon.coral#BadRequestException", "message": "bad"}'),
        (400, {}, b'{"code": "BadRequestException"}'),
        (403, {}, b"not json at all"),
        (500, {}, b""),
        (500, _TYPED, b""),
        (502, {}, b"<html><body>Bad Gateway</body></html>"),
        (503, {}, b'{"message": "Service Unavailable"}'),
        (504, {"x-amzn-errortype": "GatewayTimeoutException"}, b'{"message": "late"}'),
    ],
)
def test_error_response_is_what_botocore_parses(
    status: int, headers: dict[str, str], body: bytes
) -> None:
    model = botocore.session.get_session().get_service_model("apigatewaymanagementapi")
    shape: Any = model.operation_model("PostToConnection").output_shape  # None: no output
    parsed = botocore.parsers.RestJSONParser().parse(
        {"status_code": status, "headers": HTTPHeaders.from_dict(headers), "body": body}, shape
    )

    ours = callbacks.error_response(status, headers, body)

    assert ours["Error"] == parsed["Error"]
    assert ours["ResponseMetadata"]["HTTPStatusCode"] == status
    assert ours["ResponseMetadata"].get("RequestId") == parsed["ResponseMetadata"].get("RequestId")


@pytest.mark.parametrize("attempt", range(12))
def test_backoff_is_full_jitter_within_the_capped_exponential(attempt: int) -> None:
    rng = random.Random(attempt)
    bound = min(1.0, 0.02 * 2**attempt)
    samples = [callbacks.backoff_s(attempt, rng) for _ in range(400)]
    assert all(0.0 <= s <= bound for s in samples)
    assert max(samples) > 0.9 * bound  # reaches up to the bound...
    assert min(samples) < 0.1 * bound  # ...and down to zero (full jitter)


def test_backoff_respects_custom_base_and_cap() -> None:
    rng = random.Random(7)
    assert all(callbacks.backoff_s(10, rng, base_s=0.5, cap_s=2.0) <= 2.0 for _ in range(200))
    assert all(callbacks.backoff_s(0, rng, base_s=0.5, cap_s=2.0) <= 0.5 for _ in range(200))


# --- connection_store.expires_at -----------------------------------------------------


@pytest.mark.parametrize(
    ("connected_at_ms", "expected"),
    [
        (0, int(MAX_CONNECTION_DURATION_S + TTL_MARGIN_S)),
        (1_700_000_000_000, 1_700_000_000 + 7_200 + 900),
        (1_700_000_000_999, 1_700_000_000 + 7_200 + 900),
    ],
)
def test_expires_at_is_epoch_seconds_past_the_connection_limit(
    connected_at_ms: int, expected: int
) -> None:
    assert connection_store.expires_at(connected_at_ms) == expected


def test_ttl_outlives_the_longest_connection() -> None:
    connected_at_ms = 1_700_000_000_500
    assert connection_store.expires_at(connected_at_ms) * 1000 > (
        connected_at_ms + MAX_CONNECTION_DURATION_S * 1000
    )


# --- emf.emf_line --------------------------------------------------------------------


def test_emf_line_is_one_compact_json_record() -> None:
    line = emf.emf_line(
        1_700_000_000_123,
        {"Variant": "optimized", "Stage": "local"},
        {"Delivered": 3, "Gone": 1},
        {"FanoutMs": 12.34567},
    )
    assert "\n" not in line
    assert ", " not in line
    assert ": " not in line
    record = json.loads(line)
    assert record["_aws"] == {
        "Timestamp": 1_700_000_000_123,
        "CloudWatchMetrics": [
            {
                "Namespace": emf.NAMESPACE,
                "Dimensions": [["Stage", "Variant"]],
                "Metrics": [
                    {"Name": "Delivered", "Unit": "Count"},
                    {"Name": "Gone", "Unit": "Count"},
                    {"Name": "FanoutMs", "Unit": "Milliseconds"},
                ],
            }
        ],
    }
    assert record["Variant"] == "optimized"
    assert record["Stage"] == "local"
    assert record["Delivered"] == 3
    assert record["Gone"] == 1
    assert record["FanoutMs"] == 12.346


def test_emf_every_metric_and_dimension_has_a_value() -> None:
    record = json.loads(emf.emf_line(0, {"Variant": "v"}, {"A": 0}, {"B": 0.0}))
    directive = record["_aws"]["CloudWatchMetrics"][0]
    for metric in directive["Metrics"]:
        assert metric["Name"] in record
    for dimension in directive["Dimensions"][0]:
        assert isinstance(record[dimension], str)


# --- settings ------------------------------------------------------------------------


def test_settings_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "TABLE_NAME",
        "AUTH_TOKEN",
        "CALLBACK_URL",
        "POST_CONCURRENCY",
        "SCAN_SEGMENTS",
        "POST_MAX_ATTEMPTS",
        "DEADLINE_RESERVE_MS",
        "HANDSHAKE_GRACE_MS",
        "POST_CLIENT",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CALLBACK_URL", "https://example.test/prod/")
    loaded = settings.Settings.from_environ()
    assert loaded.callback_url == "https://example.test/prod"
    assert (loaded.post_concurrency, loaded.scan_segments) == (32, 1)
    assert (loaded.post_max_attempts, loaded.deadline_reserve_ms) == (5, 400)
    # Past API Gateway's 29 s integration timeout (plus clock skew) a handshake is over.
    assert loaded.handshake_grace_ms == 30_000
    assert loaded.post_client == settings.DEFAULT_POST_CLIENT


@pytest.mark.parametrize("kind", callbacks.POST_CLIENTS)
def test_settings_read_the_post_client(monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    monkeypatch.setenv("POST_CLIENT", f" {kind} ")
    assert settings.Settings.from_environ().post_client == kind


@pytest.mark.parametrize("value", ["urllib3", "Boto3", "signed,boto3"])
def test_an_unknown_post_client_fails_loudly(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("POST_CLIENT", value)
    with pytest.raises(ValueError, match=r"^POST_CLIENT=\S+ is not one of boto3, signed$"):
        settings.Settings.from_environ()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("POST_CONCURRENCY", "0"),
        ("POST_CONCURRENCY", "257"),
        ("SCAN_SEGMENTS", "65"),
        ("POST_MAX_ATTEMPTS", "0"),
        ("DEADLINE_RESERVE_MS", "-1"),
        ("HANDSHAKE_GRACE_MS", "-1"),
        ("POST_CONCURRENCY", "many"),
    ],
)
def test_settings_out_of_range_fail_loudly(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=r"outside|invalid literal"):
        settings.Settings.from_environ()


def test_callback_endpoint_defaults_to_the_events_domain_and_stage(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CALLBACK_URL", raising=False)
    event: dict[str, object] = {
        "requestContext": {"domainName": "abc.execute-api.us-east-1.amazonaws.com", "stage": "prod"}
    }
    assert (
        settings.callback_endpoint(event, settings.Settings.from_environ())
        == "https://abc.execute-api.us-east-1.amazonaws.com/prod"
    )


# --- the table the handlers assume is the table template.yaml declares ---------------


def test_template_table_matches_the_handlers_constants() -> None:
    spec = stage_template(load_template(TEMPLATE_PATH), {}, "t").table
    assert spec.key_schema == [{"AttributeName": CONNECTION_KEY, "KeyType": "HASH"}]
    assert spec.ttl_attribute == TTL_ATTRIBUTE
    (index,) = spec.global_secondary_indexes
    assert index["IndexName"] == ROOM_INDEX
    assert index["KeySchema"] == [{"AttributeName": ROOM_ATTRIBUTE, "KeyType": "HASH"}]
    # The keys and connectedAt: all query_room reads (the handshake-safe cleanup needs the age).
    assert index["Projection"] == {"ProjectionType": "INCLUDE", "NonKeyAttributes": [CONNECTED_AT]}


# --- deadline --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds_left", "budget"),
    [
        (60.0, 7.0),
        (7.0, 7.0),
        (6.99, 3.0),
        (2.6, 2.0),
        (1.5, 1.5),
        (1.49, 1.0),
        (0.7, 0.6),
        (0.5, 0.3),
        (0.1, 0.1),
        (0.099, None),
    ],
)
def test_call_budget_is_the_largest_that_ends_in_time(
    seconds_left: float, budget: float | None
) -> None:
    assert deadline.call_budget_s(seconds_left) == budget


@pytest.mark.parametrize("budget", deadline.CALL_BUDGETS_S)
def test_timeouts_add_up_to_the_budget_split_as_the_defaults(budget: float) -> None:
    connect, read = deadline.timeouts_s(budget)
    assert connect + read == pytest.approx(budget)
    assert connect / budget == pytest.approx(2 / 7, abs=0.01)


def test_the_largest_budget_is_the_default_timeouts() -> None:
    assert deadline.timeouts_s(deadline.CALL_BUDGETS_S[0]) == (2.0, 5.0)


def test_monotonic_deadline_keeps_the_reserve_back() -> None:
    class Context:
        def get_remaining_time_in_millis(self) -> int:
            return 2000

    before = time.monotonic()
    end = deadline.monotonic_deadline(Context(), 500)
    assert before + 1.5 <= end <= time.monotonic() + 1.5
    assert deadline.remaining_ms(object()) == deadline.UNKNOWN_REMAINING_MS


def test_the_signed_clients_error_parser_is_the_services_protocol() -> None:
    model = botocore.session.get_session().get_service_model("apigatewaymanagementapi")
    assert model.metadata["protocol"] == callbacks.PROTOCOL
