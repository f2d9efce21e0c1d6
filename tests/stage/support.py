"""Helpers for the local-stage tests: start a stage, open clients, read the table.

Every wait here is bounded in time (and every loop in count), and every address
is 127.0.0.1: the stage binds loopback only and the clients never leave it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from loadtest.stage.config import StageConfig
from loadtest.stage.launcher import LocalStage
from tests import ws

if TYPE_CHECKING:
    from mypy_boto3_apigatewaymanagementapi import ApiGatewayManagementApiClient
    from mypy_boto3_dynamodb import DynamoDBClient

REGION = "us-east-1"
FAKE_KEY = "x"

# The WebSocket clients' one home is tests/ws.py; the names this module always had:
DEFAULT_HINT = ws.DEFAULT_HINT
ID_IN_REPLY = ws.ID_IN_REPLY
RECV_TIMEOUT_S = ws.RECV_TIMEOUT_S
expect_close = ws.expect_close
nothing_arrives = ws.nothing_arrives
open_ws = ws.open_ws
own_id = ws.own_id
recv_json = ws.recv_json
recv_text = ws.recv_text
wait_for = ws.wait_for


@contextlib.contextmanager
def running_stage(config: StageConfig, log_dir: Path) -> Iterator[LocalStage]:
    """A stage subprocess for the ``with`` block; stopped (process group and all) after it."""
    stage = LocalStage(config, log_dir=log_dir)
    stage.start()
    try:
        yield stage
    finally:
        stage.stop()


def stage_in(
    config: StageConfig, factory: pytest.TempPathFactory, name: str
) -> Iterator[LocalStage]:
    """For module-scoped fixtures: ``yield from stage_in(config, tmp_path_factory, "name")``."""
    with running_stage(config, factory.mktemp(name)) as stage:
        yield stage


def management(stage: LocalStage, endpoint_url: str | None = None) -> ApiGatewayManagementApiClient:
    """A boto3 @connections client, signed with fake credentials, one attempt per call."""
    return boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=endpoint_url or stage.endpoints.callback_url,
        region_name=REGION,
        aws_access_key_id=FAKE_KEY,
        aws_secret_access_key=FAKE_KEY,
        config=Config(retries={"mode": "standard", "total_max_attempts": 1}, read_timeout=10),
    )


def dynamodb(stage: LocalStage) -> DynamoDBClient:
    return boto3.client(
        "dynamodb",
        endpoint_url=stage.endpoints.dynamodb_endpoint,
        region_name=REGION,
        aws_access_key_id=FAKE_KEY,
        aws_secret_access_key=FAKE_KEY,
    )


def table_items(stage: LocalStage) -> list[dict[str, Any]]:
    """Every item of the connections table (paginated: stops only when there is no key)."""
    client = dynamodb(stage)
    items: list[dict[str, Any]] = []
    start: dict[str, Any] | None = None
    for _ in range(1_000):
        table = stage.endpoints.table_name
        page = (
            client.scan(TableName=table, ExclusiveStartKey=start)
            if start
            else client.scan(TableName=table)
        )
        items.extend(page.get("Items", []))
        start = page.get("LastEvaluatedKey")
        if not start:
            return items
    raise AssertionError("the scan did not end within 1,000 pages")


def table_ids(stage: LocalStage) -> set[str]:
    return {item["connectionId"]["S"] for item in table_items(stage)}


def lambda_stat(stage: LocalStage, name: str, function: str) -> int:
    value = stage.stats()["lambda"][name].get(function, 0)
    assert isinstance(value, int)
    return value


def stat_is(stage: LocalStage, name: str, function: str, value: int) -> Callable[[], bool]:
    """For ``wait_for``: the Lambda counter ``name`` of ``function`` equals ``value``."""
    return lambda: lambda_stat(stage, name, function) == value


def gateway_stat(stage: LocalStage, name: str) -> int:
    value = stage.stats()["gateway"].get(name, 0)
    assert isinstance(value, int)
    return value


def error_code(error: ClientError) -> tuple[int, str]:
    """(HTTP status, error code) of a boto3 error."""
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return status, error.response.get("Error", {}).get("Code", "")
