"""The connections table: one item per open WebSocket connection.

All expressions are built from constants with placeholders; nothing a client
sends is ever spliced into an expression string.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from botocore.exceptions import BotoCoreError, ClientError

from aws_limits import (
    BATCH_WRITE_MAX_ITEMS,
    CONNECTION_KEY,
    MAX_CONNECTION_DURATION_S,
    ROOM_ATTRIBUTE,
    ROOM_INDEX,
    TTL_ATTRIBUTE,
    TTL_MARGIN_S,
)
from deadline import CALL_BUDGETS_S, call_budget_s, timeouts_s

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


CONNECTED_AT = "connectedAt"
"""API Gateway's ``requestContext.connectedAt`` (epoch ms), as ``$connect`` stored it."""


class Member(NamedTuple):
    """One connection of an audience, with when its handshake began."""

    connection_id: str
    connected_at_ms: int


@dataclass(frozen=True)
class Sender:
    """The sender's item: it exists; ``room`` is None when it joined no room."""

    room: str | None


def expires_at(connected_at_ms: int) -> int:
    """TTL backstop in epoch seconds: past the 2 h connection limit, plus a margin."""
    return int(connected_at_ms / 1000 + MAX_CONNECTION_DURATION_S + TTL_MARGIN_S)


def put_connection(
    client: DynamoDBClient, table: str, connection_id: str, connected_at_ms: int, room: str | None
) -> None:
    item: dict[str, Any] = {
        CONNECTION_KEY: {"S": connection_id},
        CONNECTED_AT: {"N": str(connected_at_ms)},
        TTL_ATTRIBUTE: {"N": str(expires_at(connected_at_ms))},
    }
    if room is not None:
        item[ROOM_ATTRIBUTE] = {"S": room}
    client.put_item(TableName=table, Item=item)


def delete_connection(client: DynamoDBClient, table: str, connection_id: str) -> None:
    """Delete one item; deleting an absent item succeeds, so this is idempotent."""
    client.delete_item(TableName=table, Key={CONNECTION_KEY: {"S": connection_id}})


def find_sender(client: DynamoDBClient, table: str, connection_id: str) -> Sender | None:
    """The sender's item, read consistently: None when the table has no item for it.

    An eventually consistent read can miss an item written moments ago, and a
    sender with no visible item must not be mistaken for one without a room.
    """
    response = client.get_item(
        TableName=table,
        Key={CONNECTION_KEY: {"S": connection_id}},
        ProjectionExpression="#id, #room",
        ExpressionAttributeNames={"#id": CONNECTION_KEY, "#room": ROOM_ATTRIBUTE},
        ConsistentRead=True,
    )
    item = response.get("Item")
    if item is None:
        return None
    room = item.get(ROOM_ATTRIBUTE, {}).get("S")
    return Sender(room=room)


def _members(items: Sequence[dict[str, Any]]) -> Iterator[Member]:
    for item in items:
        connected_at = item.get(CONNECTED_AT, {}).get("N", "0")
        yield Member(item[CONNECTION_KEY]["S"], int(connected_at))


_AUDIENCE_PROJECTION = {
    "ProjectionExpression": "#id, #at",
    "ExpressionAttributeNames": {"#id": CONNECTION_KEY, "#at": CONNECTED_AT},
}


_NO_ROOM_FILTER: dict[str, Any] = {
    "FilterExpression": "attribute_not_exists(#room)",
    "ExpressionAttributeNames": {
        "#id": CONNECTION_KEY,
        "#at": CONNECTED_AT,
        "#room": ROOM_ATTRIBUTE,
    },
}


def _scan_segment(
    client: DynamoDBClient, table: str, segment: int, total_segments: int, roomless: bool = False
) -> tuple[list[Member], int, int]:
    """All members in one scan segment, following ``LastEvaluatedKey`` to the end.

    Returns (members, pages, items scanned). Pages may be empty (DynamoDB can
    return a key and then an empty page), so only a missing key ends the loop.
    ``roomless`` keeps only the connections that joined no room.
    """
    ids: list[Member] = []
    pages = scanned = 0
    kwargs: dict[str, Any] = {"TableName": table, **_AUDIENCE_PROJECTION}
    if roomless:
        kwargs.update(_NO_ROOM_FILTER)
    if total_segments > 1:
        kwargs.update(Segment=segment, TotalSegments=total_segments)
    while True:
        page = client.scan(**kwargs)
        pages += 1
        scanned += page.get("ScannedCount", 0)
        ids.extend(_members(page.get("Items", [])))
        last_key = page.get("LastEvaluatedKey")
        if not last_key:
            return ids, pages, scanned
        kwargs["ExclusiveStartKey"] = last_key


def scan_all(
    client: DynamoDBClient, table: str, segments: int = 1, roomless: bool = False
) -> tuple[list[Member], int, int]:
    """Every connection in the table (``roomless``: every one in no room):
    (members, pages read, items scanned)."""
    if segments == 1:
        return _scan_segment(client, table, 0, 1, roomless)
    with ThreadPoolExecutor(max_workers=segments) as pool:
        parts = list(
            pool.map(lambda s: _scan_segment(client, table, s, segments, roomless), range(segments))
        )
    ids = [connection_id for part in parts for connection_id in part[0]]
    return ids, sum(part[1] for part in parts), sum(part[2] for part in parts)


def query_room(client: DynamoDBClient, table: str, room: str) -> tuple[list[Member], int, int]:
    """Every connection in ``room`` via the room GSI: (members, pages, items read).

    The index projects ``connectedAt`` beside the keys (template.yaml), so the
    query needs no read of the table itself.
    """
    ids: list[Member] = []
    pages = scanned = 0
    kwargs: dict[str, Any] = {
        "TableName": table,
        "IndexName": ROOM_INDEX,
        "KeyConditionExpression": "#room = :room",
        "ProjectionExpression": "#id, #at",
        "ExpressionAttributeNames": {
            "#room": ROOM_ATTRIBUTE,
            "#id": CONNECTION_KEY,
            "#at": CONNECTED_AT,
        },
        "ExpressionAttributeValues": {":room": {"S": room}},
    }
    while True:
        page = client.query(**kwargs)
        pages += 1
        scanned += page.get("ScannedCount", 0)
        ids.extend(_members(page.get("Items", [])))
        last_key = page.get("LastEvaluatedKey")
        if not last_key:
            return ids, pages, scanned
        kwargs["ExclusiveStartKey"] = last_key


def past_handshake(members: Sequence[Member], now_ms: int, grace_ms: int) -> list[str]:
    """The ids among ``members`` whose handshake began more than ``grace_ms`` ago.

    ``$connect`` stores the item before API Gateway opens the connection, and a
    post in between is answered 410 as if the id were stale. Once the
    integration timeout has passed since ``connectedAt`` the handshake has either
    completed or failed, so a 410 then means gone for good; before, the id may
    belong to a client that is about to receive everything.
    """
    return [m.connection_id for m in members if now_ms - m.connected_at_ms > grace_ms]


@dataclass(frozen=True)
class Deleted:
    """What ``delete_many`` did: ``removed`` is only what DynamoDB confirmed."""

    removed: int
    left: int
    """Not confirmed removed (unprocessed, not attempted, or in a call that failed)."""
    error: str | None = None


DYNAMODB_THROTTLES = frozenset(
    {"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded"}
)
"""Error codes that mean "not now": the batch is retried after a pause, not given up."""

DynamoDBForBudget = Callable[[float], "DynamoDBClient"]
"""Given a call budget in seconds, a DynamoDB client whose timeouts fit it."""


def delete_many(
    client_for: DynamoDBForBudget,
    table: str,
    connection_ids: Sequence[str],
    deadline: float,
    max_attempts: int = 6,
    rng: random.Random | None = None,
) -> Deleted:
    """Delete ids with BatchWriteItem, 25 per call, retrying unprocessed items.

    Before every call the deadline (a ``time.monotonic()`` value) is checked and
    the call gets a client whose timeouts end by it; what is not confirmed
    deleted when attempts or time run out, or when a call fails, is ``left`` for
    a later broadcast (or TTL) to reclaim.
    """
    rng = rng or random.Random()
    removed = 0
    for start in range(0, len(connection_ids), BATCH_WRITE_MAX_ITEMS):
        chunk = connection_ids[start : start + BATCH_WRITE_MAX_ITEMS]
        requests: list[Any] = [
            {"DeleteRequest": {"Key": {CONNECTION_KEY: {"S": cid}}}} for cid in chunk
        ]
        for attempt in range(max_attempts):
            budget_s = call_budget_s(deadline - time.monotonic())
            if budget_s is None:
                return Deleted(removed, len(connection_ids) - removed)
            try:
                response = client_for(budget_s).batch_write_item(RequestItems={table: requests})
                unprocessed = list(response.get("UnprocessedItems", {}).get(table, []))
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") not in DYNAMODB_THROTTLES:
                    return Deleted(removed, len(connection_ids) - removed, str(error))
                unprocessed = requests  # throttled: none processed; paused and retried below
            except BotoCoreError as error:
                return Deleted(removed, len(connection_ids) - removed, str(error))
            removed += len(requests) - len(unprocessed)
            requests = unprocessed
            if not requests:
                break
            pause = rng.uniform(0, min(1.0, 0.05 * 2**attempt))
            if time.monotonic() + pause >= deadline:
                return Deleted(removed, len(connection_ids) - removed)
            time.sleep(pause)
    return Deleted(removed, len(connection_ids) - removed)


_client: DynamoDBClient | None = None
_budget_clients: dict[float, DynamoDBClient] = {}
_budget_clients_lock = threading.Lock()


def dynamodb_client() -> DynamoDBClient:
    """The execution environment's DynamoDB client, created on first use and kept warm."""
    global _client
    if _client is None:
        import boto3
        from botocore.config import Config

        config = Config(
            max_pool_connections=64,
            connect_timeout=2,
            read_timeout=5,
            retries={"mode": "standard", "max_attempts": 3},
        )
        _client = boto3.client("dynamodb", config=config)
    return _client


def dynamodb_client_within(budget_s: float = CALL_BUDGETS_S[0]) -> DynamoDBClient:
    """A warm DynamoDB client making one attempt whose timeouts add up to ``budget_s``.

    For calls against a deadline (the stale-id cleanup): botocore's own retries
    would multiply the time one call may take, so ``delete_many`` retries instead.
    """
    with _budget_clients_lock:
        client = _budget_clients.get(budget_s)
        if client is None:
            import boto3
            from botocore.config import Config

            connect_s, read_s = timeouts_s(budget_s)
            config = Config(
                max_pool_connections=8,
                connect_timeout=connect_s,
                read_timeout=read_s,
                retries={"mode": "standard", "total_max_attempts": 1},
            )
            client = boto3.client("dynamodb", config=config)
            _budget_clients[budget_s] = client
        return client
