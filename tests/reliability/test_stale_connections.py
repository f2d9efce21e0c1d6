"""20 % of clients leave without their ``$disconnect`` reaching the handler: stale ids.

Ten clients connect to a stage that loses every ``$disconnect``; two of them
leave, so their ids stay in the table (stale: the gateway answers 410 to posts).
Then a third client broadcasts twice.

* optimized: the first broadcast gets two 410s and batch-deletes both ids; the
  second makes no post to them;
* baseline: the ids stay, and every broadcast posts to them again (two 410s each).

Neither variant loses a delivery to the seven clients still connected.

The optimized handler treats a 410 as stale only once the id's handshake is
over (older than the integration timeout): the stage runs with a 3 s
integration timeout and a 4 s grace, and the broadcasts wait that long.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from loadtest.stage.config import StageConfig
from loadtest.stage.faults import Faults
from loadtest.stage.launcher import LocalStage
from tests.reliability.support import (
    SEND,
    chat,
    clients,
    own_id,
    wait_for,
)
from tests.stage.support import gateway_stat, lambda_stat, recv_text, table_ids

CLIENTS = 10
STALE = 2  # 20 %
BROADCASTS = 2
INTEGRATION_TIMEOUT_S = 3.0
HANDSHAKE_GRACE_S = 4.0


def _stage(variant: str, factory: pytest.TempPathFactory) -> Iterator[LocalStage]:
    config = StageConfig(
        variant=variant,
        integration_timeout_s=INTEGRATION_TIMEOUT_S,
        lambda_environment={"HANDSHAKE_GRACE_MS": str(int(HANDSHAKE_GRACE_S * 1000))},
        faults=Faults(lost_disconnect_rate=1.0),
    )
    with LocalStage(config, log_dir=factory.mktemp(f"stale-{variant}")) as stage:
        yield stage


@pytest.fixture(scope="module")
def optimized_stage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStage]:
    yield from _stage("optimized", tmp_path_factory)


@pytest.fixture(scope="module")
def baseline_stage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStage]:
    yield from _stage("baseline", tmp_path_factory)


@dataclass(frozen=True)
class Observed:
    stale_ids: set[str]
    gone_after: list[int]
    """The stage's count of 410 answers to posts after each broadcast."""
    stale_in_table_after: list[set[str]]
    delivered: int
    expected: int


def _invocations_reach(stage: LocalStage, count: int) -> Callable[[], bool]:
    return lambda: lambda_stat(stage, "invocations", SEND) == count


def _broadcast_past_stale_ids(stage: LocalStage) -> Observed:
    with clients(stage.ws_url, CLIENTS) as connections:
        # Every connection's connectedAt is before now (on a busy host, connecting all of them
        # took long enough that a time taken before it left the leavers inside the grace).
        connected = time.monotonic()
        sender, live, leaving = connections[0], connections[1:-STALE], connections[-STALE:]
        stale_ids = {own_id(ws) for ws in leaving}
        for ws in leaving:
            ws.close()
        wait_for(
            lambda: gateway_stat(stage, "disconnects_lost") >= STALE, 10, "the lost disconnects"
        )
        assert stale_ids <= table_ids(stage), "the leavers' ids should be stale in the table"
        assert gateway_stat(stage, "api_post_410") == 0
        time.sleep(max(0.0, connected + HANDSHAKE_GRACE_S + 0.2 - time.monotonic()))
        gone_after: list[int] = []
        in_table_after: list[set[str]] = []
        delivered = 0
        for n in range(BROADCASTS):
            text = f"broadcast {n}"
            sender.send(chat(text))
            delivered += sum(recv_text(ws) == text for ws in live)
            wait_for(_invocations_reach(stage, n + 1), 10, "the broadcast to finish")
            gone_after.append(gateway_stat(stage, "api_post_410"))
            in_table_after.append(stale_ids & table_ids(stage))
        return Observed(
            stale_ids, gone_after, in_table_after, delivered, expected=BROADCASTS * len(live)
        )


def test_optimized_removes_every_stale_id_in_one_broadcast(optimized_stage: LocalStage) -> None:
    seen = _broadcast_past_stale_ids(optimized_stage)
    print(f"optimized: 410s after each broadcast {seen.gone_after}, delivered "
          f"{seen.delivered}/{seen.expected}")  # fmt: skip
    assert len(seen.stale_ids) == STALE
    assert seen.gone_after[0] == STALE, "one post to each stale id"
    assert seen.stale_in_table_after[0] == set(), "both stale ids deleted by that broadcast"
    assert seen.gone_after[1] == STALE, "the later broadcast posted to no stale id"
    assert seen.stale_in_table_after[1] == set()
    assert seen.delivered == seen.expected


def test_baseline_keeps_posting_to_stale_ids(baseline_stage: LocalStage) -> None:
    seen = _broadcast_past_stale_ids(baseline_stage)
    print(f"baseline: 410s after each broadcast {seen.gone_after}, delivered "
          f"{seen.delivered}/{seen.expected}")  # fmt: skip
    assert seen.gone_after == [STALE * (n + 1) for n in range(BROADCASTS)]
    assert all(ids == seen.stale_ids for ids in seen.stale_in_table_after)
    assert seen.delivered == seen.expected
