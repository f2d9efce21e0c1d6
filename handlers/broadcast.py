"""The audience-and-post path the optimized and sharded handlers share.

``prepare`` validates a ``sendmessage`` event and reads its audience; ``post_all``
posts one message to a list of recipients and cleans up the stale ids. The
optimized ``sendmessage`` is ``prepare`` then ``post_all``; the sharded one is
``prepare``, a hand-off in shards, and ``post_all`` in each fan-out. One copy,
so the variants cannot drift apart.

Rooms: a sender in a room reaches its room (the room GSI). A sender that joined
no room (no ``?room=``) reaches the other room-less connections only, never the
members of a room: reaching every room would leak every room's traffic to
anyone who connects without one. ``ROOMLESS_AUDIENCE=everyone`` restores the
tutorial's broadcast-to-all for a deployment that has no rooms at all (there
the two are the same audience anyway, read by the same scan).
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

import connection_store
from callbacks import ConnectionPoster, PostResult, post_client, post_with_retry
from connection_store import Member
from pacing import Pacer
from settings import Settings, callback_endpoint
from validation import BadRequest, connection_id_of, parse_sendmessage_body

UNKNOWN_SENDER = "this connection is not in the connections table; reconnect"

logger = logging.getLogger()
_RNG = random.Random()


@dataclass(frozen=True)
class Broadcast:
    """A validated message and who should get it (the sender excluded)."""

    endpoint: str
    data: bytes
    recipients: list[Member]


def error_frame(client: ConnectionPoster, connection_id: str, reason: str) -> None:
    frame = json.dumps({"error": "BadRequest", "message": reason})
    try:
        client.post_to_connection(ConnectionId=connection_id, Data=frame.encode())
    except (ClientError, BotoCoreError):
        logger.info("could not send the error frame to %s", connection_id)


def prepare(
    event: dict[str, Any],
    settings: Settings,
    counts: dict[str, int],
    durations_ms: dict[str, float],
) -> Broadcast | dict[str, Any]:
    """The broadcast an event asks for, or the response that refuses it (400/500).

    A bad body and an unknown sender get an error frame back. Fills ``ScanMs``,
    ``ScanPages``, ``ItemsScanned`` and ``UnknownSender``.
    """
    started = time.monotonic()
    try:
        sender = connection_id_of(event)
        endpoint = callback_endpoint(event, settings)
        client = post_client(endpoint, settings.post_concurrency, kind=settings.post_client)
    except (BadRequest, ValueError, KeyError) as error:
        return {"statusCode": 400, "body": str(error)}
    try:
        chat = parse_sendmessage_body(event.get("body"))
    except BadRequest as error:
        error_frame(client, sender, str(error))
        return {"statusCode": 400, "body": str(error)}

    dynamodb = connection_store.dynamodb_client()
    try:
        found = connection_store.find_sender(dynamodb, settings.table_name, sender)
        if found is None:
            # Its room is unknown: broadcasting to everyone would leak across rooms.
            counts["UnknownSender"] = 1
            error_frame(client, sender, UNKNOWN_SENDER)
            return {"statusCode": 400, "body": UNKNOWN_SENDER}
        if found.room is not None:
            audience, pages, scanned = connection_store.query_room(
                dynamodb, settings.table_name, found.room
            )
        else:
            audience, pages, scanned = connection_store.scan_all(
                dynamodb,
                settings.table_name,
                settings.scan_segments,
                roomless=settings.roomless_audience == "roomless",
            )
    except (ClientError, BotoCoreError):
        logger.exception("could not read the audience")
        return {"statusCode": 500, "body": "could not read the audience"}
    durations_ms["ScanMs"] = (time.monotonic() - started) * 1000
    counts.update({"ScanPages": pages, "ItemsScanned": scanned})
    recipients = [m for m in audience if m.connection_id != sender]
    return Broadcast(endpoint, chat.message.encode(), recipients)


def post_all(
    settings: Settings,
    pool: ThreadPoolExecutor,
    endpoint: str,
    data: bytes,
    recipients: list[Member],
    invocation_ends: float,
) -> dict[str, int]:
    """Post ``data`` to every recipient, then delete the stale ids.

    ``invocation_ends`` is the invocation's own deadline (``time.monotonic()``):
    posts end ``DEADLINE_RESERVE_MS`` before it, the cleanup half that before it.
    Every post of the call shares one ``pacing.Pacer``, so under throttling they
    slow down together and keep going until the deadline.

    Returns the counts for the metrics line: Recipients, Delivered, Undelivered
    (certainly not delivered: still throttled, 5xx or unreachable, or not
    attempted in time), Unknown (sent, answer never came: not re-sent), Gone,
    GoneInHandshake, Failed (a non-retryable error), Throttles (429 answers, all
    attempts), StaleRemoved. Delivered + Undelivered + Unknown + Gone + Failed
    = Recipients.
    """
    deadline = invocation_ends - settings.deadline_reserve_ms / 1000
    rng = random.Random(_RNG.random())
    pacer = Pacer(time.monotonic())

    def client_for(budget_s: float) -> ConnectionPoster:
        return post_client(endpoint, settings.post_concurrency, budget_s, settings.post_client)

    results = list(
        pool.map(
            lambda m: post_with_retry(
                client_for, m.connection_id, data, deadline, settings.post_max_attempts, rng, pacer
            ),
            recipients,
        )
    )
    outcomes = Counter(results)
    if outcomes[PostResult.UNDELIVERED] or outcomes[PostResult.UNKNOWN]:
        logger.warning(
            "%d of %d posts undelivered and %d unknown at the deadline (%d 429 answers)",
            outcomes[PostResult.UNDELIVERED],
            len(recipients),
            outcomes[PostResult.UNKNOWN],
            pacer.throttles,
        )
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
    return {
        "Recipients": len(recipients),
        "Delivered": outcomes[PostResult.DELIVERED],
        "Undelivered": outcomes[PostResult.UNDELIVERED],
        "Unknown": outcomes[PostResult.UNKNOWN],
        "Gone": outcomes[PostResult.GONE],
        "GoneInHandshake": len(gone) - len(stale),
        "Failed": outcomes[PostResult.FAILED],
        "Throttles": pacer.throttles,
        "StaleRemoved": removed,
    }
