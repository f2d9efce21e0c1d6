"""``fanout`` (sharded variant): post one shard of a broadcast, invoked asynchronously.

The event is a shard (``sharding.decode``): the @connections endpoint, the
message and the recipients with their connect times. They are posted by the
optimized handler's own code (``broadcast.post_all``: paced under 429s, every
attempt fitting the deadline, unknown outcomes not re-sent, stale ids
batch-deleted). ``sendmessage_sharded`` also calls it for audiences too small to
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
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import sharding
from broadcast import post_all
from deadline import monotonic_deadline
from emf import emf_line
from settings import Settings

logger = logging.getLogger()
logger.setLevel(logging.INFO)

_SETTINGS = Settings.from_environ()
_POOL = ThreadPoolExecutor(max_workers=_SETTINGS.post_concurrency, thread_name_prefix="post")
_DIMENSIONS = {"Variant": "sharded", "Function": "fanout"}


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
    counts = post_all(
        settings, _POOL, shard.endpoint, shard.data, shard.recipients, invocation_ends
    )
    durations = {"FanoutMs": (time.monotonic() - started) * 1000}
    print(emf_line(int(time.time() * 1000), _DIMENSIONS, counts, durations), flush=True)
    return {"statusCode": 200, "body": json.dumps(counts)}
