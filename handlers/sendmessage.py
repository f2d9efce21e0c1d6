"""``sendmessage`` (optimized): broadcast to the sender's room, or to everyone.

What it does differently from ``sendmessage_baseline`` and why:

* clients live at module scope, so a warm environment reuses TCP/TLS connections;
* the body is validated; a bad one gets an error frame back and a 400, never a broadcast;
* the audience comes from a paginated scan (or the room GSI), so no page is missed;
* posts run with bounded concurrency, retrying 429/5xx with jittered backoff
  inside the Lambda deadline;
* a 410 (typed or not) marks an id stale; stale ids are batch-deleted at once;
* one EMF line per invocation carries the counts and durations.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

import connection_store
from callbacks import PostResult, management_client, post_with_retry
from emf import emf_line
from settings import Settings, callback_endpoint
from validation import BadRequest, connection_id_of, parse_sendmessage_body

logger = logging.getLogger()
logger.setLevel(logging.INFO)

_SETTINGS = Settings.from_environ()
_POOL = ThreadPoolExecutor(max_workers=_SETTINGS.post_concurrency, thread_name_prefix="post")
_RNG = random.Random()


def _deadline(context: Any, reserve_ms: int) -> float:
    """A ``time.monotonic()`` deadline for posting, leaving ``reserve_ms`` for cleanup."""
    remaining_ms = 3000
    get_remaining = getattr(context, "get_remaining_time_in_millis", None)
    if callable(get_remaining):
        remaining_ms = int(get_remaining())
    return time.monotonic() + max(0, remaining_ms - reserve_ms) / 1000


def _error_frame(client: Any, connection_id: str, reason: str) -> None:
    frame = json.dumps({"error": "BadRequest", "message": reason})
    try:
        client.post_to_connection(ConnectionId=connection_id, Data=frame.encode())
    except (ClientError, BotoCoreError):
        logger.info("could not send the error frame to %s", connection_id)


def _emit_metrics(status: int, counts: dict[str, int], durations_ms: dict[str, float]) -> None:
    """Exactly one EMF line per invocation, whatever its outcome."""
    dimensions = {"Variant": "optimized"}
    counts = {**counts, "BadRequest": int(status == 400), "AudienceError": int(status == 500)}
    print(emf_line(int(time.time() * 1000), dimensions, counts, durations_ms), flush=True)


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    counts: dict[str, int] = {}
    durations_ms: dict[str, float] = {}
    result = _broadcast(event, context, counts, durations_ms)
    _emit_metrics(result["statusCode"], counts, durations_ms)
    return result


def _broadcast(
    event: dict[str, Any], context: Any, counts: dict[str, int], durations_ms: dict[str, float]
) -> dict[str, Any]:
    """Validate, read the audience, post, clean up; fills ``counts`` and ``durations_ms``."""
    settings = _SETTINGS
    started = time.monotonic()
    try:
        sender = connection_id_of(event)
        client = management_client(callback_endpoint(event, settings), settings.post_concurrency)
    except (BadRequest, ValueError, KeyError) as error:
        return {"statusCode": 400, "body": str(error)}
    try:
        chat = parse_sendmessage_body(event.get("body"))
    except BadRequest as error:
        _error_frame(client, sender, str(error))
        return {"statusCode": 400, "body": str(error)}

    dynamodb = connection_store.dynamodb_client()
    try:
        room = connection_store.room_of(dynamodb, settings.table_name, sender)
        if room is not None:
            ids, pages, scanned = connection_store.query_room(dynamodb, settings.table_name, room)
        else:
            ids, pages, scanned = connection_store.scan_all(
                dynamodb, settings.table_name, settings.scan_segments
            )
    except (ClientError, BotoCoreError):
        logger.exception("could not read the audience")
        return {"statusCode": 500, "body": "could not read the audience"}
    scanned_at = time.monotonic()
    durations_ms["ScanMs"] = (scanned_at - started) * 1000

    recipients = [cid for cid in ids if cid != sender]
    data = chat.message.encode()
    deadline = _deadline(context, settings.deadline_reserve_ms)
    rng = random.Random(_RNG.random())
    results = list(
        _POOL.map(
            lambda cid: post_with_retry(
                client, cid, data, deadline, settings.post_max_attempts, rng
            ),
            recipients,
        )
    )
    durations_ms["FanoutMs"] = (time.monotonic() - scanned_at) * 1000
    outcomes = Counter(results)
    stale = [
        cid for cid, result in zip(recipients, results, strict=True) if result is PostResult.GONE
    ]
    cleanup_left = 0
    if stale:
        try:
            cleanup_left = connection_store.delete_many(
                dynamodb, settings.table_name, stale, deadline + settings.deadline_reserve_ms / 2000
            )
        except (ClientError, BotoCoreError):
            logger.exception("could not delete %d stale connections", len(stale))
            cleanup_left = len(stale)

    counts.update(
        {
            "Recipients": len(recipients),
            "Delivered": outcomes[PostResult.DELIVERED],
            "Gone": outcomes[PostResult.GONE],
            "Throttled": outcomes[PostResult.THROTTLED],
            "Failed": outcomes[PostResult.FAILED],
            "StaleRemoved": len(stale) - cleanup_left,
            "ScanPages": pages,
            "ItemsScanned": scanned,
        }
    )
    return {"statusCode": 200, "body": json.dumps(counts)}
