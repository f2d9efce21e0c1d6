"""Receipts merged into Locust's statistics a batch at a time give per-frame logging's numbers.

The same receipts go through both paths — Locust's ``RequestStats.log_request``
once per receipt (what the ``request`` event's listener does) with Locust's
clock set to each receipt's time, and ``batch_entry`` + ``merge_into`` in
batches — into two ``RequestStats``; counts, per-second counts, min, max, the
bucket histogram and so every percentile must be equal, the average within
float rounding. The distributed path (a worker's report merged by a master)
and a customised bucketing are checked the same way.
"""

from __future__ import annotations

import random
from types import SimpleNamespace
from typing import Any

import gevent
import locust
import locust.stats
import msgpack
import pytest
from locust.env import Environment
from locust.event import Events as UntypedEvents
from locust.stats import RequestStats, StatsEntry, setup_distributed_stats_event_listeners

from loadtest.receipt_stats import ReceiptStats, batch_entry, merge_into, receipt_stats

Events: Any = UntypedEvents  # Locust's events are untyped
METHOD, NAME = "WS", "fanout"
PERCENTILES = (0.0, 0.1, 0.5, 0.66, 0.9, 0.95, 0.99, 0.999, 0.9999, 1.0)
START_NS = 1_780_000_000_000_000_000


def receipts(count: int, seed: int = 14) -> list[tuple[int, float]]:
    """(receipt time ns, response time ms): over several seconds, spanning every bucket width
    (< 100 ms to the ms, to 10 ms, 100 ms, 1 s), exact bucket edges and halves included."""
    rng = random.Random(seed)
    edges = [0.0, 0.5, 1.5, 2.5, 99.5, 100.0, 105.0, 995.0, 999.9, 1050.0, 9950.0, 10500.0]
    out: list[tuple[int, float]] = []
    t_ns = START_NS + 987_654_321
    for index in range(count):
        t_ns += rng.randrange(0, 3_000_000)
        scale = rng.choice((1.0, 10.0, 200.0, 3000.0, 40000.0))
        response_ms = edges[index % len(edges)] if index % 7 == 0 else rng.random() * scale
        out.append((t_ns, response_ms))
    return out


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Locust's stats clock, set by the test (``time.time()`` in ``StatsEntry.log``)."""
    now = [START_NS / 1e9]
    monkeypatch.setattr(locust.stats, "time", SimpleNamespace(time=lambda: now[0]))
    return now


def per_frame(stats: Any, rows: list[tuple[int, float]], clock: list[float]) -> None:
    for t_ns, response_ms in rows:
        clock[0] = t_ns / 1e9
        stats.log_request(METHOD, NAME, response_ms, 0)


def per_batch(stats: RequestStats, rows: list[tuple[int, float]], sizes: list[int]) -> None:
    at = 0
    for size in sizes:
        chunk = rows[at : at + size]
        at += size
        if chunk:
            merge_into(
                stats, batch_entry(METHOD, NAME, [t for t, _ in chunk], [r for _, r in chunk])
            )
    assert at >= len(rows)


def assert_same(frame: StatsEntry, batch: StatsEntry) -> None:
    assert batch.num_requests == frame.num_requests
    assert batch.num_failures == frame.num_failures == 0
    assert batch.num_none_requests == frame.num_none_requests == 0
    assert dict(batch.response_times) == dict(frame.response_times)
    assert dict(batch.num_reqs_per_sec) == dict(frame.num_reqs_per_sec)
    assert batch.min_response_time == frame.min_response_time
    assert batch.max_response_time == frame.max_response_time
    assert batch.total_response_time == pytest.approx(frame.total_response_time, rel=1e-12)
    assert batch.avg_response_time == pytest.approx(frame.avg_response_time, rel=1e-12)
    assert batch.median_response_time == frame.median_response_time
    for percent in PERCENTILES:
        assert batch.get_response_time_percentile(percent) == frame.get_response_time_percentile(
            percent
        ), percent
    assert batch.last_request_timestamp == pytest.approx(frame.last_request_timestamp, abs=1e-6)


@pytest.mark.parametrize("sizes", [[1] * 600, [7, 1, 250, 342], [600]], ids=["1", "mixed", "one"])
def test_batches_give_per_frame_statistics(clock: list[float], sizes: list[int]) -> None:
    rows = receipts(600)
    frame, batch = RequestStats(), RequestStats()
    per_frame(frame, rows, clock)
    per_batch(batch, rows, sizes)
    assert frame.num_requests == 600
    assert len(frame.total.num_reqs_per_sec) > 1
    assert_same(frame.entries[(NAME, METHOD)], batch.entries[(NAME, METHOD)])
    assert_same(frame.total, batch.total)
    assert len(frame.entries[(NAME, METHOD)].response_times) > 50  # many buckets exercised


def test_batches_add_to_what_other_requests_logged(clock: list[float]) -> None:
    """The total also counts connects and sends, logged per event: a batch adds to it."""
    rows = receipts(300, seed=3)
    frame, batch = RequestStats(), RequestStats()
    both: tuple[Any, ...] = (frame, batch)  # Locust types response times as int; ours are float
    for stats in both:
        clock[0] = START_NS / 1e9
        stats.log_request(METHOD, "connect", 12.5, 0)
        stats.log_request(METHOD, "send", 0.0, 0)
    per_frame(frame, rows[:150], clock)
    per_batch(batch, rows[:150], [40, 110])
    clock[0] = rows[150][0] / 1e9
    for stats in both:
        stats.log_request(METHOD, "send", 3.0, 0)
    per_frame(frame, rows[150:], clock)
    per_batch(batch, rows[150:], [150])
    assert_same(frame.total, batch.total)
    assert_same(frame.entries[(NAME, METHOD)], batch.entries[(NAME, METHOD)])
    assert batch.entries[("send", METHOD)].num_requests == 2


def test_a_customised_bucketing_is_honoured(
    clock: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Locust documents replacing ``bucket_response_time`` at runtime; batches follow it."""
    monkeypatch.setattr(locust.stats, "bucket_response_time", lambda ms: int(ms // 25) * 25)
    rows = receipts(400, seed=5)
    frame, batch = RequestStats(), RequestStats()
    per_frame(frame, rows, clock)
    per_batch(batch, rows, [100, 300])
    assert set(batch.total.response_times) == {k for k in frame.total.response_times}
    assert all(key % 25 == 0 for key in batch.total.response_times)
    assert_same(frame.total, batch.total)


def worker_report(stats: RequestStats) -> dict[str, Any]:
    """What a worker sends its master (through msgpack, as over the wire)."""
    events = Events()
    setup_distributed_stats_event_listeners(events, stats)
    data: dict[str, Any] = {}
    events.report_to_master.fire(client_id="worker", data=data)
    unpacked: dict[str, Any] = msgpack.unpackb(msgpack.packb(data), strict_map_key=False, raw=False)
    return unpacked


def test_a_master_merging_worker_reports_sees_the_same_statistics(clock: list[float]) -> None:
    """--processes: two workers report every few seconds; the master merges their reports."""
    rows = receipts(800, seed=8)
    masters = {"frame": RequestStats(), "batch": RequestStats()}
    master_events = {name: Events() for name in masters}
    for name, master in masters.items():
        setup_distributed_stats_event_listeners(master_events[name], master)
    for worker in (0, 1):
        mine = rows[worker::2]
        frame_worker = RequestStats(use_response_times_cache=False)
        batch_worker = RequestStats(use_response_times_cache=False)
        for report in (mine[:300], mine[300:]):  # two report intervals
            per_frame(frame_worker, report, clock)
            per_batch(batch_worker, report, [len(report) // 3, len(report)])
            for name, worker_stats in (("frame", frame_worker), ("batch", batch_worker)):
                master_events[name].worker_report.fire(
                    client_id=f"w{worker}", data=worker_report(worker_stats)
                )
    frame, batch = masters["frame"], masters["batch"]
    assert frame.num_requests == 800
    assert_same(frame.entries[(NAME, METHOD)], batch.entries[(NAME, METHOD)])
    assert_same(frame.total, batch.total)


def test_a_batch_is_plain_data_that_travels_in_a_worker_report() -> None:
    entry = batch_entry(METHOD, NAME, [START_NS, START_NS + 2 * 10**9], [1.2, 3.4])
    assert msgpack.unpackb(msgpack.packb(entry), strict_map_key=False) == entry
    assert entry["num_reqs_per_sec"] == {START_NS // 10**9: 1, START_NS // 10**9 + 2: 1}
    assert all(type(key) is int for key in entry["num_reqs_per_sec"])


@pytest.mark.parametrize(("times", "latencies"), [([], []), ([1, 2], [1.0]), ([1], [])])
def test_mismatched_or_empty_batches_are_refused(times: list[int], latencies: list[float]) -> None:
    with pytest.raises(ValueError, match="receipt times for"):
        batch_entry(METHOD, NAME, times, latencies)


def test_receipt_stats_merge_into_the_environment_on_flush_and_at_test_stop() -> None:
    environment = Environment(events=locust.events)
    environment.create_local_runner()
    sink = receipt_stats(environment, METHOD, NAME)
    assert receipt_stats(environment, METHOD, NAME) is sink
    now = START_NS
    for index in range(10):
        sink.add(now + index, 2.0 + index)
    assert environment.stats.num_requests == 0  # pending until a flush
    assert sink.flush() == 10
    assert sink.flush() == 0
    assert environment.stats.entries[(NAME, METHOD)].num_requests == 10
    assert environment.stats.total.max_response_time == 11.0
    sink.add(now, 50.0)
    events: Any = environment.events
    events.test_stop.fire(environment=environment)
    assert environment.stats.num_requests == 11
    assert sink.merged == 11
    assert isinstance(sink, ReceiptStats)


def test_receipt_stats_flush_on_their_own_greenlet() -> None:
    environment = Environment(events=locust.events)
    environment.create_local_runner()
    sink = receipt_stats(environment, METHOD, "flushed-by-greenlet")
    sink.add(START_NS, 1.0)
    for _ in range(50):
        if environment.stats.num_requests:
            break
        gevent.sleep(0.05)
    assert environment.stats.entries[("flushed-by-greenlet", METHOD)].num_requests == 1
