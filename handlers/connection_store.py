"""The connections table: one item per open WebSocket connection.

All expressions are built from constants with placeholders; nothing a client
sends is ever spliced into an expression string.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from aws_limits import (
    BATCH_WRITE_MAX_ITEMS,
    CONNECTION_KEY,
    MAX_CONNECTION_DURATION_S,
    ROOM_ATTRIBUTE,
    ROOM_INDEX,
    TTL_ATTRIBUTE,
    TTL_MARGIN_S,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


def expires_at(connected_at_ms: int) -> int:
    """TTL backstop in epoch seconds: past the 2 h connection limit, plus a margin."""
    return int(connected_at_ms / 1000 + MAX_CONNECTION_DURATION_S + TTL_MARGIN_S)


def put_connection(
    client: DynamoDBClient, table: str, connection_id: str, connected_at_ms: int, room: str | None
) -> None:
    item: dict[str, Any] = {
        CONNECTION_KEY: {"S": connection_id},
        "connectedAt": {"N": str(connected_at_ms)},
        TTL_ATTRIBUTE: {"N": str(expires_at(connected_at_ms))},
    }
    if room is not None:
        item[ROOM_ATTRIBUTE] = {"S": room}
    client.put_item(TableName=table, Item=item)


def delete_connection(client: DynamoDBClient, table: str, connection_id: str) -> None:
    """Delete one item; deleting an absent item succeeds, so this is idempotent."""
    client.delete_item(TableName=table, Key={CONNECTION_KEY: {"S": connection_id}})


def room_of(client: DynamoDBClient, table: str, connection_id: str) -> str | None:
    response = client.get_item(
        TableName=table,
        Key={CONNECTION_KEY: {"S": connection_id}},
        ProjectionExpression="#room",
        ExpressionAttributeNames={"#room": ROOM_ATTRIBUTE},
    )
    room = response.get("Item", {}).get(ROOM_ATTRIBUTE, {}).get("S")
    return room


def _ids(items: Sequence[dict[str, Any]]) -> Iterator[str]:
    for item in items:
        yield item[CONNECTION_KEY]["S"]


def _scan_segment(
    client: DynamoDBClient, table: str, segment: int, total_segments: int
) -> tuple[list[str], int, int]:
    """All ids in one scan segment, following ``LastEvaluatedKey`` to the end.

    Returns (ids, pages, items scanned). Pages may be empty (DynamoDB can return
    a key and then an empty page), so only a missing key ends the loop.
    """
    ids: list[str] = []
    pages = scanned = 0
    kwargs: dict[str, Any] = {
        "TableName": table,
        "ProjectionExpression": "#id",
        "ExpressionAttributeNames": {"#id": CONNECTION_KEY},
    }
    if total_segments > 1:
        kwargs.update(Segment=segment, TotalSegments=total_segments)
    while True:
        page = client.scan(**kwargs)
        pages += 1
        scanned += page.get("ScannedCount", 0)
        ids.extend(_ids(page.get("Items", [])))
        last_key = page.get("LastEvaluatedKey")
        if not last_key:
            return ids, pages, scanned
        kwargs["ExclusiveStartKey"] = last_key


def scan_all(client: DynamoDBClient, table: str, segments: int = 1) -> tuple[list[str], int, int]:
    """Every connection id in the table: (ids, pages read, items scanned)."""
    if segments == 1:
        return _scan_segment(client, table, 0, 1)
    with ThreadPoolExecutor(max_workers=segments) as pool:
        parts = list(pool.map(lambda s: _scan_segment(client, table, s, segments), range(segments)))
    ids = [connection_id for part in parts for connection_id in part[0]]
    return ids, sum(part[1] for part in parts), sum(part[2] for part in parts)


def query_room(client: DynamoDBClient, table: str, room: str) -> tuple[list[str], int, int]:
    """Every connection id in ``room`` via the room GSI: (ids, pages, items read)."""
    ids: list[str] = []
    pages = scanned = 0
    kwargs: dict[str, Any] = {
        "TableName": table,
        "IndexName": ROOM_INDEX,
        "KeyConditionExpression": "#room = :room",
        "ProjectionExpression": "#id",
        "ExpressionAttributeNames": {"#room": ROOM_ATTRIBUTE, "#id": CONNECTION_KEY},
        "ExpressionAttributeValues": {":room": {"S": room}},
    }
    while True:
        page = client.query(**kwargs)
        pages += 1
        scanned += page.get("ScannedCount", 0)
        ids.extend(_ids(page.get("Items", [])))
        last_key = page.get("LastEvaluatedKey")
        if not last_key:
            return ids, pages, scanned
        kwargs["ExclusiveStartKey"] = last_key


def delete_many(
    client: DynamoDBClient,
    table: str,
    connection_ids: Sequence[str],
    deadline: float,
    max_attempts: int = 6,
    rng: random.Random | None = None,
) -> int:
    """Delete ids with BatchWriteItem, 25 per call, retrying unprocessed items.

    Returns how many deletes were left unprocessed when attempts or the deadline
    (a ``time.monotonic()`` value) ran out; TTL reclaims those later.
    """
    rng = rng or random.Random()
    left = 0
    for start in range(0, len(connection_ids), BATCH_WRITE_MAX_ITEMS):
        chunk = connection_ids[start : start + BATCH_WRITE_MAX_ITEMS]
        requests: list[Any] = [
            {"DeleteRequest": {"Key": {CONNECTION_KEY: {"S": cid}}}} for cid in chunk
        ]
        for attempt in range(max_attempts):
            response = client.batch_write_item(RequestItems={table: requests})
            requests = list(response.get("UnprocessedItems", {}).get(table, []))
            if not requests:
                break
            pause = rng.uniform(0, min(1.0, 0.05 * 2**attempt))
            if time.monotonic() + pause >= deadline:
                break
            time.sleep(pause)
        left += len(requests)
    return left


_client: DynamoDBClient | None = None


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
