"""``$connect``: admission (token), room validation, and the stored item."""

from __future__ import annotations

import pytest

import connect
from aws_limits import (
    CONNECTION_KEY,
    MAX_CONNECTION_DURATION_S,
    ROOM_ATTRIBUTE,
    ROOM_INDEX,
    TTL_ATTRIBUTE,
    TTL_MARGIN_S,
)
from tests.handlers.support import (
    LambdaContext,
    Table,
    connect_event,
    new_connection_id,
)


def test_stores_connection_with_ttl_past_the_two_hour_limit(table: Table) -> None:
    connection_id = new_connection_id()
    connected_at_ms = 1_700_000_000_999

    response = connect.handler(connect_event(connection_id, None, connected_at_ms), LambdaContext())

    assert response["statusCode"] == 200
    item = table.get(connection_id)
    assert item is not None
    assert item[CONNECTION_KEY] == {"S": connection_id}
    assert item["connectedAt"] == {"N": str(connected_at_ms)}
    expected = 1_700_000_000 + int(MAX_CONNECTION_DURATION_S) + int(TTL_MARGIN_S)
    assert item[TTL_ATTRIBUTE] == {"N": str(expected)}
    assert ROOM_ATTRIBUTE not in item
    assert table.ids() == {connection_id}


def test_stores_a_valid_room_and_the_room_index_finds_it(table: Table) -> None:
    connection_id = new_connection_id()

    response = connect.handler(
        connect_event(connection_id, {"room": "lobby-1.b_2"}), LambdaContext()
    )

    assert response["statusCode"] == 200
    item = table.get(connection_id)
    assert item is not None
    assert item[ROOM_ATTRIBUTE] == {"S": "lobby-1.b_2"}
    found = table.client.query(
        TableName=table.name,
        IndexName=ROOM_INDEX,
        KeyConditionExpression="#r = :r",
        ExpressionAttributeNames={"#r": ROOM_ATTRIBUTE},
        ExpressionAttributeValues={":r": {"S": "lobby-1.b_2"}},
    )
    assert [i[CONNECTION_KEY]["S"] for i in found["Items"]] == [connection_id]


@pytest.mark.parametrize(
    "room",
    ["", "has space", "x" * 65, "../etc", "caf\u00e9", "a;DROP", "room\n"],
    ids=["empty", "space", "too-long", "path", "non-ascii", "semicolon", "newline"],
)
def test_bad_room_is_refused_and_nothing_is_stored(table: Table, room: str) -> None:
    connection_id = new_connection_id()

    response = connect.handler(connect_event(connection_id, {"room": room}), LambdaContext())

    assert response["statusCode"] == 400
    assert "room" in response["body"]
    assert table.ids() == set()


def test_longest_valid_room_is_accepted(table: Table) -> None:
    connection_id = new_connection_id()
    response = connect.handler(connect_event(connection_id, {"room": "r" * 64}), LambdaContext())
    assert response["statusCode"] == 200
    assert table.ids() == {connection_id}


@pytest.mark.parametrize(
    ("query", "status"),
    [
        (None, 401),
        ({"room": "lobby"}, 401),
        ({"token": ""}, 403),
        ({"token": "s3cret-but-wrong"}, 403),
        ({"token": "s3cret"}, 200),
        ({"token": "s3cret", "room": "lobby"}, 200),
    ],
    ids=["no-query", "no-token", "empty-token", "wrong-token", "right-token", "token-and-room"],
)
def test_auth_token_gates_admission(
    table: Table, monkeypatch: pytest.MonkeyPatch, query: dict[str, str] | None, status: int
) -> None:
    monkeypatch.setenv("AUTH_TOKEN", "s3cret")
    connection_id = new_connection_id()

    response = connect.handler(connect_event(connection_id, query), LambdaContext())

    assert response["statusCode"] == status
    assert table.ids() == ({connection_id} if status == 200 else set())


def test_without_auth_token_configured_a_token_is_not_needed(table: Table) -> None:
    connection_id = new_connection_id()
    response = connect.handler(connect_event(connection_id, {"token": "anything"}), LambdaContext())
    assert response["statusCode"] == 200
    assert table.ids() == {connection_id}


def test_missing_connection_id_is_a_bad_request(table: Table) -> None:
    event = connect_event(new_connection_id())
    del event["requestContext"]["connectionId"]
    assert connect.handler(event, LambdaContext())["statusCode"] == 400
    assert table.ids() == set()


def test_dynamodb_failure_refuses_the_handshake(
    table: Table, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TABLE_NAME", f"{table.name}-does-not-exist")
    connection_id = new_connection_id()

    response = connect.handler(connect_event(connection_id), LambdaContext())

    assert response["statusCode"] == 500
    assert table.ids() == set()
