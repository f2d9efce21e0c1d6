"""Lambda's concurrency limit on a real stage: throttled, or queued when asked to.

Two slow invocations fill a limit of two; a third sendmessage is throttled (an
``Internal server error`` frame) and a new client's ``$connect`` is refused, as
AWS throttles a synchronous invoke and API Gateway answers the client. The same
traffic on a stage told to queue is delivered late instead, and the wait shows
in the statistics.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection

from loadtest.stage.config import StageConfig
from loadtest.stage.faults import Faults
from loadtest.stage.launcher import LocalStage
from loadtest.stage.throttle import lambda_admits, nearest_rank
from tests.stage.support import open_ws, recv_text, stage_in, wait_for

SEND = "SendMessageFunction"
POST_LATENCY_MS = 1500
"""Each @connections POST takes this long, so a sendmessage stays in flight a while."""
LIMIT = 2


def _config(overflow: str, connect_status: int = 500) -> StageConfig:
    return StageConfig(
        concurrency=LIMIT,
        lambda_concurrency_limit=LIMIT,
        lambda_overflow=overflow,
        throttled_connect_status=connect_status,
        faults=Faults(post_latency_ms=POST_LATENCY_MS),
    )


@pytest.fixture(scope="module")
def throttling_stage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStage]:
    yield from stage_in(_config("throttle", 429), tmp_path_factory, "throttling")


@pytest.fixture(scope="module")
def queueing_stage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStage]:
    yield from stage_in(_config("queue"), tmp_path_factory, "queueing")


def _chat(message: str) -> str:
    return json.dumps({"action": "sendmessage", "message": message})


def _lambda(stage: LocalStage) -> dict[str, Any]:
    stats: dict[str, Any] = stage.stats()["lambda"]
    return stats


def _frames_until(ws: ClientConnection, wanted: int, timeout_s: float) -> list[str]:
    """Up to ``wanted`` text frames, for at most ``timeout_s``."""
    frames: list[str] = []
    deadline = time.monotonic() + timeout_s
    for _ in range(wanted):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            frames.append(recv_text(ws, remaining))
        except TimeoutError:
            break
    return frames


def _fill_the_limit(stack: ExitStack, stage: LocalStage) -> list[ClientConnection]:
    """Three clients; the first two send at once, so both their invocations are in flight."""
    clients = [stack.enter_context(open_ws(stage.ws_url)) for _ in range(3)]
    finished_before = _lambda(stage)["invocations"].get(SEND, 0)
    clients[0].send(_chat("first"))
    clients[1].send(_chat("second"))
    wait_for(lambda: _lambda(stage)["running"] == LIMIT, 5, "two sendmessage invocations")
    assert _lambda(stage)["invocations"].get(SEND, 0) == finished_before
    return clients


# -- pure rules ----------------------------------------------------------------------------


def test_lambda_admits_below_the_limit_only() -> None:
    assert lambda_admits(0, 1)
    assert lambda_admits(999, 1000)
    assert not lambda_admits(1000, 1000)
    assert lambda_admits(10**6, None)  # queueing: no limit


def test_nearest_rank_percentile() -> None:
    values = [float(n) for n in range(1, 101)]
    assert nearest_rank(values, 0.99) == 99.0
    assert nearest_rank(values, 1.0) == 100.0
    assert nearest_rank([5.0], 0.99) == 5.0
    assert nearest_rank([], 0.99) == 0.0
    with pytest.raises(ValueError, match="fraction"):
        nearest_rank(values, 0)


def test_config_refuses_unknown_overflow_and_status() -> None:
    with pytest.raises(ValueError, match="throttle or queue"):
        StageConfig(lambda_overflow="drop")
    with pytest.raises(ValueError, match="429 or 500"):
        StageConfig(throttled_connect_status=503)
    assert StageConfig().effective_concurrency_limit == 1000
    assert StageConfig(lambda_overflow="queue").effective_concurrency_limit is None


# -- a real stage ----------------------------------------------------------------------------


def test_past_the_limit_a_message_gets_an_error_frame_and_a_connect_is_refused(
    throttling_stage: LocalStage,
) -> None:
    stage = throttling_stage
    with ExitStack() as stack:
        first, second, third = _fill_the_limit(stack, stage)
        third.send(_chat("third"))
        with pytest.raises(InvalidStatus) as refused:
            open_ws(stage.ws_url)
        assert refused.value.response.status_code == 429
        frames = _frames_until(third, 3, 10)
        errors = [json.loads(f) for f in frames if f.startswith('{"message"')]
        assert [e["message"] for e in errors] == ["Internal server error"]
        assert set(errors[0]) == {"message", "connectionId", "requestId"}
        assert sorted(f for f in frames if not f.startswith("{")) == ["first", "second"]
        wait_for(lambda: _lambda(stage)["invocations"].get(SEND, 0) == 2, 10, "both to end")
        # read before the clients leave: three $disconnects at once would meet the limit too
        stats = stage.stats()
        assert first.protocol.state.name == second.protocol.state.name == "OPEN"
    assert stats["lambda"]["throttled"] == 2
    assert stats["lambda"]["throttled_by_function"] == {SEND: 1, "ConnectFunction": 1}
    assert stats["gateway"]["throttled_message"] == 1
    assert stats["gateway"]["throttled_connect"] == 1
    assert stats["lambda"]["queued_now"] == 0
    assert stats["lambda"]["concurrency_limit"] == LIMIT


def test_queueing_mode_delivers_late_and_reports_the_wait(queueing_stage: LocalStage) -> None:
    stage = queueing_stage
    with ExitStack() as stack:
        _first, _second, third = _fill_the_limit(stack, stage)
        third.send(_chat("third"))
        wait_for(lambda: _lambda(stage)["queued_now"] == 1, 5, "the third to queue")
        frames = _frames_until(third, 2, 10)
        assert sorted(frames) == ["first", "second"]
        wait_for(lambda: _lambda(stage)["invocations"].get(SEND, 0) == 3, 10, "the third to run")
        stats = _lambda(stage)  # before the clients leave: their $disconnects queue too
    assert stats["throttled"] == 0
    assert stats["concurrency_limit"] is None
    assert stats["peak_queued"] >= 1
    assert stats["queued_now"] == 0
    # the third waited for a slot while the first two posted (>= one POST latency)
    assert stats["queue_wait_ms_max"] >= POST_LATENCY_MS * 0.8
    assert 0 < stats["queue_wait_ms_p99"] <= stats["queue_wait_ms_max"]
