"""Helpers for the local-stage tests: start a stage, open clients, read the table.

Every wait here is bounded in time (and every loop in count), and every address
is 127.0.0.1: the stage binds loopback only and the clients never leave it.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from loadtest.stage.config import StageConfig
from loadtest.stage.launcher import LocalStage, wait_until

if TYPE_CHECKING:
    from mypy_boto3_apigatewaymanagementapi import ApiGatewayManagementApiClient
    from mypy_boto3_dynamodb import DynamoDBClient

REGION = "us-east-1"
FAKE_KEY = "x"
RECV_TIMEOUT_S = 5.0
DEFAULT_HINT = "Use the sendmessage route to send a message"
ID_IN_REPLY = re.compile(r'"connectionID": "([A-Za-z0-9_=-]+)"')


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


def open_ws(url: str, user_agent: str = "Python websockets (fanbench tests)") -> ClientConnection:
    """A websockets sync client on loopback, no proxy, bounded open and close. Use in ``with``."""
    return connect(
        url,
        proxy=None,
        open_timeout=10,
        close_timeout=2,
        ping_interval=None,
        compression=None,
        user_agent_header=user_agent,
    )


def recv_text(ws: ClientConnection, timeout_s: float = RECV_TIMEOUT_S) -> str:
    frame = ws.recv(timeout=timeout_s)
    assert isinstance(frame, str), f"expected a text frame, got {frame!r:.80}"
    return frame


def recv_json(ws: ClientConnection, timeout_s: float = RECV_TIMEOUT_S) -> dict[str, Any]:
    parsed = json.loads(recv_text(ws, timeout_s))
    assert isinstance(parsed, dict), parsed
    return parsed


def nothing_arrives(ws: ClientConnection, within_s: float) -> bool:
    """True when no frame arrives within ``within_s`` (and the connection stays open)."""
    try:
        frame = ws.recv(timeout=within_s)
    except TimeoutError:
        return True
    raise AssertionError(f"unexpected frame: {frame!r:.200}")


def expect_close(ws: ClientConnection, timeout_s: float = RECV_TIMEOUT_S) -> ConnectionClosed:
    """Read (and drop) frames until the server closes; the close exception, or fail."""
    deadline = time.monotonic() + timeout_s
    for _ in range(10_000):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            ws.recv(timeout=remaining)
        except TimeoutError:
            break
        except ConnectionClosed as closed:
            return closed
    raise AssertionError(f"the server did not close the connection within {timeout_s} s")


def own_id(ws: ClientConnection) -> str:
    """The client's connection id, as the ``$default`` handler reports it."""
    ws.send("who am i")
    deadline = time.monotonic() + RECV_TIMEOUT_S
    for _ in range(100):
        frame = recv_text(ws, max(0.01, deadline - time.monotonic()))
        match = ID_IN_REPLY.search(frame)
        if match and DEFAULT_HINT in frame:
            return match.group(1)
    raise AssertionError("no $default reply with a connectionID")


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


def wait_for(predicate: Any, timeout_s: float, what: str) -> None:
    assert wait_until(predicate, timeout_s), f"timed out after {timeout_s} s waiting for {what}"
