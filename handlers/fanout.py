"""``fanout`` (sharded variant): post one shard of a broadcast, invoked asynchronously.

The event is a shard (``sharding.decode``): the @connections endpoint, the
message and the recipients with their connect times. Each is posted exactly as
the optimized handler posts: through the client ``POST_CLIENT`` names
(``callbacks.post_client``), with ``callbacks.post_with_retry`` (bounded
concurrency, 429/5xx retried with jittered backoff, every attempt's timeouts
fitting the deadline). Ids answered 410 once their handshake is over
(``connection_store.past_handshake``) are batch-deleted
(``connection_store.delete_many``), the deadline checked before every batch.
``sendmessage_sharded`` also calls ``post_shard`` for audiences too small to
shard and for shards it could not hand off.

The handler never raises once posting has begun: Lambda retries a failed
asynchronous invocation (twice, 1 and 2 minutes later) by re-running the whole
event, which would post the shard again to everyone who already had it. Errors
before the first post (a crash, a timeout at start-up) are retried, and lose
nothing. A malformed event is logged and dropped: a retry would fail alike.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import connection_store
import sharding
from callbacks import ConnectionPoster, PostResult, post_client, post_with_retry
from connection_store import Member
from deadline import monotonic_deadline
from emf import emf_line
from settings import Settings

logger = logging.getLogger()
logger.setLevel(logging.INFO)

_SETTINGS = Settings.from_environ()
_POOL = ThreadPoolExecutor(max_workers=_SETTINGS.post_concurrency, thread_name_prefix="post")
_RNG = random.Random()
_DIMENSIONS = {"Variant": "sharded", "Function": "fanout"}


def post_shard(
    settings: Settings,
    pool: ThreadPoolExecutor,
    endpoint: str,
    data: bytes,
    recipients: list[Member],
    invocation_ends: float,
) -> dict[str, int]:
    """Post ``data`` to every recipient, then delete the stale ids, as sendmessage does.

    ``invocation_ends`` is the invocation's own deadline (``time.monotonic()``):
    posts end ``DEADLINE_RESERVE_MS`` before it, the cleanup half that before it.
    Returns the counts for the metrics line: Recipients, Delivered, Gone,
    GoneInHandshake, Throttled, Failed, StaleRemoved.
    """
    deadline = invocation_ends - settings.deadline_reserve_ms / 1000
    rng = random.Random(_RNG.random())

    def client_for(budget_s: float) -> ConnectionPoster:
        return post_client(endpoint, settings.post_concurrency, budget_s, settings.post_client)

    results = list(
        pool.map(
            lambda m: post_with_retry(
                client_for, m.connection_id, data, deadline, settings.post_max_attempts, rng
            ),
            recipients,
        )
    )
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
    return {
        "Recipients": len(recipients),
        "Delivered": outcomes[PostResult.DELIVERED],
        "Gone": outcomes[PostResult.GONE],
        "GoneInHandshake": len(gone) - len(stale),
        "Throttled": outcomes[PostResult.THROTTLED],
        "Failed": outcomes[PostResult.FAILED],
        "StaleRemoved": removed,
    }


def handler(event: Any, context: Any) -> dict[str, Any]:
    started = time.monotonic()
    settings = _SETTINGS
    try:
        shard = sharding.decode(event)
    except sharding.BadShard as error:
        logger.error("dropping a malformed shard: %s", error)
        counts = {"BadShard": 1}
        print(emf_line(int(time.time() * 1000), _DIMENSIONS, counts, {}), flush=True)
        return {"statusCode": 400, "body": str(error)}
    invocation_ends = monotonic_deadline(context, 0)
    counts = post_shard(
        settings, _POOL, shard.endpoint, shard.data, shard.recipients, invocation_ends
    )
    durations = {"FanoutMs": (time.monotonic() - started) * 1000}
    print(emf_line(int(time.time() * 1000), _DIMENSIONS, counts, durations), flush=True)
    return {"statusCode": 200, "body": json.dumps(counts)}
