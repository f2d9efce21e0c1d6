"""``sendmessage_sharded`` and ``fanout``: the audience split into shards, handed off by
asynchronous Invoke, each shard posted once; small audiences and refused hand-offs
posted by sendmessage itself; an unknown sender refused; stale ids cleaned up by the
fan-out, ids still in their handshake kept. Every test runs on both post clients
(``POST_CLIENT``), which the fan-out honours as sendmessage does.

moto's DynamoDB, the @connections stub and a Lambda Invoke stand-in are real HTTP
servers, so boto3 does exactly what it does against AWS.
"""

from __future__ import annotations

import importlib
import json
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import pytest

from callbacks import PostClientKind
from fanbench_common.resources import FANOUT_FUNCTION
from loadtest.stage.template import load_template, stage_template
from tests.handlers.lambda_stub import LambdaStub
from tests.handlers.support import (
    GONE,
    ConnectionsStub,
    LambdaContext,
    Reply,
    Table,
    chat_body,
    message_event,
    new_connection_id,
)
from tests.repo import TEMPLATE_PATH

SHARD_SIZE = 10
Loader = Callable[..., ModuleType]


@pytest.fixture(scope="module")
def lambda_server() -> Iterator[LambdaStub]:
    server = LambdaStub()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def lambda_stub(lambda_server: LambdaStub) -> LambdaStub:
    lambda_server.reset()
    return lambda_server


@pytest.fixture
def ledger_table(table: Table) -> Iterator[str]:
    """A fresh fan-out ledger, created from template.yaml's ``FanoutLedgerTable``."""
    name = f"ledger-{uuid.uuid4().hex}"
    stage = stage_template(load_template(TEMPLATE_PATH), {"Variant": "sharded"}, "t")
    (spec,) = [t for t in stage.tables if t.logical_id == "FanoutLedgerTable"]
    table.client.create_table(**spec.create_table_kwargs(name))
    yield name
    table.client.delete_table(TableName=name)


@pytest.fixture
def load(
    table: Table,
    lambda_stub: LambdaStub,
    monkeypatch: pytest.MonkeyPatch,
    post_client_kind: PostClientKind,
    ledger_table: str,
) -> Loader:
    """(Re)import fanout and sendmessage_sharded under the env; both read it at import.

    Parametrized over ``post_client_kind`` (``POST_CLIENT``): each test runs on both.
    """
    import fanout
    import sendmessage_sharded

    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", lambda_stub.url)

    def loader(**env: str) -> ModuleType:
        settings = {
            "FANOUT_FUNCTION": FANOUT_FUNCTION,
            "SHARD_SIZE": str(SHARD_SIZE),
            "LEDGER_TABLE": ledger_table,
            **env,
        }
        for name, value in settings.items():
            monkeypatch.setenv(name, value)
        pools = [fanout._POOL, sendmessage_sharded._POOL, sendmessage_sharded._HAND_OFF_POOL]
        importlib.reload(fanout)
        importlib.reload(sendmessage_sharded)
        for pool in pools:
            pool.shutdown(wait=True)
        return sendmessage_sharded

    return loader


def now_ms() -> int:
    return int(time.time() * 1000)


def ids(count: int) -> list[str]:
    return [new_connection_id() for _ in range(count)]


def send(module: ModuleType, sender: str, message: object = "hello") -> dict[str, Any]:
    response: dict[str, Any] = module.handler(
        message_event(sender, chat_body(message)), LambdaContext()
    )
    return response


def counts_of(response: dict[str, Any]) -> dict[str, int]:
    assert response["statusCode"] == 200, response
    body: dict[str, int] = json.loads(response["body"])
    return body


def run_fanouts(lambda_stub: LambdaStub) -> list[dict[str, Any]]:
    """Run every accepted shard through the fan-out handler, as Lambda would."""
    import fanout

    return [fanout.handler(i.event(), LambdaContext()) for i in lambda_stub.accepted()]


def test_a_large_audience_goes_out_in_shards_each_recipient_once(
    table: Table, stub: ConnectionsStub, lambda_stub: LambdaStub, load: Loader
) -> None:
    sender, *others = ids(3 * SHARD_SIZE + 7)
    table.add([sender, *others])
    module = load()

    counts = counts_of(send(module, sender, "h\u00e9llo \U0001f44b"))

    assert counts["Recipients"] == len(others)
    assert counts["Shards"] == counts["HandedOff"] == 4
    assert counts["InlineRecipients"] == 0
    assert stub.posts() == []  # sendmessage posted nothing itself
    invocations = lambda_stub.invocations()
    assert {(i.function, i.invocation_type) for i in invocations} == {(FANOUT_FUNCTION, "Event")}
    shard_sizes = sorted(len(i.event()["recipients"]) for i in invocations)
    assert shard_sizes == [6, SHARD_SIZE, SHARD_SIZE, SHARD_SIZE]

    results = run_fanouts(lambda_stub)

    assert all(r["statusCode"] == 200 for r in results)
    assert Counter(stub.posted_ids()) == Counter(others)  # once each, never the sender
    assert {r.body for r in stub.posts()} == {"h\u00e9llo \U0001f44b".encode()}


def test_an_audience_of_one_shard_is_posted_by_sendmessage(
    table: Table, stub: ConnectionsStub, lambda_stub: LambdaStub, load: Loader
) -> None:
    sender, *others = ids(SHARD_SIZE + 1)
    table.add([sender, *others])

    counts = counts_of(send(load(), sender))

    assert lambda_stub.invocations() == []
    assert sorted(stub.posted_ids()) == sorted(others)
    assert (counts["Shards"], counts["InlineDelivered"]) == (0, SHARD_SIZE)


def test_without_a_fanout_function_everything_is_posted_here(
    table: Table, stub: ConnectionsStub, lambda_stub: LambdaStub, load: Loader
) -> None:
    sender, *others = ids(2 * SHARD_SIZE + 1)
    table.add([sender, *others])

    counts = counts_of(send(load(FANOUT_FUNCTION=""), sender))

    assert lambda_stub.invocations() == []
    assert sorted(stub.posted_ids()) == sorted(others)
    assert counts["InlineDelivered"] == 2 * SHARD_SIZE


def test_a_refused_hand_off_is_posted_by_sendmessage_and_loses_nobody(
    table: Table, stub: ConnectionsStub, lambda_stub: LambdaStub, load: Loader
) -> None:
    sender, *others = ids(3 * SHARD_SIZE + 1)
    table.add([sender, *others])
    module = load()
    # a 400 is not retried by boto3: exactly one of the three shards is refused
    lambda_stub.refuse_with(1, 400, "InvalidParameterValueException")

    counts = counts_of(send(module, sender))

    assert (counts["Shards"], counts["HandedOff"], counts["HandOffFailed"]) == (3, 2, 1)
    assert counts["InlineDelivered"] == SHARD_SIZE
    assert len(stub.posts()) == SHARD_SIZE
    run_fanouts(lambda_stub)
    assert Counter(stub.posted_ids()) == Counter(others)


def test_throttled_hand_offs_are_retried_then_posted_here(
    table: Table, stub: ConnectionsStub, lambda_stub: LambdaStub, load: Loader
) -> None:
    sender, *others = ids(2 * SHARD_SIZE + 1)
    table.add([sender, *others])
    module = load()
    lambda_stub.refuse_with(1_000, 429, "TooManyRequestsException")

    counts = counts_of(send(module, sender))

    # HAND_OFF_ATTEMPTS (3) Invokes per shard, none by botocore, before sendmessage takes it
    assert len(lambda_stub.invocations()) == 2 * 3
    assert lambda_stub.accepted() == []
    assert (counts["HandedOff"], counts["HandOffFailed"]) == (0, 2)
    assert Counter(stub.posted_ids()) == Counter(others)


def test_only_the_senders_room_is_sharded(
    table: Table, stub: ConnectionsStub, lambda_stub: LambdaStub, load: Loader
) -> None:
    sender, *room = ids(2 * SHARD_SIZE + 1)
    outsiders = ids(SHARD_SIZE)
    table.add([sender, *room], room="lobby")
    table.add(outsiders, room="elsewhere")
    module = load()

    counts = counts_of(send(module, sender))
    run_fanouts(lambda_stub)

    assert counts["Shards"] == 2
    assert Counter(stub.posted_ids()) == Counter(room)


def test_a_bad_body_gets_an_error_frame_and_no_invocation(
    table: Table, stub: ConnectionsStub, lambda_stub: LambdaStub, load: Loader
) -> None:
    sender, *others = ids(2 * SHARD_SIZE + 1)
    table.add([sender, *others])
    module = load()

    response = module.handler(message_event(sender, '{"action": "sendmessage"}'), LambdaContext())

    assert response["statusCode"] == 400
    assert lambda_stub.invocations() == []
    assert stub.posted_ids() == [sender]
    assert json.loads(stub.posts()[0].body)["error"] == "BadRequest"


def test_the_fanout_deletes_stale_ids_and_keeps_the_rest(
    table: Table, stub: ConnectionsStub, lambda_stub: LambdaStub, load: Loader
) -> None:
    sender, *others = ids(2 * SHARD_SIZE + 1)
    stale = others[:3]
    table.add([sender, *others])
    for cid in stale:
        stub.script(cid, GONE)
    module = load()

    send(module, sender)
    results = [json.loads(r["body"]) for r in run_fanouts(lambda_stub)]

    assert sum(r["Gone"] for r in results) == sum(r["StaleRemoved"] for r in results) == 3
    assert table.ids() == {sender, *others} - set(stale)


def test_the_fanout_drops_a_malformed_event_without_raising(load: Loader) -> None:
    load()
    import fanout

    response = fanout.handler({"endpoint": "https://x", "data": "!!", "recipients": []}, None)
    assert response["statusCode"] == 400
    assert "base64" in response["body"]


def test_an_unknown_sender_gets_an_error_frame_and_nothing_is_handed_off(
    table: Table, stub: ConnectionsStub, lambda_stub: LambdaStub, load: Loader
) -> None:
    """Its room is unknown: sharding the whole table would cross rooms."""
    sender = new_connection_id()
    table.add(ids(2 * SHARD_SIZE + 1), room="blue")
    table.add(ids(2 * SHARD_SIZE + 1))

    response = send(load(), sender)

    assert response["statusCode"] == 400
    assert lambda_stub.invocations() == []
    assert stub.posted_ids() == [sender]
    frame = json.loads(stub.posts_to(sender)[0].body)
    assert frame["error"] == "BadRequest"
    assert "not in the connections table" in frame["message"]


def test_the_fanout_keeps_an_id_whose_handshake_is_in_progress(
    table: Table, stub: ConnectionsStub, lambda_stub: LambdaStub, load: Loader
) -> None:
    """The shard carries each recipient's connect time: a 410 right after ``$connect``
    is a client about to join, not a stale id, in a fan-out as in sendmessage."""
    sender, stale, *others = ids(2 * SHARD_SIZE + 1)
    connecting = new_connection_id()
    table.add([sender, stale, *others])
    table.add([connecting], connected_at_ms=now_ms())
    stub.script(stale, GONE)
    stub.script(connecting, GONE)
    module = load()

    counts = counts_of(send(module, sender))
    results = [json.loads(r["body"]) for r in run_fanouts(lambda_stub)]

    assert counts["Shards"] == 3
    assert sum(r["Gone"] for r in results) == 2
    assert sum(r["GoneInHandshake"] for r in results) == 1
    assert sum(r["StaleRemoved"] for r in results) == 1
    assert table.ids() == {sender, connecting, *others}


def test_the_fanout_posts_with_the_post_client_setting(
    table: Table,
    stub: ConnectionsStub,
    lambda_stub: LambdaStub,
    load: Loader,
    post_client_kind: PostClientKind,
) -> None:
    """boto3's client says so in its User-Agent; the signed client sends none."""
    sender, *others = ids(2 * SHARD_SIZE + 1)
    table.add([sender, *others])
    module = load()

    counts_of(send(module, sender))
    run_fanouts(lambda_stub)

    assert Counter(stub.posted_ids()) == Counter(others)
    by_boto3 = {(r.header("User-Agent") or "").startswith("Boto3/") for r in stub.posts()}
    assert by_boto3 == {post_client_kind == "boto3"}


# --- at least once, posted once -------------------------------------------------------


def test_a_shard_delivered_twice_is_posted_once(
    table: Table, stub: ConnectionsStub, lambda_stub: LambdaStub, load: Loader
) -> None:
    """Lambda may deliver one asynchronous event twice, or run it again after it has
    posted and then failed: the ledger's claim makes the second run post nothing."""
    sender, *others = ids(2 * SHARD_SIZE + 1)
    table.add([sender, *others])
    module = load()
    import fanout

    counts_of(send(module, sender))
    events = [i.event() for i in lambda_stub.accepted()]
    first = [counts_of(fanout.handler(event, LambdaContext())) for event in events]
    again = [counts_of(fanout.handler(event, LambdaContext())) for event in events]

    assert Counter(stub.posted_ids()) == Counter(others)
    assert [c["DuplicateShards"] for c in first] == [0, 0]
    assert [c["DuplicateShards"] for c in again] == [1, 1]
    assert all(event["key"] for event in events)
    assert len({event["key"] for event in events}) == 2


def test_a_claim_whose_run_died_lapses_and_the_shard_is_posted(
    table: Table, stub: ConnectionsStub, lambda_stub: LambdaStub, load: Loader, ledger_table: str
) -> None:
    """A run that claimed a shard and died part-way (never marked it done) must not
    keep it from Lambda's retry once its own deadline has passed."""
    import connection_store
    import ledger

    sender, *others = ids(2 * SHARD_SIZE + 1)
    table.add([sender, *others])
    module = load()
    import fanout

    counts_of(send(module, sender))
    event = lambda_stub.accepted()[0].event()
    dynamodb = connection_store.dynamodb_client()
    died_at = time.time() - 60  # claimed a minute ago for its 29 s, never marked done
    assert ledger.claim(dynamodb, ledger_table, event["key"], died_at, 29.0) is ledger.Claim.CLAIMED

    counts = counts_of(fanout.handler(event, LambdaContext()))

    assert counts["DuplicateShards"] == 0
    assert counts["Delivered"] == SHARD_SIZE
    assert ledger.claim(dynamodb, ledger_table, event["key"], time.time(), 29.0) is (
        ledger.Claim.TAKEN
    )


def test_a_fanout_that_cannot_claim_raises_before_posting_anything(
    table: Table, stub: ConnectionsStub, lambda_stub: LambdaStub, load: Loader
) -> None:
    """Lambda retries a failed event; failing before the first post loses nothing."""
    sender, *others = ids(2 * SHARD_SIZE + 1)
    table.add([sender, *others])
    module = load()
    counts_of(send(module, sender))
    event = lambda_stub.accepted()[0].event()
    module = load(LEDGER_TABLE="no-such-ledger")
    import fanout

    with pytest.raises(fanout.LedgerUnavailable):
        fanout.handler(event, LambdaContext())
    assert stub.posts() == []


def test_invoke_is_one_attempt_of_botocores(load: Loader) -> None:
    """botocore's retries would Invoke again after a read timeout: a shard queued twice."""
    module = load()
    for budget_s in (7.0, 1.0):
        retries = module.lambda_client(budget_s).meta.config.retries
        assert retries is not None
        assert retries.get("total_max_attempts") == 1


def test_an_invoke_without_an_answer_is_posted_once_by_whoever_claims_it(
    table: Table, stub: ConnectionsStub, lambda_stub: LambdaStub, load: Loader
) -> None:
    """Lambda queued the shard but the answer came too late: sendmessage posts it under
    the ledger's claim, and the queued event, when it runs, finds it taken."""
    sender, *others = ids(2 * SHARD_SIZE + 1)
    table.add([sender, *others])
    module = load(DEADLINE_RESERVE_MS="400")
    lambda_stub.answer_late(1, 1.5)  # past the 1 s budget's 0.71 s read timeout
    import fanout

    response = module.handler(
        message_event(sender, chat_body("hi")), LambdaContext(remaining_ms=1_500)
    )
    counts = counts_of(response)
    queued = lambda_stub.accepted()
    results = [counts_of(fanout.handler(i.event(), LambdaContext())) for i in queued]

    assert (counts["HandedOff"], counts["HandOffUnknown"]) == (1, 1)
    assert len(lambda_stub.invocations()) == 2  # no Invoke was sent twice
    assert counts["InlineDelivered"] == SHARD_SIZE
    assert sorted(r["DuplicateShards"] for r in results) == [0, 1]
    assert Counter(stub.posted_ids()) == Counter(others)


def test_a_fanout_ends_posting_deadline_reserve_ms_before_its_deadline(
    table: Table, stub: ConnectionsStub, lambda_stub: LambdaStub, load: Loader
) -> None:
    sender, *others = ids(2 * SHARD_SIZE + 1)
    table.add([sender, *others])
    module = load(DEADLINE_RESERVE_MS="1800")
    import fanout

    counts_of(send(module, sender))
    event = lambda_stub.accepted()[0].event()
    hanging = event["recipients"][0][0]
    stub.script(hanging, Reply(200, delay_s=4.0))

    started = time.monotonic()
    # 1.7 s to post in: a 0.7 s window left a loaded host no time to post at all.
    counts = counts_of(fanout.handler(event, LambdaContext(remaining_ms=3_500)))
    elapsed_s = time.monotonic() - started

    assert counts["Unknown"] == 1
    assert counts["Delivered"] == SHARD_SIZE - 1
    assert elapsed_s < 2.1, f"posting ran {elapsed_s:.2f} s into a 1.7 s window"
