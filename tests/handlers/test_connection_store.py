"""``connection_store`` against moto's real DynamoDB, with DynamoDB's own latitude.

DynamoDB may end a page after any item and may leave any part of a batch write
unprocessed; moto does neither at these sizes. The wrappers here take that
latitude on the real client (``Limit`` on every read, a partial batch write),
so the paths that only matter on AWS run in the tests too.
"""

from __future__ import annotations

import random
import threading
import time
from typing import TYPE_CHECKING, Any, cast

import pytest
from botocore.exceptions import ClientError

import connection_store
from connection_store import Deleted, Member, Sender
from tests.handlers.support import CONNECTED_AT_MS, Table, new_connection_id

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


def ids(count: int) -> list[str]:
    return [new_connection_id() for _ in range(count)]


class Latitude:
    """The real client, taking DynamoDB's latitude: short pages, partial batch writes.

    Records each call's keyword arguments and start time (``time.monotonic()``).
    """

    def __init__(
        self,
        client: DynamoDBClient,
        page_limit: int | None = None,
        writes_per_batch: int | None = None,
        call_delay_s: float = 0.0,
        fail_batch_call: int | None = None,
    ) -> None:
        self.client = client
        self.page_limit = page_limit
        self.writes_per_batch = writes_per_batch
        self.call_delay_s = call_delay_s
        self.fail_batch_call = fail_batch_call
        self.calls: list[tuple[str, float, dict[str, Any]]] = []
        self.batch_ends: list[float] = []
        self._lock = threading.Lock()

    def _record(self, name: str, kwargs: dict[str, Any]) -> None:
        with self._lock:
            self.calls.append((name, time.monotonic(), kwargs))

    def calls_to(self, name: str) -> list[tuple[float, dict[str, Any]]]:
        return [(at, kwargs) for called, at, kwargs in self.calls if called == name]

    def get_item(self, **kwargs: Any) -> Any:
        self._record("get_item", kwargs)
        return self.client.get_item(**kwargs)

    def query(self, **kwargs: Any) -> Any:
        self._record("query", kwargs)
        if self.page_limit:
            kwargs = {**kwargs, "Limit": self.page_limit}
        return self.client.query(**kwargs)

    def scan(self, **kwargs: Any) -> Any:
        self._record("scan", kwargs)
        if self.page_limit:
            kwargs = {**kwargs, "Limit": self.page_limit}
        return self.client.scan(**kwargs)

    def batch_write_item(self, **kwargs: Any) -> Any:
        self._record("batch_write_item", kwargs)
        if self.fail_batch_call == len(self.calls_to("batch_write_item")):
            raise ClientError(
                {"Error": {"Code": "InternalServerError", "Message": "injected"}},
                "BatchWriteItem",
            )
        time.sleep(self.call_delay_s)
        ((table, requests),) = kwargs["RequestItems"].items()
        keep = len(requests) if self.writes_per_batch is None else self.writes_per_batch
        self.client.batch_write_item(RequestItems={table: requests[:keep]})
        self.batch_ends.append(time.monotonic())
        rest = requests[keep:]
        return {"UnprocessedItems": {table: rest} if rest else {}}

    def as_client(self) -> DynamoDBClient:
        return cast("DynamoDBClient", self)

    def for_budget(self, budget_s: float) -> DynamoDBClient:
        return self.as_client()


class UpperBound(random.Random):
    """Backoff always at its cap, so the pauses are known."""

    def uniform(self, a: float, b: float) -> float:
        return b


# --- reading ----------------------------------------------------------------------------


def test_query_room_follows_every_page(table: Table) -> None:
    room = ids(7)
    table.add(room, room="blue")
    table.add(ids(3), room="green")
    short_pages = Latitude(table.client, page_limit=2)

    members, pages, read = connection_store.query_room(short_pages.as_client(), table.name, "blue")

    assert sorted(m.connection_id for m in members) == sorted(room)
    assert {m.connected_at_ms for m in members} == {CONNECTED_AT_MS}
    assert pages >= 4
    assert read == 7


def test_scan_all_follows_every_page(table: Table) -> None:
    everyone = ids(9)
    table.add(everyone)
    short_pages = Latitude(table.client, page_limit=2)

    members, pages, _ = connection_store.scan_all(short_pages.as_client(), table.name)

    assert sorted(m.connection_id for m in members) == sorted(everyone)
    assert pages >= 5


def test_find_sender_reads_consistently(table: Table) -> None:
    lobby, blue = ids(2)
    table.add([lobby])
    table.add([blue], room="blue")
    recording = Latitude(table.client)

    found = [
        connection_store.find_sender(recording.as_client(), table.name, cid)
        for cid in (lobby, blue, new_connection_id())
    ]

    assert found == [Sender(room=None), Sender(room="blue"), None]
    reads = recording.calls_to("get_item")
    assert len(reads) == 3
    assert all(kwargs.get("ConsistentRead") is True for _, kwargs in reads)


# --- the handshake -------------------------------------------------------------------


def test_past_handshake_keeps_only_ids_older_than_the_grace() -> None:
    now_ms = 1_800_000_000_000
    members = [
        Member("old", now_ms - 30_001),
        Member("at-the-edge", now_ms - 30_000),
        Member("connecting", now_ms - 50),
        Member("no-connected-at", 0),
    ]
    assert connection_store.past_handshake(members, now_ms, 30_000) == ["old", "no-connected-at"]


# --- deleting ------------------------------------------------------------------------


def test_delete_many_retries_unprocessed_items_until_all_are_gone(table: Table) -> None:
    stale = ids(30)
    table.add(stale)
    partial = Latitude(table.client, writes_per_batch=10)

    deleted = connection_store.delete_many(
        partial.for_budget, table.name, stale, time.monotonic() + 10
    )

    assert deleted == Deleted(removed=30, left=0)
    assert table.ids() == set()
    assert len(partial.calls_to("batch_write_item")) >= 4  # 25 + 5, ten at a time


def test_delete_many_backs_off_between_retries_of_unprocessed_items(table: Table) -> None:
    stale = ids(25)
    table.add(stale)
    partial = Latitude(table.client, writes_per_batch=10)

    connection_store.delete_many(
        partial.for_budget, table.name, stale, time.monotonic() + 10, rng=UpperBound()
    )

    starts = [at for at, _ in partial.calls_to("batch_write_item")]
    ends = partial.batch_ends
    assert len(starts) == len(ends) == 3
    # Between one call's answer and the next call, full jitter at its cap: 0.05 s, then 0.1 s.
    assert starts[1] - ends[0] >= 0.05
    assert starts[2] - ends[1] >= 0.1


def test_delete_many_starts_no_batch_after_its_deadline_and_counts_what_it_removed(
    table: Table,
) -> None:
    stale = ids(100)  # four batches
    table.add(stale)
    slow = Latitude(table.client, call_delay_s=0.15)
    deadline = time.monotonic() + 0.4

    deleted = connection_store.delete_many(slow.for_budget, table.name, stale, deadline)

    starts = [at for at, _ in slow.calls_to("batch_write_item")]
    assert 1 <= len(starts) < 4
    assert all(at < deadline for at in starts)
    still_there = table.ids()
    assert deleted.removed == len(stale) - len(still_there)
    assert deleted.left == len(still_there) > 0


def test_delete_many_past_its_deadline_calls_nothing(table: Table) -> None:
    stale = ids(3)
    table.add(stale)
    recording = Latitude(table.client)

    deleted = connection_store.delete_many(
        recording.for_budget, table.name, stale, time.monotonic() - 0.01
    )

    assert deleted == Deleted(removed=0, left=3)
    assert recording.calls_to("batch_write_item") == []
    assert table.ids() == set(stale)


def test_a_failed_batch_call_stops_the_cleanup_and_keeps_the_count_true(table: Table) -> None:
    stale = ids(60)
    table.add(stale)
    failing = Latitude(table.client, fail_batch_call=2)

    deleted = connection_store.delete_many(
        failing.for_budget, table.name, stale, time.monotonic() + 10
    )

    assert deleted.removed == 25
    assert deleted.left == 35
    assert deleted.error is not None
    assert "injected" in deleted.error
    assert len(table.ids()) == 35


@pytest.mark.parametrize("budget_s", [7.0, 0.3])
def test_cleanup_clients_make_one_attempt_within_their_budget(
    aws_env: None, budget_s: float
) -> None:
    client = connection_store.dynamodb_client_within(budget_s)
    config: Any = client.meta.config
    assert config.connect_timeout + config.read_timeout == pytest.approx(budget_s)
    assert config.retries == {"mode": "standard", "total_max_attempts": 1}
    assert connection_store.dynamodb_client_within(budget_s) is client


def test_delete_many_waits_out_a_throttled_batch_instead_of_giving_up(table: Table) -> None:
    """A throttled BatchWriteItem processed nothing: it is retried after a pause, like
    unprocessed items, rather than leaving every stale id for a later broadcast."""
    stale = ids(30)
    table.add(stale)
    throttles = [2]

    class Throttling:
        def batch_write_item(self, **kwargs: Any) -> Any:
            if throttles[0] > 0:
                throttles[0] -= 1
                raise ClientError(
                    {"Error": {"Code": "ThrottlingException", "Message": "slow down"}},
                    "BatchWriteItem",
                )
            return table.client.batch_write_item(**kwargs)

    deleted = connection_store.delete_many(
        lambda _budget: cast("DynamoDBClient", Throttling()),
        table.name,
        stale,
        time.monotonic() + 10,
    )

    assert deleted == Deleted(removed=30, left=0)
    assert table.ids() == set()
    assert throttles == [0]


def test_delete_many_gives_up_at_once_on_an_error_a_retry_cannot_fix(table: Table) -> None:
    stale = ids(3)
    table.add(stale)

    class Refusing:
        def batch_write_item(self, **_: Any) -> Any:
            raise ClientError(
                {"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "BatchWriteItem"
            )

    deleted = connection_store.delete_many(
        lambda _budget: cast("DynamoDBClient", Refusing()), table.name, stale, time.monotonic() + 10
    )

    assert (deleted.removed, deleted.left) == (0, 3)
    assert deleted.error is not None
    assert "AccessDenied" in deleted.error
