"""``sendmessage`` (optimized): audience, validation, retries, stale-id cleanup,
the response's counts, the EMF line, and the Lambda deadline."""

from __future__ import annotations

import json
import time
from typing import Any

import boto3
import pytest

from aws_limits import MAX_MESSAGE_BYTES
from tests.handlers.conftest import Handler, SendMessageLoader
from tests.handlers.support import (
    GONE,
    GONE_UNTYPED,
    OK,
    SERVER_ERROR,
    THROTTLED,
    THROTTLED_UNTYPED,
    TOO_LARGE,
    ConnectionsStub,
    LambdaContext,
    Reply,
    Table,
    chat_body,
    message_event,
    new_connection_id,
    sigv4_check,
)


def now_ms() -> int:
    return int(time.time() * 1000)


def ids(count: int) -> list[str]:
    return [new_connection_id() for _ in range(count)]


def summary_of(response: dict[str, Any]) -> dict[str, int]:
    assert response["statusCode"] == 200, response
    body = json.loads(response["body"])
    assert isinstance(body, dict)
    return body


def send(handler: Handler, sender: str, message: object = "hello", **context: Any) -> Any:
    return handler(message_event(sender, chat_body(message)), LambdaContext(**context))


# --- audience ------------------------------------------------------------------------


def test_broadcasts_the_message_text_to_everyone_but_the_sender(
    table: Table, stub: ConnectionsStub, sendmessage_handler: Handler
) -> None:
    sender, *others = ids(4)
    table.add([sender, *others])

    summary = summary_of(send(sendmessage_handler, sender, "h\u00e9llo \U0001f44b"))

    assert sorted(stub.posted_ids()) == sorted(others)
    assert all(r.body == "h\u00e9llo \U0001f44b".encode() for r in stub.posts())
    assert summary["Recipients"] == 3
    assert summary["Delivered"] == 3


def test_room_members_reach_only_their_room_via_the_index(
    table: Table, stub: ConnectionsStub, sendmessage_handler: Handler
) -> None:
    sender, mate_1, mate_2 = ids(3)
    elsewhere, lobby = ids(2)
    table.add([sender, mate_1, mate_2], room="blue")
    table.add([elsewhere], room="green")
    table.add([lobby])

    summary = summary_of(send(sendmessage_handler, sender))

    assert sorted(stub.posted_ids()) == sorted([mate_1, mate_2])
    assert summary["Recipients"] == 2


def test_sender_without_a_room_reaches_the_roomless_but_no_room(
    table: Table, stub: ConnectionsStub, sendmessage_handler: Handler
) -> None:
    """Reaching every room from a connection without ``?room=`` would leak every room."""
    sender, lobby = ids(2)
    blue, green = ids(2)
    table.add([sender, lobby])
    table.add([blue], room="blue")
    table.add([green], room="green")

    summary = summary_of(send(sendmessage_handler, sender))

    assert stub.posted_ids() == [lobby]
    assert summary["Recipients"] == 1


def test_roomless_audience_everyone_restores_the_tutorials_broadcast(
    table: Table, stub: ConnectionsStub, load_sendmessage: SendMessageLoader
) -> None:
    handler = load_sendmessage(ROOMLESS_AUDIENCE="everyone")
    sender, lobby = ids(2)
    blue, green = ids(2)
    table.add([sender, lobby])
    table.add([blue], room="blue")
    table.add([green], room="green")

    summary_of(send(handler, sender))

    assert sorted(stub.posted_ids()) == sorted([lobby, blue, green])


def test_a_sender_with_no_item_is_refused_and_nothing_is_broadcast(
    table: Table, stub: ConnectionsStub, sendmessage_handler: Handler
) -> None:
    """Its room is unknown: a broadcast to everyone would cross rooms."""
    sender, blue, green, lobby = ids(4)
    table.add([blue], room="blue")
    table.add([green], room="green")
    table.add([lobby])

    response = send(sendmessage_handler, sender)

    assert response["statusCode"] == 400
    assert stub.posted_ids() == [sender]
    frame = json.loads(stub.posts_to(sender)[0].body)
    assert frame["error"] == "BadRequest"
    assert "not in the connections table" in frame["message"]


def test_alone_in_a_room_posts_nothing(
    table: Table, stub: ConnectionsStub, sendmessage_handler: Handler
) -> None:
    sender, other = ids(2)
    table.add([sender], room="solo")
    table.add([other])

    summary = summary_of(send(sendmessage_handler, sender))

    assert stub.requests() == []
    assert summary["Recipients"] == 0


def test_parallel_scan_segments_cover_the_whole_table(
    table: Table, stub: ConnectionsStub, load_sendmessage: SendMessageLoader
) -> None:
    handler = load_sendmessage(SCAN_SEGMENTS="4")
    sender, *others = ids(41)
    table.add([sender, *others])

    summary = summary_of(send(handler, sender))

    assert sorted(stub.posted_ids()) == sorted(others)
    assert summary["ScanPages"] >= 4


def test_audience_read_failure_is_500_and_posts_nothing(
    table: Table,
    stub: ConnectionsStub,
    load_sendmessage: SendMessageLoader,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sender, other = ids(2)
    table.add([sender, other])
    monkeypatch.setenv("TABLE_NAME", f"{table.name}-does-not-exist")
    handler = load_sendmessage()

    response = send(handler, sender)

    assert response["statusCode"] == 500
    assert stub.requests() == []


def test_posts_carry_the_functions_session_credentials(
    table: Table,
    stub: ConnectionsStub,
    load_sendmessage: SendMessageLoader,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Lambda's role credentials are temporary: every post is signed with them, token included."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "ASIAROLEKEY")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "role-secret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "role-session-token")
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # it keeps the credentials it found
    handler = load_sendmessage()
    sender, *others = ids(3)
    table.add([sender, *others])

    summary = summary_of(send(handler, sender))

    assert summary["Delivered"] == 2
    assert len(stub.posts()) == 2
    for request in stub.posts():
        assert sigv4_check(request, "role-secret", "role-session-token") == ""


# --- validation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        "hello",
        '{"action": "sendmessage", "message": "unterminated',
        '["sendmessage", "hello"]',
        '"just a string"',
        "null",
        '{"action": "sendmessage"}',
        '{"action": "sendmessage", "message": 42}',
        '{"action": "sendmessage", "message": null}',
        '{"action": "sendmessage", "message": {"text": "hi"}}',
        chat_body("x" * MAX_MESSAGE_BYTES),
        "[" * 50_000,
        None,
    ],
    ids=[
        "not-json",
        "truncated-json",
        "json-array",
        "json-string",
        "json-null",
        "no-message",
        "number-message",
        "null-message",
        "object-message",
        "over-128KB",
        "deep-nesting",
        "no-body",
    ],
)
def test_invalid_body_gets_one_error_frame_and_no_broadcast(
    table: Table, stub: ConnectionsStub, sendmessage_handler: Handler, body: str | None
) -> None:
    sender, *others = ids(3)
    table.add([sender, *others])

    response = sendmessage_handler(message_event(sender, body), LambdaContext())

    assert response["statusCode"] == 400
    assert [(r.method, r.connection_id) for r in stub.requests()] == [("POST", sender)]
    frame = json.loads(stub.posts()[0].body)
    assert frame["error"] == "BadRequest"
    assert frame["message"] == response["body"]


def test_error_frame_to_a_gone_sender_is_still_400(
    table: Table, stub: ConnectionsStub, sendmessage_handler: Handler
) -> None:
    sender, other = ids(2)
    table.add([sender, other])
    stub.script(sender, GONE)

    response = sendmessage_handler(message_event(sender, "nope"), LambdaContext())

    assert response["statusCode"] == 400
    assert stub.posted_ids() == [sender]


def test_largest_valid_body_is_broadcast(
    table: Table, stub: ConnectionsStub, sendmessage_handler: Handler
) -> None:
    sender, other = ids(2)
    table.add([sender, other])
    padding = MAX_MESSAGE_BYTES - len(chat_body(""))
    body = chat_body("m" * padding)
    assert len(body.encode()) == MAX_MESSAGE_BYTES

    summary = summary_of(sendmessage_handler(message_event(sender, body), LambdaContext()))

    assert summary["Delivered"] == 1
    assert stub.posts_to(other)[0].body == b"m" * padding


# --- stale ids -----------------------------------------------------------------------


def test_typed_and_bare_410_both_remove_the_id(
    table: Table, stub: ConnectionsStub, sendmessage_handler: Handler
) -> None:
    sender, typed_gone, bare_gone, alive = ids(4)
    table.add([sender, typed_gone, bare_gone, alive])
    stub.script(typed_gone, GONE)
    stub.script(bare_gone, GONE_UNTYPED)

    first = summary_of(send(sendmessage_handler, sender, "one"))

    assert first["Gone"] == 2
    assert first["StaleRemoved"] == 2
    assert first["Delivered"] == 1
    assert len(stub.posts_to(typed_gone)) == 1
    assert len(stub.posts_to(bare_gone)) == 1
    assert table.ids() == {sender, alive}

    stub.clear_requests()
    second = summary_of(send(sendmessage_handler, sender, "two"))

    assert stub.posted_ids() == [alive]
    assert second["Recipients"] == 1
    assert second["Gone"] == 0


def test_more_stale_ids_than_one_batch_write_are_all_removed(
    table: Table, stub: ConnectionsStub, sendmessage_handler: Handler
) -> None:
    sender, *gone = ids(31)
    table.add([sender, *gone])
    for connection_id in gone:
        stub.script(connection_id, GONE)

    summary = summary_of(send(sendmessage_handler, sender))

    assert summary["Gone"] == 30
    assert summary["StaleRemoved"] == 30
    assert table.ids() == {sender}


def test_a_410_during_the_handshake_keeps_the_connection(
    table: Table, stub: ConnectionsStub, sendmessage_handler: Handler
) -> None:
    """``$connect`` stores the item before the connection opens; a post in between gets 410."""
    sender, stale, connecting = ids(3)
    table.add([sender, stale])
    table.add([connecting], connected_at_ms=now_ms())
    stub.script(stale, GONE)
    stub.script(connecting, GONE, OK)  # the handshake completes after the first post

    first = summary_of(send(sendmessage_handler, sender, "one"))
    second = summary_of(send(sendmessage_handler, sender, "two"))

    assert (first["Gone"], first["GoneInHandshake"], first["StaleRemoved"]) == (2, 1, 1)
    assert table.ids() == {sender, connecting}
    assert [r.body for r in stub.posts_to(connecting)] == [b"one", b"two"]
    assert second["Delivered"] == 1


def test_a_410_past_the_grace_removes_the_id(
    table: Table, stub: ConnectionsStub, load_sendmessage: SendMessageLoader
) -> None:
    handler = load_sendmessage(HANDSHAKE_GRACE_MS="1000")
    sender, gone = ids(2)
    table.add([sender])
    table.add([gone], connected_at_ms=now_ms() - 1500)
    stub.script(gone, GONE)

    summary = summary_of(send(handler, sender))

    assert (summary["GoneInHandshake"], summary["StaleRemoved"]) == (0, 1)
    assert table.ids() == {sender}


# --- retries -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "script",
    [
        (THROTTLED, THROTTLED, OK),
        (THROTTLED_UNTYPED, OK),
        (SERVER_ERROR, OK),
        (Reply(503, None, "Service Unavailable"), OK),
    ],
    ids=["429-twice", "bare-429", "500", "503"],
)
def test_throttled_or_5xx_post_is_retried_and_delivered(
    table: Table, stub: ConnectionsStub, sendmessage_handler: Handler, script: tuple[Reply, ...]
) -> None:
    sender, flaky, steady = ids(3)
    table.add([sender, flaky, steady])
    stub.script(flaky, *script)

    summary = summary_of(send(sendmessage_handler, sender, "again"))

    assert [r.body for r in stub.posts_to(flaky)] == [b"again"] * len(script)
    assert len(stub.posts_to(steady)) == 1
    assert summary["Delivered"] == 2
    assert summary["Undelivered"] == summary["Failed"] == summary["Gone"] == 0


def test_persistent_5xx_stops_after_max_attempts_and_429_goes_on_until_the_deadline(
    table: Table, stub: ConnectionsStub, load_sendmessage: SendMessageLoader
) -> None:
    """A 429 is "not now": it is retried (paced) until the deadline, not given up after
    ``POST_MAX_ATTEMPTS`` while the invocation still has time."""
    handler = load_sendmessage(POST_MAX_ATTEMPTS="3", DEADLINE_RESERVE_MS="400")
    sender, throttled, broken = ids(3)
    table.add([sender, throttled, broken])
    stub.script(throttled, THROTTLED)
    stub.script(broken, SERVER_ERROR)

    started = time.monotonic()
    # 2 s to post in (a 1 s window left a loaded host no time for a first post).
    summary = summary_of(send(handler, sender, remaining_ms=2_400))
    elapsed_s = time.monotonic() - started

    assert len(stub.posts_to(throttled)) > 3
    assert len(stub.posts_to(broken)) == 3
    assert summary["Undelivered"] == 2
    assert summary["Throttles"] == len(stub.posts_to(throttled))
    assert summary["Delivered"] == summary["Failed"] == summary["Unknown"] == 0
    assert 1.7 <= elapsed_s < 2.4  # it kept trying until about the deadline, not past it
    assert table.ids() == {sender, throttled, broken}


@pytest.mark.parametrize(
    "reply",
    [TOO_LARGE, Reply(403, "ForbiddenException", "Forbidden"), Reply(400, None, "Bad")],
    ids=["413", "403", "400"],
)
def test_non_retryable_failure_is_tried_once(
    table: Table, stub: ConnectionsStub, sendmessage_handler: Handler, reply: Reply
) -> None:
    sender, target = ids(2)
    table.add([sender, target])
    stub.script(target, reply)

    summary = summary_of(send(sendmessage_handler, sender))

    assert len(stub.posts_to(target)) == 1
    assert summary["Failed"] == 1
    assert table.ids() == {sender, target}


# --- the response and the metrics line -----------------------------------------------


def _mixed_audience(table: Table, stub: ConnectionsStub) -> tuple[str, str]:
    """(sender, the recipient that is always throttled)."""
    sender, ok_1, ok_2, gone, throttled, too_large, connecting = ids(7)
    table.add([sender, ok_1, ok_2, gone, throttled, too_large])
    table.add([connecting], connected_at_ms=now_ms())
    stub.script(gone, GONE)
    stub.script(throttled, THROTTLED)
    stub.script(too_large, TOO_LARGE)
    stub.script(connecting, GONE)
    return sender, throttled


MIXED_REMAINING_MS = 2_000
"""The throttled recipient is retried until the deadline: keep it short, but leave the scan
room on a busy host (1.2 s left none once a loaded moto took 0.7 s to answer it)."""


EXPECTED_COUNTS = {
    "Recipients": 6,
    "Delivered": 2,
    "Gone": 2,
    "GoneInHandshake": 1,
    "Undelivered": 1,
    "Unknown": 0,
    "Failed": 1,
    "StaleRemoved": 1,
    "ScanPages": 1,
    "ItemsScanned": 7,
}


def test_response_body_counts_every_outcome(
    table: Table, stub: ConnectionsStub, load_sendmessage: SendMessageLoader
) -> None:
    handler = load_sendmessage(POST_MAX_ATTEMPTS="2")
    sender, throttled = _mixed_audience(table, stub)

    summary = summary_of(send(handler, sender, remaining_ms=MIXED_REMAINING_MS))

    throttles = summary.pop("Throttles")
    assert summary == EXPECTED_COUNTS
    assert throttles == len(stub.posts_to(throttled)) >= 2


def test_prints_exactly_one_emf_line_per_invocation(
    table: Table,
    stub: ConnectionsStub,
    load_sendmessage: SendMessageLoader,
    capsys: pytest.CaptureFixture[str],
) -> None:
    handler = load_sendmessage(POST_MAX_ATTEMPTS="2")
    sender, _ = _mixed_audience(table, stub)
    capsys.readouterr()

    for invocation in range(2):
        before_ms = now_ms()
        response = send(handler, sender, remaining_ms=MIXED_REMAINING_MS)
        after_ms = now_ms()
        lines = capsys.readouterr().out.splitlines()

        assert len(lines) == 1, lines
        record = json.loads(lines[0])
        directive = record["_aws"]["CloudWatchMetrics"]
        assert isinstance(record["_aws"]["Timestamp"], int)
        assert before_ms <= record["_aws"]["Timestamp"] <= after_ms  # epoch milliseconds
        assert directive[0]["Namespace"] == "fanbench"
        assert directive[0]["Dimensions"] == [["Variant"]]
        assert record["Variant"] == "optimized"
        units = {m["Name"]: m["Unit"] for m in directive[0]["Metrics"]}
        assert units == {
            **dict.fromkeys(EXPECTED_COUNTS, "Count"),
            "Throttles": "Count",
            "BadRequest": "Count",
            "AudienceError": "Count",
            "ScanMs": "Milliseconds",
            "FanoutMs": "Milliseconds",
        }
        summary = summary_of(response)
        assert {name: record[name] for name in [*EXPECTED_COUNTS, "Throttles"]} == summary
        if invocation == 1:  # the stale id was removed by the first invocation
            assert summary["Recipients"] == 5
        assert record["ScanMs"] >= 0
        assert record["FanoutMs"] >= 0


# --- the Lambda deadline -------------------------------------------------------------


@pytest.mark.parametrize(
    ("recipients", "reply", "concurrency"),
    [
        (6, THROTTLED, "32"),
        (100, Reply(429, "LimitExceededException", "Rate exceeded", delay_s=0.05), "4"),
    ],
    ids=["fast-429s-retried", "slow-429s-queued-behind-the-pool"],
)
def test_persistent_throttling_returns_within_the_lambda_deadline(
    table: Table,
    stub: ConnectionsStub,
    load_sendmessage: SendMessageLoader,
    recipients: int,
    reply: Reply,
    concurrency: str,
) -> None:
    handler = load_sendmessage(
        POST_MAX_ATTEMPTS="20", POST_CONCURRENCY=concurrency, DEADLINE_RESERVE_MS="500"
    )
    sender, *others = ids(recipients + 1)
    table.add([sender, *others])
    for connection_id in others:
        stub.script(connection_id, reply)
    remaining_ms = 2_000

    started = time.monotonic()
    summary = summary_of(send(handler, sender, remaining_ms=remaining_ms))
    elapsed_s = time.monotonic() - started

    assert elapsed_s < remaining_ms / 1000, f"ran {elapsed_s:.2f}s of a {remaining_ms} ms budget"
    assert summary["Recipients"] == recipients
    assert summary["Delivered"] == 0
    assert summary["Undelivered"] == recipients
    # It kept probing while time allowed, every post paced by one shared rate: a bucket
    # that stays empty is not hammered by every thread on its own timer.
    assert summary["Throttles"] == len(stub.posts()) > min(recipients, 4)


def test_a_post_hanging_past_the_deadline_does_not_overrun_the_invocation(
    table: Table,
    stub: ConnectionsStub,
    load_sendmessage: SendMessageLoader,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An attempt started near the deadline gets the time left, not 2 s + 5 s."""
    handler = load_sendmessage(DEADLINE_RESERVE_MS="400")
    sender, hanging, fine = ids(3)
    table.add([sender, hanging, fine])
    stub.script(hanging, Reply(200, delay_s=4.0))
    remaining_ms = 1_500
    capsys.readouterr()

    started = time.monotonic()
    summary = summary_of(send(handler, sender, remaining_ms=remaining_ms))
    elapsed_s = time.monotonic() - started

    assert elapsed_s < remaining_ms / 1000, f"ran {elapsed_s:.2f}s of a {remaining_ms} ms budget"
    # The timed-out post may have been delivered: counted unknown, and never sent twice.
    assert (summary["Delivered"], summary["Unknown"], summary["Failed"]) == (1, 1, 0)
    assert len(stub.posts_to(hanging)) == 1
    assert len(capsys.readouterr().out.splitlines()) == 1  # the metrics line made it


def test_rejected_body_still_prints_one_emf_line(
    table: Table,
    stub: ConnectionsStub,
    load_sendmessage: SendMessageLoader,
    capsys: pytest.CaptureFixture[str],
) -> None:
    handler = load_sendmessage()
    sender, _ = _mixed_audience(table, stub)
    capsys.readouterr()

    response = handler(message_event(sender, "not json"), LambdaContext())
    lines = capsys.readouterr().out.splitlines()

    assert response["statusCode"] == 400
    assert len(lines) == 1, lines
    record = json.loads(lines[0])
    assert record["BadRequest"] == 1
    assert record["AudienceError"] == 0


def test_posting_ends_deadline_reserve_ms_before_the_invocation_does(
    table: Table, stub: ConnectionsStub, load_sendmessage: SendMessageLoader
) -> None:
    """The reserve is kept for the cleanup and the metrics line: with 3.5 s left and
    1.8 s kept back, a post that hangs is given up by about 1.7 s, not 3.5 s. (A 0.7 s
    window left a loaded host no time to post at all.)"""
    handler = load_sendmessage(DEADLINE_RESERVE_MS="1800")
    sender, hanging = ids(2)
    table.add([sender, hanging])
    stub.script(hanging, Reply(200, delay_s=4.0))

    started = time.monotonic()
    summary = summary_of(send(handler, sender, remaining_ms=3_500))
    elapsed_s = time.monotonic() - started

    assert summary["Unknown"] == 1
    assert elapsed_s < 2.1, f"posting ran {elapsed_s:.2f} s into a 1.7 s window"
