"""The @connections stand-in answers the way boto3 expects API Gateway to.

These pin the facts the handler tests rely on: which scripted answer becomes
which exception inside boto3 (a bare 410 is a generic ``ClientError``; only
``x-amzn-ErrorType`` or a typed JSON body makes it a ``GoneException``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.handlers.support import (
    GONE,
    GONE_UNTYPED,
    OK,
    SERVER_ERROR,
    THROTTLED,
    TOO_LARGE,
    ConnectionsStub,
    Reply,
    new_connection_id,
)

if TYPE_CHECKING:
    from mypy_boto3_apigatewaymanagementapi import ApiGatewayManagementApiClient


@pytest.fixture
def client(aws_env: None, stub: ConnectionsStub) -> ApiGatewayManagementApiClient:
    config = Config(retries={"mode": "standard", "total_max_attempts": 1})
    return boto3.client("apigatewaymanagementapi", endpoint_url=stub.url, config=config)


@pytest.mark.parametrize(
    ("reply", "code", "status"),
    [
        (GONE, "GoneException", 410),
        (GONE_UNTYPED, "410", 410),
        (THROTTLED, "LimitExceededException", 429),
        (TOO_LARGE, "PayloadTooLargeException", 413),
        (SERVER_ERROR, "500", 500),
    ],
)
def test_scripted_errors_reach_boto3_as_aws_errors(
    client: ApiGatewayManagementApiClient,
    stub: ConnectionsStub,
    reply: Reply,
    code: str,
    status: int,
) -> None:
    connection_id = new_connection_id()
    stub.script(connection_id, reply)
    with pytest.raises(ClientError) as caught:
        client.post_to_connection(ConnectionId=connection_id, Data=b"x")
    assert caught.value.response["Error"]["Code"] == code
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    # Only a typed 410 becomes boto3's modelled GoneException.
    assert isinstance(caught.value, client.exceptions.GoneException) == (code == "GoneException")


def test_script_runs_in_order_then_repeats_its_last_reply(
    client: ApiGatewayManagementApiClient, stub: ConnectionsStub
) -> None:
    connection_id = new_connection_id()
    stub.script(connection_id, THROTTLED, OK)
    with pytest.raises(client.exceptions.LimitExceededException):
        client.post_to_connection(ConnectionId=connection_id, Data=b"one")
    client.post_to_connection(ConnectionId=connection_id, Data=b"two")
    client.post_to_connection(ConnectionId=connection_id, Data=b"three")
    assert [r.body for r in stub.posts_to(connection_id)] == [b"one", b"two", b"three"]


def test_records_decoded_id_method_and_body(
    client: ApiGatewayManagementApiClient, stub: ConnectionsStub
) -> None:
    connection_id = "BFaT_fALIAMCKug="
    client.post_to_connection(ConnectionId=connection_id, Data=b'{"hello": 1}')
    info = client.get_connection(ConnectionId=connection_id)
    client.delete_connection(ConnectionId=connection_id)
    assert info["Identity"]["SourceIp"] == "192.0.2.10"
    assert [(r.method, r.connection_id) for r in stub.requests()] == [
        ("POST", connection_id),
        ("GET", connection_id),
        ("DELETE", connection_id),
    ]
    assert stub.posts()[0].body == b'{"hello": 1}'


def test_requests_outside_the_stage_are_refused(aws_env: None, stub: ConnectionsStub) -> None:
    config = Config(retries={"mode": "standard", "total_max_attempts": 1})
    wrong_stage = stub.url.rsplit("/", 1)[0] + "/other"
    client = boto3.client("apigatewaymanagementapi", endpoint_url=wrong_stage, config=config)
    with pytest.raises(ClientError) as caught:
        client.post_to_connection(ConnectionId=new_connection_id(), Data=b"x")
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert stub.requests() == []
