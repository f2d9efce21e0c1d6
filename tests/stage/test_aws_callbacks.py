"""Callback URLs as on AWS: the tutorial's Node.js chat, unmodified, and the shared TLS port.

Handlers written for AWS post to ``https://{requestContext.domainName}/{stage}``.
The stage serves wss:// and https:// @connections on that one port, with a
certificate from its own CA, which its functions trust; clients keep ws://.
"""

from __future__ import annotations

import json
import shutil
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import SSLError
from websockets.sync.client import ClientConnection, connect

from fanbench_common.resources import tutorial_app
from loadtest.stage.config import StageConfig
from loadtest.stage.launcher import LocalStage
from tests.stage.support import (
    FAKE_KEY,
    REGION,
    nothing_arrives,
    open_ws,
    own_id,
    recv_text,
    stage_in,
    table_ids,
    wait_for,
)

if TYPE_CHECKING:
    from mypy_boto3_apigatewaymanagementapi import ApiGatewayManagementApiClient

NODE_CHAT = Path(__file__).resolve().parent / "apps" / "node_chat" / "inline-template.yaml"


@pytest.fixture(scope="module", params=["tutorial", "inline"])
def chat_stage(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalStage]:
    """The chat with its code in files (ES modules), and inline in the template (CommonJS)."""
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    template = tutorial_app().template if request.param == "tutorial" else NODE_CHAT
    config = StageConfig(template=template, table_name="tutorial-connections", provisioned=0)
    yield from stage_in(config, tmp_path_factory, "node-chat")


def _wss(stage: LocalStage) -> ClientConnection:
    assert stage.endpoints.ca_file is not None
    context = ssl.create_default_context(cafile=str(stage.endpoints.ca_file))
    return connect(
        stage.endpoints.wss_url, ssl=context, proxy=None, open_timeout=10, close_timeout=2,
        ping_interval=None, compression=None,
    )  # fmt: skip


def test_the_tutorials_node_chat_reaches_every_other_client(chat_stage: LocalStage) -> None:
    endpoints = chat_stage.endpoints
    host_port = endpoints.wss_url.removeprefix("wss://").split("/")[0]
    assert endpoints.https_callback_url == f"https://{host_port}/local"
    with (
        open_ws(chat_stage.ws_url) as sender,
        open_ws(chat_stage.ws_url) as plain,
        _wss(chat_stage) as secure,
    ):
        wait_for(lambda: len(table_ids(chat_stage)) == 3, 15, "three $connect puts")
        sender.send(json.dumps({"action": "sendmessage", "message": "hello, chat"}))
        assert recv_text(plain, 10) == "hello, chat"
        assert secure.recv(timeout=10) == "hello, chat"
        assert nothing_arrives(sender, 0.5)  # the tutorial skips the sender
    wait_for(lambda: not table_ids(chat_stage), 15, "three $disconnect deletes")
    stats = chat_stage.stats()["lambda"]
    assert stats["errors"] == {}
    assert stats["invocations"]["SendMessageHandler"] == 1


def _callbacks(stage: LocalStage, verify: str | bool) -> ApiGatewayManagementApiClient:
    return boto3.client(
        "apigatewaymanagementapi", endpoint_url=stage.endpoints.https_callback_url,
        region_name=REGION, aws_access_key_id=FAKE_KEY, aws_secret_access_key=FAKE_KEY,
        verify=verify, config=Config(retries={"max_attempts": 1}),
    )  # fmt: skip


def test_https_connections_share_the_websocket_port_and_need_the_ca(
    default_stage: LocalStage,
) -> None:
    """fanbench's own stage serves the same TLS port; a client must trust the stage's CA."""
    assert default_stage.endpoints.ca_file is not None
    trusted = _callbacks(default_stage, str(default_stage.endpoints.ca_file))
    with open_ws(default_stage.ws_url) as ws:
        connection_id = own_id(ws)
        trusted.post_to_connection(ConnectionId=connection_id, Data=b"over https")
        assert recv_text(ws) == "over https"
    untrusted = _callbacks(default_stage, True)
    with pytest.raises(SSLError):
        untrusted.get_connection(ConnectionId="AAAAAAAAAAAAAAA=")
