"""The @connections management API through boto3: the modelled answers and errors."""

from __future__ import annotations

import json
import math
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import datetime

import pytest
from botocore.exceptions import ClientError

from fanbench_common.limits import MAX_MESSAGE_BYTES
from loadtest.stage.config import StageConfig
from loadtest.stage.events import new_id
from loadtest.stage.launcher import LocalStage
from tests.stage.support import (
    error_code,
    expect_close,
    gateway_stat,
    management,
    nothing_arrives,
    open_ws,
    own_id,
    recv_text,
    running_stage,
    wait_for,
)


@pytest.fixture(scope="module")
def throttled_stage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStage]:
    config = StageConfig(throttle_rps=5, throttle_burst=1)
    with running_stage(config, tmp_path_factory.mktemp("throttled")) as stage:
        yield stage


def test_post_delivers_the_exact_bytes(default_stage: LocalStage) -> None:
    client = management(default_stage)
    with open_ws(default_stage.ws_url) as ws:
        connection_id = own_id(ws)
        text = '{"greeting": "café ☕", "n": 1}'.encode()
        response = client.post_to_connection(ConnectionId=connection_id, Data=text)
        assert response["ResponseMetadata"]["HTTPStatusCode"] == 200
        assert recv_text(ws).encode() == text
        raw = bytes(range(256))  # not UTF-8: arrives as a binary frame, byte for byte
        client.post_to_connection(ConnectionId=connection_id, Data=raw)
        assert ws.recv(timeout=5) == raw


def test_get_connection_describes_the_client(default_stage: LocalStage) -> None:
    client = management(default_stage)
    with open_ws(default_stage.ws_url, user_agent="fanbench-test/1.0") as ws:
        connection_id = own_id(ws)
        first = client.get_connection(ConnectionId=connection_id)
        assert first["ResponseMetadata"]["HTTPStatusCode"] == 200
        assert isinstance(first["ConnectedAt"], datetime)
        assert isinstance(first["LastActiveAt"], datetime)
        assert first["Identity"]["SourceIp"] == "127.0.0.1"
        assert first["Identity"]["UserAgent"] == "fanbench-test/1.0"
        assert first["LastActiveAt"] >= first["ConnectedAt"]
        assert abs(time.time() - first["ConnectedAt"].timestamp()) < 30
        seen: list[datetime] = []

        def moved_on() -> bool:
            own_id(ws)  # a message from the client moves lastActiveAt on
            second = client.get_connection(ConnectionId=connection_id)
            assert second["ConnectedAt"] == first["ConnectedAt"]
            seen.append(second["LastActiveAt"])
            return second["LastActiveAt"] > first["LastActiveAt"]

        # The timestamps have a clock's resolution: a message in the same tick cannot move
        # it, so send until one lands in a later tick rather than sleeping for a guess.
        wait_for(moved_on, 10, "lastActiveAt to move on")
        assert all(later >= first["LastActiveAt"] for later in seen)


def test_delete_connection_closes_the_socket_and_later_posts_are_gone(
    default_stage: LocalStage,
) -> None:
    client = management(default_stage)
    with open_ws(default_stage.ws_url) as ws:
        connection_id = own_id(ws)
        response = client.delete_connection(ConnectionId=connection_id)
        assert response["ResponseMetadata"]["HTTPStatusCode"] == 204
        closed = expect_close(ws)
        assert closed.rcvd is not None
        assert closed.rcvd.code == 1000
        with pytest.raises(client.exceptions.GoneException):
            client.post_to_connection(ConnectionId=connection_id, Data=b"too late")
        with pytest.raises(client.exceptions.GoneException):
            client.get_connection(ConnectionId=connection_id)
        with pytest.raises(client.exceptions.GoneException):
            client.delete_connection(ConnectionId=connection_id)


def test_unknown_well_formed_id_is_gone(default_stage: LocalStage) -> None:
    client = management(default_stage)
    with pytest.raises(client.exceptions.GoneException) as gone:
        client.post_to_connection(ConnectionId=new_id(), Data=b"hello?")
    assert error_code(gone.value) == (410, "GoneException")


def test_malformed_id_is_a_bad_request(default_stage: LocalStage) -> None:
    client = management(default_stage)
    with pytest.raises(ClientError) as bad:
        client.post_to_connection(ConnectionId="not-an-id", Data=b"x")
    assert error_code(bad.value) == (400, "BadRequestException")
    assert not isinstance(bad.value, client.exceptions.GoneException)


def test_data_over_128_kb_is_payload_too_large(default_stage: LocalStage) -> None:
    client = management(default_stage)
    with open_ws(default_stage.ws_url) as ws:
        connection_id = own_id(ws)
        with pytest.raises(client.exceptions.PayloadTooLargeException) as too_large:
            client.post_to_connection(
                ConnectionId=connection_id, Data=b"x" * (MAX_MESSAGE_BYTES + 1)
            )
        assert error_code(too_large.value)[0] == 413
        assert nothing_arrives(ws, 0.3)
        client.post_to_connection(ConnectionId=connection_id, Data=b"y" * MAX_MESSAGE_BYTES)
        assert len(recv_text(ws)) == MAX_MESSAGE_BYTES


def test_wrong_stage_in_the_endpoint_is_forbidden(default_stage: LocalStage) -> None:
    wrong = default_stage.endpoints.callback_url.rsplit("/", 1)[0] + "/prod"
    client = management(default_stage, endpoint_url=wrong)
    with open_ws(default_stage.ws_url) as ws:
        connection_id = own_id(ws)
        with pytest.raises(client.exceptions.ForbiddenException) as forbidden:
            client.post_to_connection(ConnectionId=connection_id, Data=b"x")
        assert error_code(forbidden.value)[0] == 403
        assert nothing_arrives(ws, 0.3)


def test_unsigned_request_is_refused_with_403(default_stage: LocalStage) -> None:
    with open_ws(default_stage.ws_url) as ws:
        connection_id = own_id(ws)
        request = urllib.request.Request(
            f"{default_stage.endpoints.connections_url}/{connection_id}",
            data=b"unsigned",
            method="POST",
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=5)
        assert refused.value.code == 403
        assert refused.value.headers["x-amzn-ErrorType"] == "ForbiddenException"
        assert json.loads(refused.value.read())["message"] == "Missing Authentication Token"
        refused.value.close()
        assert nothing_arrives(ws, 0.3)


def test_throttle_answers_limit_exceeded_for_a_burst(throttled_stage: LocalStage) -> None:
    """5 requests/s, burst 1: a quick burst passes only as fast as the bucket refills (whatever
    the machine's speed: the bound comes from the burst's measured duration); the rest get 429,
    and once the bucket has refilled a request passes again."""
    client = management(throttled_stage)
    rps, burst, requests = 5, 1, 20

    def outcome() -> str:
        try:
            client.post_to_connection(ConnectionId=new_id(), Data=b"x")
            return "ok"
        except client.exceptions.GoneException:
            return "gone"  # passed the throttle, then found no such connection
        except client.exceptions.LimitExceededException as throttled:
            return f"throttled {error_code(throttled)[0]}"

    before = gateway_stat(throttled_stage, "api_post_429")
    began = time.monotonic()
    outcomes = [outcome() for _ in range(requests)]
    took_s = time.monotonic() - began
    passed = outcomes.count("gone")
    assert "ok" not in outcomes
    assert passed + outcomes.count("throttled 429") == requests, outcomes
    assert passed <= burst + math.ceil(rps * took_s), (outcomes, took_s)
    assert passed >= 1 or took_s < 1 / rps, (outcomes, took_s)
    assert gateway_stat(throttled_stage, "api_post_429") - before == requests - passed
    wait_for(lambda: outcome() == "gone", 5, "the bucket to refill and a request to pass")
