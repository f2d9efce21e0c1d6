"""The Lambda runtime on a running stage: warm reuse, the concurrency cap, the function timeout."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from loadtest.stage.config import StageConfig
from loadtest.stage.faults import Faults
from loadtest.stage.launcher import LocalStage
from tests.stage.support import (
    lambda_stat,
    open_ws,
    recv_json,
    recv_text,
    stage_in,
    stat_is,
    wait_for,
)

SEND = "SendMessageFunction"


@pytest.fixture(scope="module")
def warm_stage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStage]:
    yield from stage_in(StageConfig(provisioned=1), tmp_path_factory, "warm")


@pytest.fixture(scope="module")
def capped_stage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStage]:
    config = StageConfig(concurrency=2, faults=Faults(post_latency_ms=150))
    yield from stage_in(config, tmp_path_factory, "capped")


@pytest.fixture(scope="module")
def timeout_stage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStage]:
    """The sequential variant posts one after another: 3 recipients x 400 ms outlive 1 s."""
    config = StageConfig(
        variant="sequential", function_timeout_s=1.0, faults=Faults(post_latency_ms=400)
    )
    yield from stage_in(config, tmp_path_factory, "timeout")


def _chat(message: str) -> str:
    return json.dumps({"action": "sendmessage", "message": message})


def _environments(stage: LocalStage, function: str) -> int:
    """Environments started for ``function``: cold starts plus provisioned ones."""
    stats = stage.stats()["lambda"]
    started: int = stats["cold_starts"].get(function, 0) + stats["provisioned"].get(function, 0)
    return started


def test_provisioned_environments_start_before_traffic(warm_stage: LocalStage) -> None:
    """One environment per function is up before the first client (provisioned concurrency)."""
    stats = warm_stage.stats()["lambda"]
    functions = {"ConnectFunction", "DisconnectFunction", "DefaultFunction", SEND}
    assert stats["provisioned"] == dict.fromkeys(functions, 1)
    with open_ws(warm_stage.ws_url):
        pass
    assert lambda_stat(warm_stage, "invocations", "ConnectFunction") >= 1
    assert lambda_stat(warm_stage, "cold_starts", "ConnectFunction") == 0


def test_warm_environment_is_reused(warm_stage: LocalStage) -> None:
    with open_ws(warm_stage.ws_url) as sender, open_ws(warm_stage.ws_url) as receiver:
        for n in range(1, 6):
            sender.send(_chat(f"message {n}"))
            assert recv_text(receiver) == f"message {n}"
            wait_for(stat_is(warm_stage, "invocations", SEND, n), 5, f"invocation {n} to end")
    # the provisioned environment served all five, one after another: no cold start at all
    assert _environments(warm_stage, SEND) == 1
    assert lambda_stat(warm_stage, "cold_starts", SEND) == 0


def test_concurrency_cap_bounds_running_invocations(capped_stage: LocalStage) -> None:
    clients = 3
    per_client = 3
    with ExitStack() as stack:
        sockets = [stack.enter_context(open_ws(capped_stage.ws_url)) for _ in range(clients)]
        for n in range(per_client):
            for index, ws in enumerate(sockets):
                ws.send(_chat(f"{index}:{n}"))
        for index, ws in enumerate(sockets):
            expected = {
                f"{other}:{n}"
                for other in range(clients)
                if other != index
                for n in range(per_client)
            }
            received = {recv_text(ws, timeout_s=15) for _ in expected}
            assert received == expected
    stats = capped_stage.stats()["lambda"]
    assert stats["invocations"][SEND] == clients * per_client
    assert stats["peak_running"] == 2


def test_function_timeout_fails_the_invocation_and_replaces_the_environment(
    timeout_stage: LocalStage,
) -> None:
    with ExitStack() as stack:
        sender = stack.enter_context(open_ws(timeout_stage.ws_url))
        for _ in range(3):
            stack.enter_context(open_ws(timeout_stage.ws_url))
        cold_before: list[int] = []
        for attempt in (1, 2, 3):
            cold_before.append(lambda_stat(timeout_stage, "cold_starts", SEND))
            sender.send(_chat(f"slow {attempt}"))
            frame = recv_json(sender, timeout_s=10)
            assert frame["message"] == "Internal server error"
            assert set(frame) == {"message", "connectionId", "requestId"}
            wait_for(stat_is(timeout_stage, "timeouts", SEND, attempt), 5, "the timeout")
        cold_after = lambda_stat(timeout_stage, "cold_starts", SEND)
    # the environment that timed out is gone: the next invocation had to start cold
    assert cold_before[2] == cold_before[1] + 1
    assert cold_after == cold_before[2] + 1
    assert lambda_stat(timeout_stage, "errors", SEND) == 0  # a timeout, not a handler error
