"""``sendmessage_baseline`` and ``sendmessage_sequential``: the AWS tutorial's handler,
ported faithfully (every post at once, at most 50 in flight) and posting one at a time.

Each test pins one property listed in the modules' docstrings, so that a change
that quietly "fixes" a tutorial variant (and so invalidates it as a baseline), or
makes the baseline a slower straw man than the tutorial, fails here. The flaws
both share run against each (``tutorial_handler``). Where a test shows the
optimized handler doing better, it runs both on the same table.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.handlers.conftest import Handler
from tests.handlers.support import (
    GONE,
    GONE_UNTYPED,
    OK,
    SERVER_ERROR,
    THROTTLED,
    THROTTLED_UNTYPED,
    ConnectionsStub,
    LambdaContext,
    Reply,
    Table,
    chat_body,
    message_event,
    new_connection_id,
)

SDK_V2_MAX_SOCKETS = 50
"""The AWS SDK for JavaScript v2's default HTTPS agent keeps at most 50 sockets."""
POST_S = 1.0


def ids(count: int) -> list[str]:
    return [new_connection_id() for _ in range(count)]


def test_posts_to_everyone_but_the_sender(
    table: Table, stub: ConnectionsStub, tutorial_handler: Handler
) -> None:
    sender, *others = ids(4)
    table.add([sender, *others])

    response = tutorial_handler(message_event(sender, chat_body("hi there")), LambdaContext())

    assert response == {"statusCode": 200}
    assert sorted(stub.posted_ids()) == sorted(others)
    assert all(r.body == b"hi there" for r in stub.posts())


@pytest.mark.parametrize("recipients", [30, 80])
def test_baseline_starts_every_post_at_once_at_most_50_in_flight(
    table: Table, stub: ConnectionsStub, baseline_handler: Handler, recipients: int
) -> None:
    """Promise.all over the SDK v2 agent's 50 sockets: min(recipients, 50) posts at once.

    Each post takes ``POST_S``, long enough for 50 connections to open on a busy host
    before the first answer comes back.
    """
    sender, *others = ids(recipients + 1)
    table.add([sender, *others])
    slow = Reply(200, delay_s=POST_S)
    for connection_id in others:
        stub.script(connection_id, slow)

    started = time.monotonic()
    response = baseline_handler(message_event(sender, chat_body("all")), LambdaContext())
    elapsed_s = time.monotonic() - started

    assert response == {"statusCode": 200}
    assert sorted(stub.posted_ids()) == sorted(others)
    assert stub.max_in_flight == min(recipients, SDK_V2_MAX_SOCKETS)
    waves = -(-recipients // SDK_V2_MAX_SOCKETS)  # POST_S per wave of up to 50
    assert elapsed_s < POST_S * (waves + 1), f"{elapsed_s:.2f} s for {waves} wave(s) of posts"


def test_sequential_posts_one_after_another(
    table: Table,
    stub: ConnectionsStub,
    sequential_handler: Handler,
    baseline_handler: Handler,
) -> None:
    sender, *others = ids(6)
    table.add([sender, *others])
    slow = Reply(200, delay_s=0.5)
    for connection_id in others:
        stub.script(connection_id, slow)

    sequential_handler(message_event(sender, chat_body("a")), LambdaContext())
    sequential_in_flight = stub.max_in_flight
    stub.clear_requests()
    baseline_handler(message_event(sender, chat_body("b")), LambdaContext())

    assert sequential_in_flight == 1
    assert stub.max_in_flight == len(others)
    assert len(stub.posts()) == len(others)


def test_ignores_rooms(table: Table, stub: ConnectionsStub, tutorial_handler: Handler) -> None:
    sender, mate, elsewhere = ids(3)
    table.add([sender, mate], room="blue")
    table.add([elsewhere], room="green")

    tutorial_handler(message_event(sender, chat_body("hi")), LambdaContext())

    assert sorted(stub.posted_ids()) == sorted([mate, elsewhere])


@pytest.mark.parametrize("gone", [GONE, GONE_UNTYPED], ids=["typed-410", "bare-410"])
def test_gone_ids_stay_in_the_table_and_are_posted_to_again(
    table: Table, stub: ConnectionsStub, tutorial_handler: Handler, gone: Reply
) -> None:
    sender, stale, alive = ids(3)
    table.add([sender, stale, alive])
    stub.script(stale, gone)

    first = tutorial_handler(message_event(sender, chat_body("one")), LambdaContext())
    second = tutorial_handler(message_event(sender, chat_body("two")), LambdaContext())

    assert first == second == {"statusCode": 200}
    assert table.ids() == {sender, stale, alive}
    assert [r.body for r in stub.posts_to(stale)] == [b"one", b"two"]
    assert [r.body for r in stub.posts_to(alive)] == [b"one", b"two"]


def test_misses_everyone_past_the_first_scan_page_where_optimized_reaches_all(
    table: Table,
    stub: ConnectionsStub,
    tutorial_handler: Handler,
    sendmessage_handler: Handler,
) -> None:
    # ~1.2 MB of items: more than one 1 MB scan page (moto enforces the cap).
    sender, *others = ids(120)
    table.add([sender, *others], padding_bytes=10_000)

    tutorial_handler(message_event(sender, chat_body("baseline")), LambdaContext())
    reached_by_baseline = set(stub.posted_ids())
    stub.clear_requests()
    response = sendmessage_handler(message_event(sender, chat_body("optimized")), LambdaContext())
    reached_by_optimized = set(stub.posted_ids())

    assert table.ids() == {sender, *others}
    assert sender not in reached_by_baseline
    assert reached_by_baseline < set(others)
    assert reached_by_optimized == set(others)
    summary = json.loads(response["body"])
    assert summary["ScanPages"] >= 2
    assert summary["Delivered"] == len(others)


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("hello", json.JSONDecodeError),
        ('{"action": "sendmessage"}', KeyError),
        ('["sendmessage", "hello"]', TypeError),
        (None, KeyError),
    ],
    ids=["not-json", "no-message", "json-array", "no-body"],
)
def test_invalid_body_crashes_the_invocation(
    table: Table,
    stub: ConnectionsStub,
    tutorial_handler: Handler,
    body: str | None,
    error: type[Exception],
) -> None:
    sender, other = ids(2)
    table.add([sender, other])

    with pytest.raises(error):
        tutorial_handler(message_event(sender, body), LambdaContext())

    assert stub.requests() == []  # no error frame to the sender either


def test_non_string_message_is_broadcast_as_str(
    table: Table, stub: ConnectionsStub, tutorial_handler: Handler
) -> None:
    sender, other = ids(2)
    table.add([sender, other])

    response = tutorial_handler(message_event(sender, chat_body({"a": 1})), LambdaContext())

    assert response == {"statusCode": 200}
    assert [r.body for r in stub.posts_to(other)] == [b"{'a': 1}"]


def test_has_no_retry_of_its_own(
    table: Table,
    stub: ConnectionsStub,
    tutorial_handler: Handler,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With botocore's own retries off, each failed post is one request, then forgotten."""
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # read when the handler builds its client
    sender, throttled, bare_throttled, broken, alive = ids(5)
    table.add([sender, throttled, bare_throttled, broken, alive])
    stub.script(throttled, THROTTLED, OK)
    stub.script(bare_throttled, THROTTLED_UNTYPED, OK)
    stub.script(broken, SERVER_ERROR, OK)

    response = tutorial_handler(message_event(sender, chat_body("once")), LambdaContext())

    assert response == {"statusCode": 200}
    for connection_id in (throttled, bare_throttled, broken, alive):
        assert len(stub.posts_to(connection_id)) == 1, connection_id


def test_its_only_retries_are_botocores_defaults(
    table: Table, stub: ConnectionsStub, tutorial_handler: Handler
) -> None:
    """Left at defaults (standard mode, 3 attempts in all), botocore itself retries
    429s (typed or bare) and 5xx; what still fails after that is forgotten."""
    sender, throttled_once, broken, gone = ids(4)
    table.add([sender, throttled_once, broken, gone])
    stub.script(throttled_once, THROTTLED_UNTYPED, OK)
    stub.script(broken, SERVER_ERROR)
    stub.script(gone, GONE)

    response = tutorial_handler(message_event(sender, chat_body("m")), LambdaContext())

    assert response == {"statusCode": 200}
    assert len(stub.posts_to(throttled_once)) == 2
    assert len(stub.posts_to(broken)) == 3
    assert len(stub.posts_to(gone)) == 1


def test_scan_failure_is_500(
    table: Table,
    stub: ConnectionsStub,
    tutorial_handler: Handler,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TABLE_NAME", f"{table.name}-does-not-exist")
    response = tutorial_handler(message_event(new_connection_id(), chat_body("x")), LambdaContext())
    assert response == {"statusCode": 500}
    assert stub.requests() == []
