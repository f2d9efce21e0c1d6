"""The stage's Lambda events against events captured from AWS (``tests/stage/data/``).

Compared: key sets, key order where AWS fixes it, and value shapes (ids, times,
trace headers), first from the pure event builders, then from a real stage's
event log for CONNECT, MESSAGE and DISCONNECT.
"""

from __future__ import annotations

import json
import re
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

from loadtest.stage.config import StageConfig
from loadtest.stage.events import (
    ApiIdentity,
    ConnectionInfo,
    ForwardedFor,
    connect_event,
    connect_headers,
    connect_request_time,
    disconnect_event,
    message_event,
    new_id,
    trace_id,
)
from loadtest.stage.launcher import LocalStage
from tests.stage.support import management, own_id, stage_in, wait_for

DATA = Path(__file__).parent / "data"
BROWSER = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/118.0.0.0 Safari/537.36"
)

API = ApiIdentity(api_id="asasasas", stage="prod", domain_name="127.0.0.1:9999")
NO_AGENT = ConnectionInfo("BFaT_fALIAMCKug=", 1731332735513, "166.90.225.1", "")
WITH_AGENT = ConnectionInfo("R1kmxc2VNjMCFIA=", 1705751697419, "49.105.91.154", BROWSER)
NOW_MS = 1731332746514
FORWARDED = ForwardedFor("166.90.225.1", 443, "https", "Root=1-6731ebfc-08e1e656421db73c5d2eef31")
HANDSHAKE = [
    ("Host", "fjnq7njcv2.execute-api.us-east-1.amazonaws.com"),
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Key", "+W5xw47OHh3OTFsWKjGu9Q=="),
    ("Sec-WebSocket-Version", "13"),
    ("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits"),
]
"""The handshake a client without a User-Agent sends (the captured CONNECT's client)."""

SHAPES = [
    ("id", re.compile(r"^[A-Za-z0-9_-]{15}=$")),
    ("clf-time", re.compile(r"^\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d \+0000$")),
    ("trace", re.compile(r"^Root=1-[0-9a-f]{8}-[0-9a-f]{24}$")),
    ("ipv4", re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")),
    ("port", re.compile(r"^\d{1,5}$")),
    ("scheme", re.compile(r"^https?$")),
]


def captured(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((DATA / name).read_text(encoding="utf-8"))
    return event


def shape(value: Any) -> Any:
    """The value's structure with leaves replaced by kinds (``int``, ``id``, ``clf-time``...)."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(item) for item in value]
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "epoch-ms" if value > 10**12 else "int"
    if isinstance(value, str):
        for kind, pattern in SHAPES:
            if pattern.match(value):
                return kind
        return "str"
    return type(value).__name__


def assert_same_keys_in_order(ours: dict[str, Any], theirs: dict[str, Any], where: str) -> None:
    assert list(ours) == list(theirs), f"{where}: {list(ours)} != AWS's {list(theirs)}"


def context_shape(event: dict[str, Any]) -> dict[str, Any]:
    """The request context's shape, less values that only differ by what was sent."""
    context: dict[str, Any] = shape(event["requestContext"])
    context.pop("routeKey")  # a route name, any string
    context.pop("domainName")  # AWS: a host name; locally 127.0.0.1:port
    context.pop("apiId")  # AWS: 10 characters; captured samples anonymise it
    return context


# -- the pure builders against the samples ---------------------------------------------


def test_connect_event_has_the_captured_keys_order_and_shapes() -> None:
    sample = captured("powertools-apiGatewayWebSocketApiConnect.json")
    ours = connect_event(API, NO_AGENT, HANDSHAKE, {}, FORWARDED, "BFHPhFe3IAMF95g=", NOW_MS)
    assert_same_keys_in_order(ours, sample, "event")
    assert_same_keys_in_order(ours["headers"], sample["headers"], "headers")
    assert_same_keys_in_order(ours["multiValueHeaders"], sample["multiValueHeaders"], "multi")
    assert_same_keys_in_order(ours["requestContext"], sample["requestContext"], "requestContext")
    assert shape(ours["headers"]) == shape(sample["headers"])
    assert context_shape(ours) == context_shape(sample)
    assert ours["headers"]["X-Forwarded-For"] == NO_AGENT.source_ip


def test_connect_headers_drop_hop_by_hop_and_add_api_gateways_own() -> None:
    headers = connect_headers(
        [*HANDSHAKE, ("User-Agent", "ua"), ("x-forwarded-for", "10.0.0.1"), ("CONNECTION", "x")],
        ForwardedFor("127.0.0.1", 8080, "http", "Root=1-00000000-000000000000000000000000"),
    )
    names = [name for name, _ in headers]
    assert names == sorted(names, key=str.lower)
    assert not {"connection", "upgrade"} & {name.lower() for name in names}
    assert dict(headers)["X-Forwarded-For"] == "10.0.0.1, 127.0.0.1"
    assert dict(headers)["X-Forwarded-Port"] == "8080"
    assert dict(headers)["X-Forwarded-Proto"] == "http"
    assert dict(headers)["User-Agent"] == "ua"


def test_connect_request_time_is_after_connected_at() -> None:
    assert connect_request_time(1000, 1000) == 1001
    assert connect_request_time(1000, 1008) == 1008
    event = connect_event(API, NO_AGENT, HANDSHAKE, {}, FORWARDED, "r", NO_AGENT.connected_at_ms)
    assert event["requestContext"]["requestTimeEpoch"] > NO_AGENT.connected_at_ms


def test_trace_id_has_the_x_ray_shape() -> None:
    assert trace_id(0x6731EBFC, bytes(range(12))) == "Root=1-6731ebfc-000102030405060708090a0b"
    with pytest.raises(ValueError, match="12 random bytes"):
        trace_id(0, bytes(11))


@pytest.mark.parametrize(
    ("sample_name", "conn"),
    [
        ("powertools-apiGatewayWebSocketApiMessage.json", NO_AGENT),
        ("aws-lambda-go-apigw-websocket-request-send-message.json", WITH_AGENT),
    ],
)
def test_message_event_has_the_captured_keys_order_and_shapes(
    sample_name: str, conn: ConnectionInfo
) -> None:
    sample = captured(sample_name)
    context = sample["requestContext"]
    ours = message_event(
        API, conn, "chat", sample["body"], context["messageId"], context["requestId"], NOW_MS
    )
    assert_same_keys_in_order(ours, sample, "event")
    assert_same_keys_in_order(ours["requestContext"], context, "requestContext")
    assert ours["requestContext"]["identity"] == context["identity"]
    assert context_shape(ours) == context_shape(sample)


@pytest.mark.parametrize(
    ("sample_name", "conn"),
    [
        ("powertools-apiGatewayWebSocketApiDisconnect.json", NO_AGENT),
        ("aws-lambda-go-apigw-websocket-request-disconnect.json", WITH_AGENT),
    ],
)
def test_disconnect_event_has_the_captured_keys_order_and_shapes(
    sample_name: str, conn: ConnectionInfo
) -> None:
    sample = captured(sample_name)
    context = sample["requestContext"]
    ours = disconnect_event(
        API,
        conn,
        context["disconnectStatusCode"],
        context["disconnectReason"],
        context["requestId"],
        NOW_MS,
    )
    assert_same_keys_in_order(ours, sample, "event")
    assert_same_keys_in_order(ours["headers"], sample["headers"], "headers")
    assert_same_keys_in_order(ours["requestContext"], context, "requestContext")
    assert ours["requestContext"]["identity"] == context["identity"]
    assert context_shape(ours) == context_shape(sample)


# -- a real stage's events -------------------------------------------------------------


@pytest.fixture(scope="module")
def event_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("events") / "events.jsonl"


@pytest.fixture(scope="module")
def logging_stage(
    event_log: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalStage]:
    yield from stage_in(StageConfig(event_log=event_log), tmp_path_factory, "event-log")


def logged(event_log: Path, connection_id: str, event_type: str) -> list[dict[str, Any]]:
    if not event_log.exists():
        return []
    events = [json.loads(line) for line in event_log.read_text(encoding="utf-8").splitlines()]
    return [
        event
        for event in events
        if event["requestContext"]["connectionId"] == connection_id
        and event["requestContext"]["eventType"] == event_type
    ]


def client(url: str, user_agent: str | None) -> ClientConnection:
    """A client like the captured ones: deflate offered, a User-Agent or none."""
    return connect(
        url, proxy=None, open_timeout=10, close_timeout=2, ping_interval=None,
        compression="deflate", user_agent_header=user_agent,
    )  # fmt: skip


def stage_events(
    stage: LocalStage, event_log: Path, user_agent: str | None, close_code: int | None
) -> dict[str, dict[str, Any]]:
    """One connection's CONNECT, MESSAGE ($default) and DISCONNECT events from the stage."""
    with client(stage.ws_url, user_agent) as ws:
        connection_id = own_id(ws)
        # None: a close frame without a status (websockets sends an empty one), i.e. 1005.
        ws.close(close_code)  # type: ignore[arg-type]
    wait_for(lambda: logged(event_log, connection_id, "DISCONNECT"), 10, "the $disconnect event")
    return {
        kind: logged(event_log, connection_id, kind)[0]
        for kind in ("CONNECT", "MESSAGE", "DISCONNECT")
    }


def test_stage_events_without_a_user_agent_match_the_powertools_samples(
    logging_stage: LocalStage, event_log: Path
) -> None:
    events = stage_events(logging_stage, event_log, None, None)
    for kind, name in [
        ("CONNECT", "powertools-apiGatewayWebSocketApiConnect.json"),
        ("MESSAGE", "powertools-apiGatewayWebSocketApiMessage.json"),
        ("DISCONNECT", "powertools-apiGatewayWebSocketApiDisconnect.json"),
    ]:
        ours, sample = events[kind], captured(name)
        assert_same_keys_in_order(ours, sample, kind)
        assert_same_keys_in_order(ours["requestContext"], sample["requestContext"], kind)
        assert context_shape(ours) == context_shape(sample), kind
        if "headers" in sample:
            assert_same_keys_in_order(ours["headers"], sample["headers"], f"{kind} headers")
            assert shape(ours["headers"]) == shape(sample["headers"]), kind
    connect_context = events["CONNECT"]["requestContext"]
    assert 0 < connect_context["requestTimeEpoch"] - connect_context["connectedAt"] < 5_000
    headers = events["CONNECT"]["headers"]
    assert headers["X-Forwarded-For"] == connect_context["identity"]["sourceIp"]
    assert headers["X-Forwarded-Proto"] == "http"
    assert headers["X-Forwarded-Port"] == logging_stage.ws_url.rsplit(":", 1)[1].split("/")[0]
    assert events["DISCONNECT"]["requestContext"]["disconnectStatusCode"] == 1005
    assert events["DISCONNECT"]["requestContext"]["disconnectReason"] == (
        "Client-side close frame status not set"
    )


def test_stage_events_with_a_user_agent_match_the_aws_lambda_go_samples(
    logging_stage: LocalStage, event_log: Path
) -> None:
    events = stage_events(logging_stage, event_log, BROWSER, 1001)
    for kind, name in [
        ("MESSAGE", "aws-lambda-go-apigw-websocket-request-send-message.json"),
        ("DISCONNECT", "aws-lambda-go-apigw-websocket-request-disconnect.json"),
    ]:
        ours, sample = events[kind], captured(name)
        assert_same_keys_in_order(ours, sample, kind)
        assert_same_keys_in_order(ours["requestContext"], sample["requestContext"], kind)
        assert context_shape(ours) == context_shape(sample), kind
    for kind in ("CONNECT", "MESSAGE", "DISCONNECT"):
        assert events[kind]["requestContext"]["identity"]["userAgent"] == BROWSER, kind
    assert events["CONNECT"]["headers"]["User-Agent"] == BROWSER
    disconnect = events["DISCONNECT"]["requestContext"]
    assert (disconnect["disconnectStatusCode"], disconnect["disconnectReason"]) == (1001, "")


def test_connections_api_responses_carry_a_request_id(logging_stage: LocalStage) -> None:
    uuid_shape = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
    api = management(logging_stage)
    with client(logging_stage.ws_url, BROWSER) as ws:
        connection_id = own_id(ws)
        sent = api.post_to_connection(ConnectionId=connection_id, Data=b"hi")
        described = api.get_connection(ConnectionId=connection_id)
    assert uuid_shape.match(sent["ResponseMetadata"]["RequestId"])
    assert uuid_shape.match(described["ResponseMetadata"]["RequestId"])
    assert sent["ResponseMetadata"]["RequestId"] != described["ResponseMetadata"]["RequestId"]
    assert described["Identity"]["UserAgent"] == BROWSER
    with pytest.raises(api.exceptions.GoneException) as gone:
        api.post_to_connection(ConnectionId=new_id(), Data=b"nobody")
    assert uuid_shape.match(gone.value.response["ResponseMetadata"]["RequestId"])


def test_over_the_tls_port_connect_hears_https_on_that_port(
    logging_stage: LocalStage, event_log: Path
) -> None:
    endpoints = logging_stage.endpoints
    assert endpoints.ca_file is not None
    context = ssl.create_default_context(cafile=str(endpoints.ca_file))
    with connect(endpoints.wss_url, ssl=context, proxy=None, open_timeout=10) as ws:
        connection_id = own_id(ws)
    wait_for(lambda: logged(event_log, connection_id, "CONNECT"), 10, "the $connect event")
    (event,) = logged(event_log, connection_id, "CONNECT")
    assert event["headers"]["X-Forwarded-Proto"] == "https"
    assert event["headers"]["X-Forwarded-Port"] == endpoints.wss_url.split(":")[2].split("/")[0]
    assert event["requestContext"]["domainName"] == endpoints.wss_url.split("/")[2]
