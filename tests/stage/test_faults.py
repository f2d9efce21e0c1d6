"""Fault injection on a running stage: each flag does what it says, and only that.

Connection ids are learned from the table (``$connect`` stores them before the
handshake completes), since faulted posts would also garble ``$default``'s reply.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from botocore.exceptions import ClientError

from loadtest.stage.config import StageConfig
from loadtest.stage.faults import Faults
from loadtest.stage.launcher import LocalStage
from tests.stage.support import (
    error_code,
    gateway_stat,
    lambda_stat,
    management,
    nothing_arrives,
    open_ws,
    recv_text,
    running_stage,
    stage_in,
    table_ids,
)


@pytest.fixture(scope="module")
def latency_stage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStage]:
    yield from stage_in(
        StageConfig(faults=Faults(post_latency_ms=200)), tmp_path_factory, "latency"
    )


@pytest.fixture(scope="module")
def cold_stage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStage]:
    """Nothing provisioned ahead of traffic: the first invocation of each function is cold."""
    config = StageConfig(provisioned=0, faults=Faults(cold_start_ms=500))
    with running_stage(config, tmp_path_factory.mktemp("cold")) as stage:
        yield stage


@pytest.fixture(scope="module")
def failing_stage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStage]:
    yield from stage_in(
        StageConfig(faults=Faults(post_failure_rate=1.0)), tmp_path_factory, "failing"
    )


@pytest.fixture(scope="module")
def throttling_stage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStage]:
    yield from stage_in(
        StageConfig(faults=Faults(throttle_rate=1.0)), tmp_path_factory, "throttling"
    )


@pytest.fixture(scope="module")
def dropping_stage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStage]:
    yield from stage_in(StageConfig(faults=Faults(drop_rate=1.0)), tmp_path_factory, "dropping")


@pytest.fixture(scope="module")
def duplicating_stage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStage]:
    yield from stage_in(
        StageConfig(faults=Faults(duplicate_rate=1.0)), tmp_path_factory, "duplicating"
    )


def _the_new_id(stage: LocalStage, before: set[str]) -> str:
    (connection_id,) = table_ids(stage) - before
    return connection_id


def test_post_latency_delays_every_post(latency_stage: LocalStage) -> None:
    client = management(latency_stage)
    before = table_ids(latency_stage)
    with open_ws(latency_stage.ws_url) as ws:
        connection_id = _the_new_id(latency_stage, before)
        for n in range(3):
            started = time.monotonic()
            client.post_to_connection(ConnectionId=connection_id, Data=f"late {n}".encode())
            assert time.monotonic() - started >= 0.2
            assert recv_text(ws) == f"late {n}"
        started = time.monotonic()
        client.get_connection(ConnectionId=connection_id)  # only POSTs are delayed
        assert time.monotonic() - started < 0.2


def test_post_failure_rate_one_answers_500_to_every_post(failing_stage: LocalStage) -> None:
    client = management(failing_stage)
    before = table_ids(failing_stage)
    with open_ws(failing_stage.ws_url) as ws:
        connection_id = _the_new_id(failing_stage, before)
        for _ in range(5):
            with pytest.raises(ClientError) as failed:
                client.post_to_connection(ConnectionId=connection_id, Data=b"lost")
            assert error_code(failed.value)[0] == 500
        assert nothing_arrives(ws, 0.5)
    assert gateway_stat(failing_stage, "api_post_500") >= 5


def test_throttle_rate_one_answers_limit_exceeded(throttling_stage: LocalStage) -> None:
    client = management(throttling_stage)
    before = table_ids(throttling_stage)
    with open_ws(throttling_stage.ws_url) as ws:
        connection_id = _the_new_id(throttling_stage, before)
        for _ in range(3):
            with pytest.raises(client.exceptions.LimitExceededException) as throttled:
                client.post_to_connection(ConnectionId=connection_id, Data=b"throttled")
            assert error_code(throttled.value)[0] == 429
        assert nothing_arrives(ws, 0.5)


def test_drop_rate_one_answers_200_but_delivers_nothing(dropping_stage: LocalStage) -> None:
    client = management(dropping_stage)
    before = table_ids(dropping_stage)
    with open_ws(dropping_stage.ws_url) as ws:
        connection_id = _the_new_id(dropping_stage, before)
        response = client.post_to_connection(ConnectionId=connection_id, Data=b"into the void")
        assert response["ResponseMetadata"]["HTTPStatusCode"] == 200
        assert nothing_arrives(ws, 1.0)
    assert gateway_stat(dropping_stage, "frames_dropped") >= 1


def test_duplicate_rate_one_delivers_every_frame_twice(duplicating_stage: LocalStage) -> None:
    client = management(duplicating_stage)
    before = table_ids(duplicating_stage)
    with open_ws(duplicating_stage.ws_url) as ws:
        connection_id = _the_new_id(duplicating_stage, before)
        client.post_to_connection(ConnectionId=connection_id, Data=b"echo")
        assert [recv_text(ws), recv_text(ws)] == ["echo", "echo"]
        assert nothing_arrives(ws, 0.3)


def test_cold_start_delay_slows_the_first_invocation(cold_stage: LocalStage) -> None:
    timings: list[float] = []
    for _ in range(4):
        started = time.monotonic()
        with open_ws(cold_stage.ws_url):
            timings.append(time.monotonic() - started)  # the handshake waits for $connect
    cold, *warm = timings
    assert cold >= 0.5, timings
    assert sorted(warm)[1] < cold - 0.35, timings  # the typical warm handshake skips the delay
    assert lambda_stat(cold_stage, "cold_starts", "ConnectFunction") == 1
    init_ms = cold_stage.stats()["lambda"]["init_ms"]
    assert init_ms
    assert all(ms >= 500 for ms in init_ms), init_ms
