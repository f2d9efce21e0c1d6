"""The sharded variant on a running stage: a real broadcast to a few hundred clients.

sendmessage reads the audience and hands shards to FanoutFunction through the
stage's Lambda Invoke API (boto3, ``InvocationType="Event"``); every recipient
must get the message exactly once, also when a fan-out invocation fails and
Lambda's asynchronous retry has to deliver its shard.
"""

from __future__ import annotations

import asyncio
import json
import math
import urllib.request
from collections.abc import Iterator

import pytest

from bench.fleet import Fleet, Watch
from fanbench_common.resources import FANOUT_FUNCTION, SEND_FUNCTION
from loadtest.stage.config import StageConfig
from loadtest.stage.invoke_api import DUPLICATE_NEXT_PATH, FAIL_NEXT_PATH
from loadtest.stage.launcher import LocalStage
from tests.stage.support import stage_in, wait_for
from tests.stage.test_invoke_api import fail_next

CLIENTS = 300
SHARD_SIZE = 50
SHARDS = math.ceil((CLIENTS - 1) / SHARD_SIZE)
RETRY_DELAY_S = 0.3
TIMEOUT_S = 60.0


@pytest.fixture(scope="module")
def stage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStage]:
    config = StageConfig(
        variant="sharded",
        concurrency=6,
        parameters={"ShardSize": str(SHARD_SIZE)},
        async_retry_delay_s=RETRY_DELAY_S,
    )
    yield from stage_in(config, tmp_path_factory, "sharded")


def invocations(stage: LocalStage, function: str) -> int:
    value = stage.stats()["lambda"]["invocations"].get(function, 0)
    assert isinstance(value, int)
    return value


async def broadcasts(
    stage: LocalStage, tokens: list[str], before_each: object = None
) -> list[Watch]:
    watches = []
    async with Fleet(stage.ws_url) as fleet:
        report = await fleet.grow(CLIENTS, 120.0)
        assert report.connected == CLIENTS, report
        for token in tokens:
            if callable(before_each):
                before_each()
            watch = await fleet.broadcast(token, TIMEOUT_S)
            await fleet.settle(watch, 1.0)  # late duplicates would be counted here
            watches.append(watch)
    return watches


def test_every_recipient_gets_a_sharded_broadcast_exactly_once(stage: LocalStage) -> None:
    sends, fanouts = invocations(stage, SEND_FUNCTION), invocations(stage, FANOUT_FUNCTION)

    (watch,) = asyncio.run(broadcasts(stage, ["sharded hello"]))

    assert watch.expected == CLIENTS - 1
    assert watch.delivered == CLIENTS - 1
    assert watch.duplicates == 0
    wait_for(lambda: invocations(stage, FANOUT_FUNCTION) == fanouts + SHARDS, 10, "every fan-out")
    assert invocations(stage, SEND_FUNCTION) == sends + 1
    assert stage.invoke_stats().get("async_dropped", 0) == 0


def test_a_fanout_that_fails_once_is_retried_and_its_shard_delivered_once(
    stage: LocalStage,
) -> None:
    before = stage.invoke_stats()

    (watch,) = asyncio.run(
        broadcasts(stage, ["retried hello"], lambda: fail_next(stage, FANOUT_FUNCTION, 1))
    )

    assert watch.delivered == CLIENTS - 1
    assert watch.duplicates == 0
    after = stage.invoke_stats()
    assert after["async_function_error"] - before.get("async_function_error", 0) == 1
    assert after["async_retries"] - before.get("async_retries", 0) == 1
    assert after["async_succeeded"] - before.get("async_succeeded", 0) == SHARDS
    # the retried shard arrived at least one retry delay after the rest began
    assert watch.to_last_s >= RETRY_DELAY_S


def order(stage: LocalStage, path: str, body: dict[str, object]) -> None:
    """A fault for the stage's Lambda (``invoke_api``'s test hooks)."""
    request = urllib.request.Request(
        f"{stage.endpoints.lambda_url}{path}", data=json.dumps(body).encode(), method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def test_events_delivered_twice_and_failures_after_posting_deliver_exactly_once(
    stage: LocalStage,
) -> None:
    """AWS delivers an asynchronous event at least once: sometimes twice, and again after
    an invocation that failed once it had posted. The fan-out's ledger posts each shard
    once all the same."""
    before = stage.invoke_stats()

    def faults() -> None:
        order(stage, DUPLICATE_NEXT_PATH, {"function": FANOUT_FUNCTION, "count": 2})
        order(stage, FAIL_NEXT_PATH, {"function": FANOUT_FUNCTION, "count": 2, "after": True})

    async def broadcast() -> Watch:
        async with Fleet(stage.ws_url) as fleet:
            report = await fleet.grow(CLIENTS, 120.0)
            assert report.connected == CLIENTS, report
            faults()
            watch = await fleet.broadcast("at least once, posted once", TIMEOUT_S)
            # Every copy and every retry has run before the duplicates are counted.
            for _ in range(200):
                if stage.invoke_stats().get("async_in_flight", 0) == 0:
                    break
                await asyncio.sleep(0.05)
            await fleet.settle(watch, 0.5)
            return watch

    watch = asyncio.run(broadcast())

    assert watch.delivered == CLIENTS - 1
    assert watch.duplicates == 0
    after = stage.invoke_stats()
    for name in ("async_duplicated", "injected_failures_after"):
        assert after.get(name, 0) - before.get(name, 0) == 2, name
    # the two failed-after runs were retried, and the retries posted nothing
    assert after["async_retries"] - before.get("async_retries", 0) == 2
    assert after["async_runs"] - before.get("async_runs", 0) == SHARDS + 2 + 2
