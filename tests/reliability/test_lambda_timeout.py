"""A Lambda timeout in the middle of a fan-out.

The sequential variant posts one recipient after another; with a 1 s function timeout and
200 ms per post, nine recipients (1.8 s) cannot all be reached. The stage kills
the environment at the timeout, as Lambda does: the recipients already posted to
have the message, the rest never get it, the sender gets ``Internal server error``,
and the next invocation starts a fresh environment (a cold start).

Measured twice: directly with WebSocket clients (exact), and by a real swarm whose
loss accounting must count each cut-short fan-out's missing recipients as loss.
The optimized variant, under the same fault, posts in parallel and loses nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from websockets.sync.client import ClientConnection

from loadtest.stage.config import StageConfig
from loadtest.stage.faults import Faults
from loadtest.stage.launcher import LocalStage
from tests.reliability.conftest import SwarmQueue
from tests.reliability.support import (
    INTERNAL_SERVER_ERROR,
    SEND,
    chat,
    clients,
    lost_in,
    sender_accounts,
    wait_for,
)
from tests.stage.support import lambda_stat, recv_text

FUNCTION_TIMEOUT_S = 1.0
POST_LATENCY_MS = 200.0
RECIPIENTS = 9
MOST_POSTS_IN_TIME = int(FUNCTION_TIMEOUT_S * 1000 // POST_LATENCY_MS) + 1
"""Five posts fit in 1 s; a sixth may already be in the stage when the environment dies."""


@pytest.fixture(scope="module")
def timeout_stage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStage]:
    config = StageConfig(
        variant="sequential",
        function_timeout_s=FUNCTION_TIMEOUT_S,
        faults=Faults(post_latency_ms=POST_LATENCY_MS),
    )
    with LocalStage(config, log_dir=tmp_path_factory.mktemp("timeout-stage")) as stage:
        yield stage


def _received(ws: ClientConnection, text: str, within_s: float) -> bool:
    try:
        frame = recv_text(ws, within_s)
    except TimeoutError:
        return False
    assert frame == text, frame
    return True


def _error_frame(sender: ClientConnection) -> dict[str, str]:
    frame = json.loads(recv_text(sender, timeout_s=15))
    assert isinstance(frame, dict)
    return frame


def test_timeout_mid_fanout_delivers_part_answers_the_sender_and_replaces_the_environment(
    timeout_stage: LocalStage,
) -> None:
    stage = timeout_stage
    with clients(stage.ws_url, 1 + RECIPIENTS) as (sender, *recipients):
        sender.send(chat("cut short"))
        frame = _error_frame(sender)
        assert frame["message"] == INTERNAL_SERVER_ERROR
        assert set(frame) == {"message", "connectionId", "requestId"}
        wait_for(lambda: lambda_stat(stage, "timeouts", SEND) == 1, 10, "the timeout")
        # Everything the dead environment had posted has arrived by now (+ slack).
        reached = [ws for ws in recipients if _received(ws, "cut short", within_s=0.5)]
        assert 1 <= len(reached) <= MOST_POSTS_IN_TIME < RECIPIENTS
        assert not any(_received(ws, "cut short", within_s=0.1) for ws in recipients)

        # Lambda replaced the environment: the next invocation starts cold.
        cold_before = lambda_stat(stage, "cold_starts", SEND)
        sender.send(chat("again"))
        assert _error_frame(sender)["message"] == INTERNAL_SERVER_ERROR
        wait_for(lambda: lambda_stat(stage, "timeouts", SEND) == 2, 10, "the second timeout")
        assert lambda_stat(stage, "cold_starts", SEND) == cold_before + 1
        assert lambda_stat(stage, "errors", SEND) == 0, "a timeout, not a handler error"


@pytest.mark.swarms("sequential-timeout")
@pytest.mark.timeout(600)
def test_swarm_counts_each_cut_short_fanout_as_loss(swarms: SwarmQueue) -> None:
    result = swarms.result("sequential-timeout")
    run, counts = result.run, result.counts
    print(result.figures())
    timeouts = result.lambda_stat("timeouts", SEND)
    assert timeouts >= 3, result.stage_stats["lambda"]
    assert result.lambda_stat("cold_starts", SEND) >= 1, "timed-out environments are replaced"
    assert result.gateway("integration_errors") == timeouts
    assert counts.error_frames == result.gateway("error_frames") >= 1
    details = run.errors["detail"][run.errors["kind"] == "error_frame"]
    assert {json.loads(detail)["message"] for detail in details} == {INTERNAL_SERVER_ERROR}

    accounts = sender_accounts(run)
    # No message lost anything unless its sender was told its invocation failed ...
    for client, account in accounts.items():
        assert account.lossy <= account.error_frames, (client, account)
    # ... and cut-short fan-outs reached some recipients: their missing ones are loss.
    assert sum(account.partial for account in accounts.values()) >= 1
    assert lost_in(run, "partial") > 0
    assert counts.lost == lost_in(run, "partial") + lost_in(run, "none")


@pytest.mark.swarms("optimized-timeout")
@pytest.mark.timeout(600)
def test_optimized_fans_out_within_the_same_timeout_and_loses_nothing(
    swarms: SwarmQueue,
) -> None:
    result = swarms.result("optimized-timeout")
    counts = result.counts
    print(result.figures())
    assert counts.expected > 0
    assert result.lambda_stat("timeouts", SEND) == 0
    assert counts.error_frames == 0
    assert counts.lost == 0, result.figures()
