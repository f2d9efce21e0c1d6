"""``fanout`` (sharded variant): post one shard of a broadcast, invoked asynchronously.

The event is a shard (``sharding.decode``): the @connections endpoint, the
message and the recipients. Each is posted exactly as the optimized handler
posts (``callbacks.post_with_retry``: bounded concurrency, 429/5xx retried with
jittered backoff inside the deadline), and ids answered 410 are batch-deleted
(``connection_store.delete_many``). ``sendmessage_sharded`` also calls
``post_shard`` for audiences too small to shard and for shards it could not
hand off.

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

from botocore.exceptions import BotoCoreError, ClientError

import connection_store
import sharding
from callbacks import PostResult, management_client, post_with_retry
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
    recipients: list[str],
    deadline: float,
) -> dict[str, int]:
    """Post ``data`` to every recipient before ``deadline``, then delete the stale ids.

    Returns the counts for the metrics line: Recipients, Delivered, Gone,
    Throttled, Failed, StaleRemoved.
    """
    client = management_client(endpoint, settings.post_concurrency)
    rng = random.Random(_RNG.random())
    results = list(
        pool.map(
            lambda cid: post_with_retry(
                client, cid, data, deadline, settings.post_max_attempts, rng
            ),
            recipients,
        )
    )
    outcomes = Counter(results)
    stale = [
        cid for cid, result in zip(recipients, results, strict=True) if result is PostResult.GONE
    ]
    cleanup_left = 0
    if stale:
        try:
            cleanup_left = connection_store.delete_many(
                connection_store.dynamodb_client(),
                settings.table_name,
                stale,
                deadline + settings.deadline_reserve_ms / 2000,
            )
        except (ClientError, BotoCoreError):
            logger.exception("could not delete %d stale connections", len(stale))
            cleanup_left = len(stale)
    return {
        "Recipients": len(recipients),
        "Delivered": outcomes[PostResult.DELIVERED],
        "Gone": outcomes[PostResult.GONE],
        "Throttled": outcomes[PostResult.THROTTLED],
        "Failed": outcomes[PostResult.FAILED],
        "StaleRemoved": len(stale) - cleanup_left,
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
    deadline = sharding.monotonic_deadline(
        sharding.remaining_ms(context), settings.deadline_reserve_ms
    )
    counts = post_shard(settings, _POOL, shard.endpoint, shard.data, shard.recipients, deadline)
    durations = {"FanoutMs": (time.monotonic() - started) * 1000}
    print(emf_line(int(time.time() * 1000), _DIMENSIONS, counts, durations), flush=True)
    return {"statusCode": 200, "body": json.dumps(counts)}
