"""``fanout`` (sharded variant): post one shard of a broadcast, invoked asynchronously.

The event is a shard (``sharding.decode``): the @connections endpoint, the
message and the recipients with their connect times. They are posted by the
optimized handler's own code (``broadcast.post_all``: paced under 429s, every
attempt fitting the deadline, unknown outcomes not re-sent, stale ids
batch-deleted). ``sendmessage_sharded`` also calls it for audiences too small to
shard and for shards it could not hand off.

Lambda delivers an asynchronous event at least once: twice sometimes, and again
(twice more, 1 and 2 minutes later) after an invocation that failed or timed
out, even after it had posted. So the fan-out first claims the shard in the
ledger (``ledger``; ``post_once``): a shard already posted, or being posted by
another run, is skipped. The handler never raises once posting has begun, and
raises before it when the ledger cannot be written, so Lambda's retry loses
nothing. A malformed event is logged and dropped: a retry would fail alike.
"""

from __future__ import annotations

import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

import connection_store
import ledger
import sharding
from broadcast import post_all
from deadline import call_budget_s, monotonic_deadline
from emf import emf_line
from settings import Settings

logger = logging.getLogger()
logger.setLevel(logging.INFO)

_SETTINGS = Settings.from_environ()
_SHARDING = sharding.ShardSettings.from_environ()
_POOL = ThreadPoolExecutor(max_workers=_SETTINGS.post_concurrency, thread_name_prefix="post")
_DIMENSIONS = {"Variant": "sharded", "Function": "fanout"}


class LedgerUnavailable(Exception):
    """The ledger could not be written before posting: nothing has been posted."""


def post_once(
    settings: Settings,
    ledger_table: str,
    pool: ThreadPoolExecutor,
    shard: sharding.Shard,
    invocation_ends: float,
    *,
    post_if_unavailable: bool,
) -> dict[str, int]:
    """Post a shard unless another run has posted it or is posting it (``ledger``).

    A shard without a key, or without a ledger table, is simply posted. When the
    ledger cannot be written, ``post_if_unavailable`` decides: sendmessage posts
    anyway (a possible duplicate beats a loss it could not retry), the fan-out
    raises ``LedgerUnavailable`` before posting anything, so Lambda retries the
    event later and nothing is lost or doubled.
    """
    if not (ledger_table and shard.key):
        return post_all(
            settings, pool, shard.endpoint, shard.data, shard.recipients, invocation_ends
        )
    claimed = ledger.Claim.CLAIMED
    budget_s = call_budget_s(invocation_ends - time.monotonic())
    try:
        if budget_s is None:
            raise LedgerUnavailable("no time left to claim the shard")
        claimed = ledger.claim(
            connection_store.dynamodb_client_within(budget_s),
            ledger_table,
            shard.key,
            ledger.now_s(),
            invocation_ends - time.monotonic(),
        )
    except (ClientError, BotoCoreError, LedgerUnavailable) as error:
        if not post_if_unavailable:
            raise LedgerUnavailable(str(error)) from error
        logger.warning("could not claim shard %s (%s): posting it anyway", shard.key, error)
    if claimed is ledger.Claim.TAKEN:
        logger.info("shard %s is posted by another run: skipped", shard.key)
        return {"Recipients": len(shard.recipients), "DuplicateShards": 1}
    counts = post_all(settings, pool, shard.endpoint, shard.data, shard.recipients, invocation_ends)
    counts["DuplicateShards"] = 0
    budget_s = call_budget_s(invocation_ends - time.monotonic())
    try:
        if budget_s is None:
            raise LedgerUnavailable("no time left to mark the shard done")
        ledger.mark_done(connection_store.dynamodb_client_within(budget_s), ledger_table, shard.key)
    except (ClientError, BotoCoreError, LedgerUnavailable) as error:
        # The claim lapses at this invocation's deadline; a retry after that posts again.
        logger.warning("could not mark shard %s done: %s", shard.key, error)
        counts["LedgerNotDone"] = 1
    return counts


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
    # Raises LedgerUnavailable before any post: Lambda retries the event, which loses nothing.
    counts = post_once(
        settings,
        _SHARDING.ledger_table,
        _POOL,
        shard,
        invocation_ends,
        post_if_unavailable=False,
    )
    durations = {"FanoutMs": (time.monotonic() - started) * 1000}
    print(emf_line(int(time.time() * 1000), _DIMENSIONS, counts, durations), flush=True)
    return {"statusCode": 200, "body": json.dumps(counts)}
