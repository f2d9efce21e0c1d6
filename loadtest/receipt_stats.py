"""Receipts into Locust's statistics a batch at a time, with the counts per-frame logging gives.

Locust's ``request`` event carries one response time per call, and Locust's own
listener logs every call into two ``StatsEntry`` objects (the name's and the
total): about 2.4 µs a receipt, a quarter of the generator's receive CPU. Here
the receive loop only appends (receipt time, response time) to two arrays, and
every ``FLUSH_INTERVAL_S`` the batch becomes one ``StatsEntry`` — requests per
second, the sum, min and max, and the count per response-time bucket, bucketed
by Locust's own ``locust.stats.bucket_response_time`` (so a customised
bucketing is honoured) — merged into the name's entry and the total with
``StatsEntry.extend``, the call a master uses to merge its workers' reports.
Request counts, per-second counts, min, max and the bucket histogram (so every
percentile) equal what per-frame logging gives; the sum of response times may
differ in its last bits (float additions in another order). Workers report
these statistics to their master as before; the last batch is merged when the
test stops (``test_stop``, and each user's ``on_stop``), before a worker's final
report.

Listeners of the ``request`` event other than Locust's statistics (plugins) no
longer see fan-out receipts one by one; with Locust's OpenTelemetry export on
(``--otel``) the users fire the event per receipt as before (``ChatUser``).
"""

from __future__ import annotations

import weakref
from array import array
from collections import Counter
from collections.abc import Sequence
from typing import Any, cast

import gevent
import locust.stats
import numpy as np
from locust.stats import RequestStats, StatsEntry, StatsEntryDict

FLUSH_INTERVAL_S = 0.2
"""Well inside Locust's own cadences: stats CSV history every 1 s, console every 2 s,
worker reports every 3 s."""
NS_PER_S = 1_000_000_000


def batch_entry(
    request_type: str, name: str, received_ns: Sequence[int], response_times_ms: Sequence[float]
) -> StatsEntryDict:
    """The receipts as one ``StatsEntry`` in Locust's serialized form (a worker's report).

    ``received_ns`` (epoch ns) gives each receipt's second, as ``time.time()`` at
    logging does; ``response_times_ms`` pairs with it. Both must be non-empty.
    """
    if len(received_ns) != len(response_times_ms) or not received_ns:
        raise ValueError(
            f"batch_entry: {len(received_ns)} receipt times for "
            f"{len(response_times_ms)} response times (need the same, at least one)"
        )
    seconds, per_second = np.unique(
        np.asarray(received_ns, dtype=np.int64) // NS_PER_S, return_counts=True
    )
    # Looked up on each call: Locust documents replacing it at runtime.
    buckets = Counter(map(locust.stats.bucket_response_time, response_times_ms))
    entry: dict[str, Any] = {  # Locust types the times as int; it logs floats as given
        "name": name,
        "method": request_type,
        "last_request_timestamp": max(received_ns) / NS_PER_S,
        "start_time": min(received_ns) / NS_PER_S,
        "num_requests": len(response_times_ms),
        "num_none_requests": 0,
        "num_failures": 0,
        "total_response_time": sum(response_times_ms),
        "max_response_time": max(response_times_ms),
        "min_response_time": min(response_times_ms),
        "total_content_length": 0,
        "response_times": dict(buckets),
        "num_reqs_per_sec": dict(zip(seconds.tolist(), per_second.tolist(), strict=True)),
        "num_fail_per_sec": {},
    }
    return cast(StatsEntryDict, entry)


def merge_into(stats: RequestStats, entry: StatsEntryDict) -> None:
    """Add a batch to its name's entry and to the total, as a master adds a worker's report."""
    batch = StatsEntry.unserialize(entry, stats)
    stats.entries[(entry["name"], entry["method"])].extend(batch)
    stats.total.extend(batch)


class ReceiptStats:
    """One process's receipts of one request name awaiting Locust's statistics.

    ``add`` is the receive loop's only per-receipt cost; ``flush`` merges what is
    pending into ``environment.stats``.
    """

    def __init__(self, environment: Any, request_type: str, name: str) -> None:
        self.environment = environment
        self.request_type = request_type
        self.name = name
        self._received_ns = array("q")
        self._response_times_ms = array("d")
        self.merged = 0

    def add(self, received_ns: int, response_time_ms: float) -> None:
        self._received_ns.append(received_ns)
        self._response_times_ms.append(response_time_ms)

    def flush(self) -> int:
        """Merge the pending receipts; how many there were."""
        received, times = self._received_ns, self._response_times_ms
        if not received:
            return 0
        self._received_ns, self._response_times_ms = array("q"), array("d")
        merge_into(
            self.environment.stats, batch_entry(self.request_type, self.name, received, times)
        )
        self.merged += len(received)
        return len(received)

    def flush_forever(self) -> None:
        while True:
            gevent.sleep(FLUSH_INTERVAL_S)
            self.flush()

    def on_test_stop(self, **_: Any) -> None:
        self.flush()


_by_environment: weakref.WeakKeyDictionary[Any, dict[tuple[str, str], ReceiptStats]] = (
    weakref.WeakKeyDictionary()
)


def receipt_stats(environment: Any, request_type: str, name: str) -> ReceiptStats:
    """The process's ``ReceiptStats`` for this environment and name, flushing on its own
    greenlet and when the test stops (created on first use)."""
    per_name = _by_environment.setdefault(environment, {})
    stats = per_name.get((request_type, name))
    if stats is None:
        stats = per_name[(request_type, name)] = ReceiptStats(environment, request_type, name)
        environment.events.test_stop.add_listener(stats.on_test_stop)
        gevent.spawn(stats.flush_forever)
    return stats
