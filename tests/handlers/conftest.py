"""Fixtures for the handler tests: moto's DynamoDB server, the @connections stub,
a fresh table per test (from template.yaml), and handlers loaded under that env.

Handlers are imported as top-level modules, as Lambda's task root makes them
(``tests/conftest.py`` puts ``handlers/`` on ``sys.path``).
"""

from __future__ import annotations

import importlib
import logging
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

import callbacks
import connection_store
from loadtest.stage.template import load_template, stage_template
from tests.handlers.support import ConnectionsStub, Table
from tests.repo import TEMPLATE_PATH

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
SendMessageLoader = Callable[..., Handler]

REGION = "us-east-1"

# Anything in the ambient environment that could change what boto3 or the
# handlers do; each test starts without them.
_CLEARED_ENV = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI",
    "AWS_RETRY_MODE",
    "AWS_MAX_ATTEMPTS",
    "AWS_USE_FIPS_ENDPOINT",
    "AWS_USE_DUALSTACK_ENDPOINT",
    "TABLE_NAME",
    "AUTH_TOKEN",
    "CALLBACK_URL",
    "POST_CONCURRENCY",
    "SCAN_SEGMENTS",
    "POST_MAX_ATTEMPTS",
    "DEADLINE_RESERVE_MS",
    "HANDSHAKE_GRACE_MS",
    "POST_CLIENT",
    "ROOMLESS_AUDIENCE",
    "FANOUT_FUNCTION",
    "SHARD_SIZE",
    "LEDGER_TABLE",
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "NO_PROXY",
    "no_proxy",
)


@pytest.fixture(scope="package")
def moto_endpoint() -> Iterator[str]:
    """moto's real DynamoDB server, in a thread, on a free port."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one INFO line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="package")
def connections_server() -> Iterator[ConnectionsStub]:
    stub = ConnectionsStub()
    stub.start()
    yield stub
    stub.stop()


@pytest.fixture
def stub(connections_server: ConnectionsStub) -> ConnectionsStub:
    """The @connections stand-in, with no scripts and no recorded requests."""
    connections_server.reset()
    return connections_server


def _reset_client_caches() -> None:
    connection_store._client = None
    with connection_store._budget_clients_lock:
        connection_store._budget_clients.clear()
    with callbacks._clients_lock:
        callbacks._clients.clear()
        callbacks._signed.clear()
        callbacks._identity.clear()


@pytest.fixture
def aws_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, moto_endpoint: str, stub: ConnectionsStub
) -> Iterator[None]:
    """Environment as Lambda and the local stage provide it, pointed at the fakes."""
    for name in _CLEARED_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", moto_endpoint)
    monkeypatch.setenv("CALLBACK_URL", stub.url)
    _reset_client_caches()
    yield
    _reset_client_caches()


@pytest.fixture
def table(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Table]:
    """A fresh connections table, created from template.yaml's own definition."""
    name = f"connections-{uuid.uuid4().hex}"
    client: DynamoDBClient = boto3.client("dynamodb")
    kwargs = stage_template(load_template(TEMPLATE_PATH), {}, name).table.create_table_kwargs(name)
    client.create_table(**kwargs)
    monkeypatch.setenv("TABLE_NAME", name)
    yield Table(name=name, client=client)
    client.delete_table(TableName=name)


@pytest.fixture(params=callbacks.POST_CLIENTS)
def post_client_kind(
    request: pytest.FixtureRequest, aws_env: None, monkeypatch: pytest.MonkeyPatch
) -> callbacks.PostClientKind:
    """Each way of posting in turn (``POST_CLIENT``): every test using it runs on both."""
    kind: callbacks.PostClientKind = request.param
    monkeypatch.setenv("POST_CLIENT", kind)
    return kind


@pytest.fixture
def load_sendmessage(
    table: Table, monkeypatch: pytest.MonkeyPatch, post_client_kind: callbacks.PostClientKind
) -> SendMessageLoader:
    """(Re)import the optimized handler under extra env; it reads Settings at import.

    Parametrized over ``post_client_kind``: each optimized-handler test runs with
    boto3's client and with the signed one.
    """
    import sendmessage

    def load(**env: str) -> Handler:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        replaced = sendmessage._POOL
        importlib.reload(sendmessage)
        replaced.shutdown(wait=True)  # the module keeps one live pool, as a warm Lambda does
        return sendmessage.handler

    return load


@pytest.fixture
def sendmessage_handler(load_sendmessage: SendMessageLoader) -> Handler:
    return load_sendmessage()


TUTORIAL_VARIANTS = {"baseline": "sendmessage_baseline", "sequential": "sendmessage_sequential"}
"""The tutorial's handler as ported (every post at once) and as AWS's Python example posts."""


def _reload_tutorial(variant: str) -> Handler:
    """(Re)import a tutorial variant; it builds its DynamoDB client at import."""
    module = importlib.import_module(TUTORIAL_VARIANTS[variant])
    agent = getattr(module, "_agent", None)
    module = importlib.reload(module)
    if agent is not None:
        agent.shutdown(wait=True)  # the reloaded module has its own pool
    handler: Handler = module.handler
    return handler


@pytest.fixture
def baseline_handler(table: Table) -> Handler:
    return _reload_tutorial("baseline")


@pytest.fixture
def sequential_handler(table: Table) -> Handler:
    return _reload_tutorial("sequential")


@pytest.fixture(params=sorted(TUTORIAL_VARIANTS))
def tutorial_handler(request: pytest.FixtureRequest, table: Table) -> Handler:
    """Each of the tutorial's variants in turn: the flaws they share."""
    return _reload_tutorial(request.param)
