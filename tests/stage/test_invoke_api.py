"""Lambda's Invoke API on a running stage, through boto3's own Lambda client.

The stage runs the sharded variant, so template.yaml creates FanoutFunction;
asynchronous retries are scaled down (first after 0.2 s instead of 60 s).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

import sharding
from connection_store import Member
from fanbench_common.limits import LAMBDA_ASYNC_PAYLOAD_BYTES
from fanbench_common.resources import FANOUT_FUNCTION, SEND_FUNCTION
from loadtest.stage.config import StageConfig
from loadtest.stage.launcher import LocalStage
from tests.stage.support import (
    FAKE_KEY,
    REGION,
    error_code,
    nothing_arrives,
    open_ws,
    own_id,
    recv_text,
    stage_in,
    wait_for,
)

if TYPE_CHECKING:
    from mypy_boto3_lambda import LambdaClient

CONCURRENCY = 3
RETRY_DELAY_S = 0.2


@pytest.fixture(scope="module")
def stage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStage]:
    config = StageConfig(
        variant="sharded", concurrency=CONCURRENCY, async_retry_delay_s=RETRY_DELAY_S
    )
    yield from stage_in(config, tmp_path_factory, "invoke")


@pytest.fixture(scope="module")
def client(stage: LocalStage) -> LambdaClient:
    return boto3.client(
        "lambda",
        endpoint_url=stage.endpoints.lambda_url,
        region_name=REGION,
        aws_access_key_id=FAKE_KEY,
        aws_secret_access_key=FAKE_KEY,
        config=Config(retries={"mode": "standard", "total_max_attempts": 1}, read_timeout=30),
    )


def shard(stage: LocalStage, message: str, recipients: list[str]) -> bytes:
    """A fan-out event as sendmessage_sharded writes it; the recipients' connect time is
    an hour ago, long past the handshake."""
    connected_at_ms = int(time.time() * 1000) - 3_600_000
    members = [Member(cid, connected_at_ms) for cid in recipients]
    return sharding.encode(stage.endpoints.callback_url, message.encode(), members)


def fail_next(stage: LocalStage, function: str, count: int) -> None:
    request = urllib.request.Request(
        f"{stage.endpoints.lambda_url}/_fanbench/fail-next",
        data=json.dumps({"function": function, "count": count}).encode(),
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def counter(stage: LocalStage, name: str) -> int:
    value = stage.invoke_stats().get(name, 0)
    assert isinstance(value, int)
    return value


def payload_of(response: Any) -> Any:
    return json.loads(response["Payload"].read())


# --- synchronous ---------------------------------------------------------------------


def test_request_response_returns_the_functions_result(
    stage: LocalStage, client: LambdaClient
) -> None:
    response = client.invoke(FunctionName=FANOUT_FUNCTION, Payload=b'{"endpoint": 1}')
    assert response["StatusCode"] == 200
    assert "FunctionError" not in response
    assert response["ExecutedVersion"] == "$LATEST"
    result = payload_of(response)
    assert result["statusCode"] == 400  # the fan-out handler refused a malformed shard
    assert "endpoint" in result["body"]


def test_a_full_arn_names_the_function_too(client: LambdaClient) -> None:
    arn = f"arn:aws:lambda:{REGION}:123456789012:function:{FANOUT_FUNCTION}"
    response = client.invoke(FunctionName=arn, Payload=b"{}")
    assert response["StatusCode"] == 200
    assert payload_of(response)["statusCode"] == 400


def test_a_handler_error_is_a_200_with_the_function_error_header(
    stage: LocalStage, client: LambdaClient
) -> None:
    fail_next(stage, FANOUT_FUNCTION, 1)
    response = client.invoke(FunctionName=FANOUT_FUNCTION, Payload=b"{}")
    assert response["StatusCode"] == 200
    assert response["FunctionError"] == "Unhandled"
    assert payload_of(response) == {
        "errorMessage": "fanbench injected a Lambda error",
        "errorType": "RuntimeError",
    }
    # the fault was used up: the next call runs the handler
    assert "FunctionError" not in client.invoke(FunctionName=FANOUT_FUNCTION, Payload=b"{}")


def test_an_unknown_function_raises_boto3s_resource_not_found(client: LambdaClient) -> None:
    with pytest.raises(client.exceptions.ResourceNotFoundException) as raised:
        client.invoke(FunctionName="NoSuchFunction", Payload=b"{}")
    assert error_code(raised.value) == (404, "ResourceNotFoundException")
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.invoke(FunctionName=FANOUT_FUNCTION, Qualifier="live", Payload=b"{}")


def test_bad_json_and_dry_run(client: LambdaClient) -> None:
    with pytest.raises(client.exceptions.InvalidRequestContentException):
        client.invoke(FunctionName=FANOUT_FUNCTION, Payload=b"{not json")
    response = client.invoke(FunctionName=FANOUT_FUNCTION, InvocationType="DryRun")
    assert response["StatusCode"] == 204


def test_every_function_of_the_variant_is_invocable(client: LambdaClient) -> None:
    response = client.invoke(FunctionName=SEND_FUNCTION, Payload=b"{}")
    assert response["StatusCode"] == 200
    assert payload_of(response)["statusCode"] == 400  # no requestContext


# --- asynchronous --------------------------------------------------------------------


def test_an_event_is_accepted_at_once_and_delivers(stage: LocalStage, client: LambdaClient) -> None:
    succeeded = counter(stage, "async_succeeded")
    with open_ws(stage.ws_url) as ws:
        me = own_id(ws)
        response = client.invoke(
            FunctionName=FANOUT_FUNCTION,
            InvocationType="Event",
            Payload=shard(stage, "queued hello", [me]),
        )
        assert response["StatusCode"] == 202
        assert response["Payload"].read() == b""
        assert recv_text(ws, 10) == "queued hello"
        assert nothing_arrives(ws, 0.5)
    wait_for(lambda: counter(stage, "async_succeeded") == succeeded + 1, 10, "the event's end")


def test_an_event_over_256_kb_is_refused(client: LambdaClient) -> None:
    payload = json.dumps({"pad": "x" * LAMBDA_ASYNC_PAYLOAD_BYTES}).encode()
    with pytest.raises(ClientError) as raised:
        client.invoke(FunctionName=FANOUT_FUNCTION, InvocationType="Event", Payload=payload)
    assert error_code(raised.value) == (413, "RequestEntityTooLargeException")


def test_an_event_that_fails_once_is_retried_and_delivers_once(
    stage: LocalStage, client: LambdaClient
) -> None:
    before = stage.invoke_stats()
    with open_ws(stage.ws_url) as ws:
        me = own_id(ws)
        fail_next(stage, FANOUT_FUNCTION, 1)
        response = client.invoke(
            FunctionName=FANOUT_FUNCTION,
            InvocationType="Event",
            Payload=shard(stage, "second time lucky", [me]),
        )
        assert response["StatusCode"] == 202
        assert recv_text(ws, 10) == "second time lucky"
        assert nothing_arrives(ws, 3 * RETRY_DELAY_S + 0.5)
    after = stage.invoke_stats()
    assert after["async_function_error"] - before.get("async_function_error", 0) == 1
    assert after["async_retries"] - before.get("async_retries", 0) == 1
    assert after["async_succeeded"] - before.get("async_succeeded", 0) == 1
    assert after.get("async_dropped", 0) == before.get("async_dropped", 0)


def test_an_event_failing_three_times_is_dropped_after_two_retries(
    stage: LocalStage, client: LambdaClient
) -> None:
    before = stage.invoke_stats()
    with open_ws(stage.ws_url) as ws:
        me = own_id(ws)
        fail_next(stage, FANOUT_FUNCTION, 3)
        client.invoke(
            FunctionName=FANOUT_FUNCTION,
            InvocationType="Event",
            Payload=shard(stage, "never", [me]),
        )
        wait_for(
            lambda: counter(stage, "async_dropped") == before.get("async_dropped", 0) + 1,
            10,
            "the event to be dropped",
        )
        assert nothing_arrives(ws, 0.3)
    after = stage.invoke_stats()
    assert after["async_runs"] - before["async_runs"] == 3
    assert after["async_function_error"] - before.get("async_function_error", 0) == 3
    assert after["async_in_flight"] == 0


def test_events_share_the_runtimes_concurrency(stage: LocalStage, client: LambdaClient) -> None:
    """A burst of events queues for the stage's slots: never more than CONCURRENCY run."""
    events = 4 * CONCURRENCY
    invoked = stage.stats()["lambda"]["invocations"].get(FANOUT_FUNCTION, 0)
    for _ in range(events):
        client.invoke(
            FunctionName=FANOUT_FUNCTION, InvocationType="Event", Payload=shard(stage, "x", [])
        )
    wait_for(
        lambda: stage.stats()["lambda"]["invocations"].get(FANOUT_FUNCTION, 0) == invoked + events,
        20,
        "every event to run",
    )
    assert 1 <= stage.stats()["lambda"]["peak_running"] <= CONCURRENCY


def test_the_test_hook_refuses_an_unknown_function(stage: LocalStage) -> None:
    with pytest.raises(urllib.error.HTTPError) as raised:
        fail_next(stage, "NoSuchFunction", 1)
    assert raised.value.code == 400
