"""``sendmessage`` (optimized): broadcast to the sender's room, or to everyone.

What it does differently from ``sendmessage_baseline`` and why:

* clients live at module scope, so a warm environment reuses TCP/TLS connections;
* the body is validated; a bad one gets an error frame back and a 400, never a broadcast;
* the sender's item is read consistently; a sender with no item gets an error
  frame and a 400 (its room is unknown, so a broadcast could cross rooms);
* the audience comes from a paginated scan (or the room GSI), so no page is missed;
* posts go through the client ``POST_CLIENT`` names (``callbacks``: boto3, or
  the same request SigV4-signed on a keep-alive connection, half the CPU);
* posts run with bounded concurrency, retrying 429/5xx and transport errors with
  jittered backoff; every attempt's timeouts fit the time left before the
  deadline (``deadline``), so a late post cannot run into Lambda's timeout;
* a 410 (typed or not) marks an id stale once its handshake is over
  (``connectedAt`` older than the integration timeout): ``$connect`` stores the
  item before the connection opens, and a 410 in that window is a client about
  to join, not a stale id. Stale ids are batch-deleted at once, the deadline
  checked before every batch, and only confirmed deletions are counted;
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
from callbacks import ConnectionPoster, PostResult, post_client, post_with_retry
from deadline import monotonic_deadline
from emf import emf_line
from settings import Settings, callback_endpoint
from validation import BadRequest, connection_id_of, parse_sendmessage_body

UNKNOWN_SENDER = "this connection is not in the connections table; reconnect"

logger = logging.getLogger()
logger.setLevel(logging.INFO)

_SETTINGS = Settings.from_environ()
_POOL = ThreadPoolExecutor(max_workers=_SETTINGS.post_concurrency, thread_name_prefix="post")
_RNG = random.Random()


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
    invocation_ends = monotonic_deadline(context, 0)
    try:
        sender = connection_id_of(event)
        endpoint = callback_endpoint(event, settings)
        client = post_client(endpoint, settings.post_concurrency, kind=settings.post_client)
    except (BadRequest, ValueError, KeyError) as error:
        return {"statusCode": 400, "body": str(error)}
    try:
        chat = parse_sendmessage_body(event.get("body"))
    except BadRequest as error:
        _error_frame(client, sender, str(error))
        return {"statusCode": 400, "body": str(error)}

    dynamodb = connection_store.dynamodb_client()
    try:
        found = connection_store.find_sender(dynamodb, settings.table_name, sender)
        if found is None:
            # Its room is unknown: broadcasting to everyone would leak across rooms.
            counts["UnknownSender"] = 1
            _error_frame(client, sender, UNKNOWN_SENDER)
            return {"statusCode": 400, "body": UNKNOWN_SENDER}
        if found.room is not None:
            audience, pages, scanned = connection_store.query_room(
                dynamodb, settings.table_name, found.room
            )
        else:
            audience, pages, scanned = connection_store.scan_all(
                dynamodb, settings.table_name, settings.scan_segments
            )
    except (ClientError, BotoCoreError):
        logger.exception("could not read the audience")
        return {"statusCode": 500, "body": "could not read the audience"}
    scanned_at = time.monotonic()
    durations_ms["ScanMs"] = (scanned_at - started) * 1000

    recipients = [m for m in audience if m.connection_id != sender]
    data = chat.message.encode()
    deadline = invocation_ends - settings.deadline_reserve_ms / 1000
    rng = random.Random(_RNG.random())

    def client_for(budget_s: float) -> ConnectionPoster:
        return post_client(endpoint, settings.post_concurrency, budget_s, settings.post_client)

    results = list(
        _POOL.map(
            lambda m: post_with_retry(
                client_for, m.connection_id, data, deadline, settings.post_max_attempts, rng
            ),
            recipients,
        )
    )
    durations_ms["FanoutMs"] = (time.monotonic() - scanned_at) * 1000
    outcomes = Counter(results)
    gone = [m for m, result in zip(recipients, results, strict=True) if result is PostResult.GONE]
    stale = connection_store.past_handshake(
        gone, int(time.time() * 1000), settings.handshake_grace_ms
    )
    removed = 0
    if stale:
        cleanup = connection_store.delete_many(
            connection_store.dynamodb_client_within,
            settings.table_name,
            stale,
            invocation_ends - settings.deadline_reserve_ms / 2000,
        )
        removed = cleanup.removed
        if cleanup.left:
            logger.warning(
                "%d of %d stale connections not removed: %s",
                cleanup.left,
                len(stale),
                cleanup.error or "out of time or attempts",
            )

    counts.update(
        {
            "Recipients": len(recipients),
            "Delivered": outcomes[PostResult.DELIVERED],
            "Gone": outcomes[PostResult.GONE],
            "GoneInHandshake": len(gone) - len(stale),
            "Throttled": outcomes[PostResult.THROTTLED],
            "Failed": outcomes[PostResult.FAILED],
            "StaleRemoved": removed,
            "ScanPages": pages,
            "ItemsScanned": scanned,
        }
    )
    return {"statusCode": 200, "body": json.dumps(counts)}
