"""``sendmessage`` (sharded): read the audience, hand it to fan-out invocations in shards.

One function posting a whole room is CPU-bound (boto3 signs and parses every
post) and a room of tens of thousands cannot finish inside API Gateway's 29 s.
Here sendmessage finds the sender (a consistent read; an unknown sender gets an
error frame and a 400, as from the optimized handler), reads the audience (the
room GSI when the sender is in a room, else the parallel scan) with each
member's connect time, and splits it into shards of ``SHARD_SIZE``
recipients (fewer when the 256 KB asynchronous event limit demands it: see
``sharding``). Each shard goes to ``FANOUT_FUNCTION`` with ``Invoke(
InvocationType="Event")``; those invocations run side by side, each posting its
shard with the optimized handler's own code (``broadcast.post_all``: paced under
429s, deadline-fitting attempts, unknown outcomes not re-sent, handshake-safe
cleanup).

* An audience of at most ``SHARD_SIZE`` is posted here: a hand-off would only
  add an invocation's latency to a single shard.
* Each Invoke is one attempt of botocore's (its own retries would Invoke again
  after a read timeout, when Lambda may have queued the first), started only if
  its timeouts fit before the deadline; ``_hand_off`` retries only answers that
  certainly queued nothing (429, 5xx, no connection), ``HAND_OFF_ATTEMPTS`` in all.
* A shard certainly not queued is posted here, so a refused invocation loses
  nobody. A shard whose Invoke got no answer may have been queued: it is posted
  here under the ledger's claim (``fanout.post_once``), so whichever of the two
  claims it first posts it, once.
* Lambda delivers each queued shard at least once; the fan-out's ledger
  (``ledger``) makes a second delivery, or a retry after a failure that came
  after posting, post nothing twice.

Why ``SHARD_SIZE`` 500 (measured: BENCHMARKS.md, "Sharded fan-out"): it is the
largest shard that was not measurably slower. On the local stage at N = 2,000,
three runs could not tell 125, 250 and 500 apart (medians 1.19, 1.17, 1.27 s),
while 1,000 lost parallelism (slower than 500 in every run). Among equally fast
sizes the largest needs the fewest Invoke calls and invocations (20 for a
10,000 room), each of which pays a start-up before its first post. On AWS,
where every fan-out has its own CPU share, a broadcast takes about the audience
read + the hand-off + one shard's posting, and 500 posts at ~0.6 ms of CPU on
a 1,024 MB function (about 0.6 vCPU) is about half a second. 500 recipients
(~18 KB with their connect times) leave the 256 KB event limit to the message:
even a 128 KB one still fits thousands of them, so ``sharding.split`` rarely
has to cut a shard short.
"""

from __future__ import annotations

import enum
import json
import logging
import random
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

import fanout
import sharding
from broadcast import Broadcast, post_all, prepare
from callbacks import backoff_s
from deadline import CALL_BUDGETS_S, call_budget_s, monotonic_deadline, timeouts_s
from emf import emf_line
from settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_lambda import LambdaClient

logger = logging.getLogger()
logger.setLevel(logging.INFO)

HAND_OFF_CONCURRENCY = 16
"""Invoke calls in flight at once: enough that handing off is never the slow part."""

_SETTINGS = Settings.from_environ()
_SHARDING = sharding.ShardSettings.from_environ()
_POOL = ThreadPoolExecutor(max_workers=_SETTINGS.post_concurrency, thread_name_prefix="post")
_HAND_OFF_POOL = ThreadPoolExecutor(max_workers=HAND_OFF_CONCURRENCY, thread_name_prefix="invoke")
_RNG = random.Random()
_lambda: dict[float, LambdaClient] = {}
_lambda_lock = threading.Lock()


def lambda_client(budget_s: float = CALL_BUDGETS_S[0]) -> LambdaClient:
    """The environment's Lambda client for one call budget, created on first use, kept warm.

    One attempt per call, whose timeouts add up to ``budget_s``: botocore's own
    retries would Invoke again after a read timeout, when Lambda may already
    have queued the first event (a shard sent twice), and could run past the
    deadline. A shard not accepted is posted by sendmessage itself instead.
    """
    with _lambda_lock:
        client = _lambda.get(budget_s)
        if client is None:
            connect_s, read_s = timeouts_s(budget_s)
            config = Config(
                max_pool_connections=HAND_OFF_CONCURRENCY,
                connect_timeout=connect_s,
                read_timeout=read_s,
                retries={"mode": "standard", "total_max_attempts": 1},
            )
            client = _lambda[budget_s] = boto3.client("lambda", config=config)
        return client


class HandOff(enum.Enum):
    ACCEPTED = "accepted"
    REFUSED = "refused"
    """Certainly not queued: a 4xx, or still throttled/unreachable after the tries allowed."""
    UNKNOWN = "unknown"
    """The Invoke was sent and its answer never came: Lambda may have queued the shard."""


HAND_OFF_ATTEMPTS = 3
"""Tries per shard for answers that certainly queued nothing (429, 5xx, no connection)."""
_RETRYABLE_INVOKE = frozenset(
    {"TooManyRequestsException", "ServiceException", "EC2ThrottledException"}
)
_UNANSWERED = (ReadTimeoutError, ConnectionClosedError)


def _hand_off(function: str, payload: bytes, deadline: float, rng: random.Random) -> HandOff:
    """Queue one shard as an asynchronous invocation: one Invoke per try, each started
    only if its timeouts fit before ``deadline``, retried only when nothing was queued."""
    for attempt in range(HAND_OFF_ATTEMPTS):
        budget_s = call_budget_s(deadline - time.monotonic())
        if budget_s is None:
            return HandOff.REFUSED
        try:
            response = lambda_client(budget_s).invoke(
                FunctionName=function, InvocationType="Event", Payload=payload
            )
            return HandOff.ACCEPTED if response["StatusCode"] == 202 else HandOff.REFUSED
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if code not in _RETRYABLE_INVOKE and status < 500:
                logger.warning("shard of %d bytes refused: %s", len(payload), error)
                return HandOff.REFUSED
        except _UNANSWERED:
            logger.warning("no answer to the Invoke of a shard of %d bytes", len(payload))
            return HandOff.UNKNOWN
        except BotoCoreError as error:
            if not isinstance(error, (ConnectTimeoutError, EndpointConnectionError)):
                return HandOff.REFUSED
        pause = backoff_s(attempt, rng, base_s=0.05)
        if time.monotonic() + pause >= deadline:
            break
        time.sleep(pause)
    return HandOff.REFUSED


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    counts: dict[str, int] = {}
    durations_ms: dict[str, float] = {}
    result = _broadcast(event, context, counts, durations_ms)
    status = result["statusCode"]
    counts = {**counts, "BadRequest": int(status == 400), "AudienceError": int(status == 500)}
    dimensions = {"Variant": "sharded", "Function": "sendmessage"}
    print(emf_line(int(time.time() * 1000), dimensions, counts, durations_ms), flush=True)
    return result


def _broadcast(
    event: dict[str, Any], context: Any, counts: dict[str, int], durations_ms: dict[str, float]
) -> dict[str, Any]:
    settings, shard_settings = _SETTINGS, _SHARDING
    invocation_ends = monotonic_deadline(context, 0)
    prepared = prepare(event, settings, counts, durations_ms)
    if not isinstance(prepared, Broadcast):
        return prepared
    endpoint, data, recipients = prepared.endpoint, prepared.data, prepared.recipients
    read_at = time.monotonic()
    shards: list[bytes] = []
    message_id = uuid.uuid4().hex if shard_settings.ledger_table else ""
    if shard_settings.fanout_function and len(recipients) > shard_settings.shard_size:
        try:
            shards = sharding.split(
                endpoint, data, recipients, shard_settings.shard_size, message_id=message_id
            )
        except ValueError:
            logger.exception("cannot shard a %d-byte message: posting it here", len(data))
    hand_off_by = invocation_ends - settings.deadline_reserve_ms / 1000
    rng = random.Random(_RNG.random())
    handed = list(
        _HAND_OFF_POOL.map(
            lambda p: _hand_off(shard_settings.fanout_function, p, hand_off_by, rng), shards
        )
    )
    durations_ms["HandOffMs"] = (time.monotonic() - read_at) * 1000
    inline = [] if shards else recipients
    unknown: list[sharding.Shard] = []
    for payload, outcome in zip(shards, handed, strict=True):
        if outcome is HandOff.REFUSED:  # certainly not queued: post it here
            inline.extend(sharding.decode(json.loads(payload)).recipients)
        elif outcome is HandOff.UNKNOWN:  # maybe queued: whoever claims it first posts it
            unknown.append(sharding.decode(json.loads(payload)))
    posted = Counter(post_all(settings, _POOL, endpoint, data, inline, invocation_ends))
    for shard in unknown:
        posted.update(
            fanout.post_once(
                settings,
                shard_settings.ledger_table,
                _POOL,
                shard,
                invocation_ends,
                post_if_unavailable=True,
            )
        )
    counts.update(
        {
            "Recipients": len(recipients),
            "Shards": len(shards),
            "HandedOff": handed.count(HandOff.ACCEPTED),
            "HandOffFailed": handed.count(HandOff.REFUSED),
            "HandOffUnknown": handed.count(HandOff.UNKNOWN),
            **{f"Inline{name}": value for name, value in posted.items()},
        }
    )
    return {"statusCode": 200, "body": json.dumps(counts)}
