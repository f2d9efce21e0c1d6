"""``sendmessage`` (optimized): broadcast to the sender's room, or to everyone.

What it does differently from ``sendmessage_baseline`` and why:

* clients live at module scope, so a warm environment reuses TCP/TLS connections;
* the body is validated; a bad one gets an error frame back and a 400, never a broadcast;
* the sender's item is read consistently; a sender with no item gets an error
  frame and a 400 (its room is unknown, so a broadcast could cross rooms);
* the audience comes from a paginated scan (or the room GSI), so no page is missed;
  a sender in no room reaches the other room-less connections, not every room
  (``broadcast``);
* posts go through the client ``POST_CLIENT`` names (``callbacks``: boto3, or
  the same request SigV4-signed on a keep-alive connection, half the CPU);
* posts run with bounded concurrency; 429s slow every post of the invocation
  down together (``pacing``) and are retried until the deadline; 5xx and
  transport errors are retried with jittered backoff; every attempt's timeouts
  fit the time left before the deadline (``deadline``), so a late post cannot
  run into Lambda's timeout, and are long enough to hear the answer; a post
  whose answer never came is counted ``Unknown`` and not sent again (it was
  most likely delivered: ``callbacks.post_with_retry``);
* a 410 (typed or not) marks an id stale once its handshake is over
  (``connectedAt`` older than the integration timeout): ``$connect`` stores the
  item before the connection opens, and a 410 in that window is a client about
  to join, not a stale id. Stale ids are batch-deleted at once, the deadline
  checked before every batch, and only confirmed deletions are counted;
* one EMF line per invocation carries the counts (Delivered, Undelivered,
  Unknown, ...) and durations.

The audience-and-post path is ``broadcast``'s, shared with the sharded variant.
"""

from __future__ import annotations

import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from broadcast import UNKNOWN_SENDER, Broadcast, post_all, prepare
from deadline import monotonic_deadline
from emf import emf_line
from settings import Settings

__all__ = ["UNKNOWN_SENDER", "handler"]

logger = logging.getLogger()
logger.setLevel(logging.INFO)

_SETTINGS = Settings.from_environ()
_POOL = ThreadPoolExecutor(max_workers=_SETTINGS.post_concurrency, thread_name_prefix="post")


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
    invocation_ends = monotonic_deadline(context, 0)
    prepared = prepare(event, _SETTINGS, counts, durations_ms)
    if not isinstance(prepared, Broadcast):
        return prepared
    posting = time.monotonic()
    counts.update(
        post_all(
            _SETTINGS, _POOL, prepared.endpoint, prepared.data, prepared.recipients, invocation_ends
        )
    )
    durations_ms["FanoutMs"] = (time.monotonic() - posting) * 1000
    return {"statusCode": 200, "body": json.dumps(counts)}
