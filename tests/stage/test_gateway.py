"""The gateway over real sockets: handshake, routing, error frames, size limits, timeouts."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection

from fanbench_common.limits import MAX_FRAME_BYTES, MAX_MESSAGE_BYTES
from loadtest.stage.config import StageConfig
from loadtest.stage.events import is_valid_id
from loadtest.stage.faults import Faults
from loadtest.stage.launcher import LocalStage
from tests.stage.support import (
    DEFAULT_HINT,
    dynamodb,
    expect_close,
    gateway_stat,
    lambda_stat,
    management,
    nothing_arrives,
    open_ws,
    own_id,
    recv_json,
    recv_text,
    stage_in,
    table_ids,
    wait_for,
)

AUTH_TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def auth_stage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStage]:
    yield from stage_in(StageConfig(auth_token=AUTH_TOKEN), tmp_path_factory, "auth")


@pytest.fixture(scope="module")
def crashing_connect_stage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStage]:
    config = StageConfig(faults=Faults(lambda_error_rate=1.0))
    yield from stage_in(config, tmp_path_factory, "crash")


@pytest.fixture(scope="module")
def bare_stage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStage]:
    """No ``$connect`` and no ``$default`` route; every invocation fails."""
    config = StageConfig(
        disabled_routes=("$connect", "$default"), faults=Faults(lambda_error_rate=1.0)
    )
    yield from stage_in(config, tmp_path_factory, "bare")


@pytest.fixture(scope="module")
def slow_stage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStage]:
    """Every @connections POST takes 2.5 s; the gateway waits only 1.5 s for an integration.

    The function timeout is raised to 10 s so that ``$default`` (3 s in the template)
    outlives the gateway's wait and finishes its slow reply.
    """
    config = StageConfig(
        integration_timeout_s=1.5, function_timeout_s=10, faults=Faults(post_latency_ms=2500)
    )
    yield from stage_in(config, tmp_path_factory, "slow")


@pytest.fixture(scope="module")
def short_lived_stage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStage]:
    config = StageConfig(idle_timeout_s=0.5, max_connection_s=1.5)
    yield from stage_in(config, tmp_path_factory, "short")


@pytest.fixture(scope="module")
def lossy_disconnect_stage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStage]:
    config = StageConfig(faults=Faults(lost_disconnect_rate=1.0))
    yield from stage_in(config, tmp_path_factory, "lossy")


def _chat(message: str) -> str:
    return json.dumps({"action": "sendmessage", "message": message})


# -- $connect / $disconnect ---------------------------------------------------------


def test_connect_stores_the_id_and_disconnect_removes_it(default_stage: LocalStage) -> None:
    with open_ws(default_stage.ws_url) as ws:
        connection_id = own_id(ws)
        assert is_valid_id(connection_id)
        assert connection_id in table_ids(default_stage)
    wait_for(
        lambda: connection_id not in table_ids(default_stage), 5, "$disconnect to delete the item"
    )


def test_connect_event_carries_the_query_string(default_stage: LocalStage) -> None:
    """The $connect handler reads ``queryStringParameters.room``; without a query there is none."""
    with (
        open_ws(default_stage.ws_url + "?room=lobby") as in_room,
        open_ws(default_stage.ws_url) as global_,
    ):
        room_id, global_id = own_id(in_room), own_id(global_)
        items = dynamodb(default_stage).batch_get_item(
            RequestItems={
                default_stage.endpoints.table_name: {
                    "Keys": [{"connectionId": {"S": room_id}}, {"connectionId": {"S": global_id}}]
                }
            }
        )["Responses"][default_stage.endpoints.table_name]
        rooms = {item["connectionId"]["S"]: item.get("room", {}).get("S") for item in items}
        assert rooms == {room_id: "lobby", global_id: None}


def test_wrong_stage_path_is_refused_with_403(default_stage: LocalStage) -> None:
    wrong = default_stage.ws_url.rsplit("/", 1)[0] + "/prod"
    with pytest.raises(InvalidStatus) as refused:
        open_ws(wrong)
    assert refused.value.response.status_code == 403


def test_connect_handler_status_refuses_the_handshake(auth_stage: LocalStage) -> None:
    before = table_ids(auth_stage)
    with pytest.raises(InvalidStatus) as missing:
        open_ws(auth_stage.ws_url)
    assert missing.value.response.status_code == 401
    with pytest.raises(InvalidStatus) as wrong:
        open_ws(auth_stage.ws_url + "?token=not-it")
    assert wrong.value.response.status_code == 403
    assert table_ids(auth_stage) == before
    with open_ws(f"{auth_stage.ws_url}?token={AUTH_TOKEN}") as ws:
        assert own_id(ws) in table_ids(auth_stage)


def test_connect_crash_refuses_the_handshake_with_502(crashing_connect_stage: LocalStage) -> None:
    with pytest.raises(InvalidStatus) as refused:
        open_ws(crashing_connect_stage.ws_url)
    assert refused.value.response.status_code == 502
    stats = crashing_connect_stage.stats()
    assert stats["lambda"]["injected_errors"] >= 1
    assert stats["open_connections"] == 0
    assert table_ids(crashing_connect_stage) == set()


def test_no_connect_route_accepts_every_handshake(bare_stage: LocalStage) -> None:
    with open_ws(bare_stage.ws_url) as ws:
        ws.send("anything")
        recv_json(ws)
        assert bare_stage.stats()["open_connections"] == 1
    assert lambda_stat(bare_stage, "invocations", "ConnectFunction") == 0


# -- route selection and error frames ----------------------------------------------


def test_sendmessage_fans_out_to_the_others_and_not_the_sender(default_stage: LocalStage) -> None:
    url = default_stage.ws_url
    with open_ws(url) as sender, open_ws(url) as first, open_ws(url) as second:
        sender.send(_chat("hello, everyone"))
        assert recv_text(first) == "hello, everyone"
        assert recv_text(second) == "hello, everyone"
        assert nothing_arrives(sender, 0.5)


@pytest.mark.parametrize(
    "body",
    [
        "plain text, not JSON",
        '{"action": "SendMessage", "message": "wrong case"}',
        '{"action": "shout", "message": "no such route"}',
        '["sendmessage"]',
        '{"action": 7}',
    ],
)
def test_unmatched_messages_go_to_default(default_stage: LocalStage, body: str) -> None:
    with open_ws(default_stage.ws_url) as ws, open_ws(default_stage.ws_url) as other:
        ws.send(body)
        reply = recv_text(ws)
        assert reply.startswith(DEFAULT_HINT)
        assert nothing_arrives(other, 0.3)


def test_without_default_route_an_unmatched_message_gets_forbidden(bare_stage: LocalStage) -> None:
    with open_ws(bare_stage.ws_url) as ws:
        ws.send("not json")
        frame = recv_json(ws)
        assert set(frame) == {"message", "connectionId", "requestId"}
        assert frame["message"] == "Forbidden"
        assert is_valid_id(frame["connectionId"])
        assert is_valid_id(frame["requestId"])
    assert gateway_stat(bare_stage, "forbidden") >= 1


def test_lambda_error_gives_an_internal_server_error_frame(bare_stage: LocalStage) -> None:
    with open_ws(bare_stage.ws_url) as ws:
        ws.send(_chat("hi"))
        frame = recv_json(ws)
        assert frame["message"] == "Internal server error"
        assert set(frame) == {"message", "connectionId", "requestId"}
        assert is_valid_id(frame["connectionId"])
    assert lambda_stat(bare_stage, "invocations", "SendMessageFunction") >= 1


def test_integration_timeout_gives_endpoint_request_timed_out(slow_stage: LocalStage) -> None:
    with open_ws(slow_stage.ws_url) as ws:
        started = time.monotonic()
        ws.send("not json")  # $default posts its reply, which takes 2.5 s
        frame = recv_json(ws)
        waited = time.monotonic() - started
        assert frame["message"] == "Endpoint request timed out"
        assert set(frame) == {"message", "connectionId", "requestId"}
        assert 1.45 <= waited < 2.4
        # The Lambda keeps running after API Gateway gave up: its reply still arrives.
        assert recv_text(ws).startswith(DEFAULT_HINT)
    assert gateway_stat(slow_stage, "integration_timeouts") >= 1
    lambda_section = slow_stage.stats()["lambda"]
    assert lambda_section["integration_timeouts"] == gateway_stat(
        slow_stage, "integration_timeouts"
    )


# -- frames and sizes -------------------------------------------------------------------


def test_binary_frame_closes_with_1003(default_stage: LocalStage) -> None:
    with open_ws(default_stage.ws_url) as ws:
        ws.send(b"\x00\x01binary")
        closed = expect_close(ws)
    assert closed.rcvd is not None
    assert closed.rcvd.code == 1003


def test_frame_over_32_kb_closes_with_1009(default_stage: LocalStage) -> None:
    with open_ws(default_stage.ws_url) as ws:
        ws.send("x" * (40 * 1024))
        closed = expect_close(ws)
    assert MAX_FRAME_BYTES < 40 * 1024
    assert closed.rcvd is not None
    assert closed.rcvd.code == 1009


def test_frame_of_exactly_32_kb_is_accepted(default_stage: LocalStage) -> None:
    with open_ws(default_stage.ws_url) as ws:
        ws.send("y" * MAX_FRAME_BYTES)
        assert recv_text(ws).startswith(DEFAULT_HINT)


def test_100_kb_message_in_four_fragments_is_delivered(default_stage: LocalStage) -> None:
    url = default_stage.ws_url
    envelope = _chat("")
    message = "m" * (100_000 - len(envelope))
    body = _chat(message)
    assert len(body) == 100_000
    fragments = [body[i : i + 25_000] for i in range(0, 100_000, 25_000)]
    assert [len(f) for f in fragments] == [25_000] * 4
    with open_ws(url) as sender, open_ws(url) as receiver:
        sender.send(iter(fragments))
        assert recv_text(receiver) == message


def test_message_over_128_kb_in_fragments_closes_with_1009(default_stage: LocalStage) -> None:
    fragments = ["z" * 25_000] * 6
    assert sum(map(len, fragments)) > MAX_MESSAGE_BYTES
    with open_ws(default_stage.ws_url) as ws:
        try:
            ws.send(iter(fragments))
        except ConnectionClosed as closed_while_sending:
            # On a busy host the server's close can complete before the last fragment is sent.
            closed = closed_while_sending
        else:
            closed = expect_close(ws)
    assert closed.rcvd is not None
    assert closed.rcvd.code == 1009


# -- closes and $disconnect ---------------------------------------------------------


def test_client_close_code_reaches_disconnect(default_stage: LocalStage) -> None:
    before = gateway_stat(default_stage, "closed_4000")
    with open_ws(default_stage.ws_url) as ws:
        connection_id = own_id(ws)
        ws.close(4000, "bye")
    wait_for(lambda: gateway_stat(default_stage, "closed_4000") == before + 1, 5, "closed_4000")
    wait_for(lambda: connection_id not in table_ids(default_stage), 5, "$disconnect")


def test_idle_connection_is_closed_with_1001_and_disconnected(
    short_lived_stage: LocalStage,
) -> None:
    stage = short_lived_stage
    before = table_ids(stage)
    started = time.monotonic()  # the gateway's idle clock starts after this
    with open_ws(stage.ws_url) as ws:
        (connection_id,) = table_ids(stage) - before
        closed = expect_close(ws, timeout_s=3)
        idle_for = time.monotonic() - started
    assert closed.rcvd is not None
    assert closed.rcvd.code == 1001
    assert 0.5 <= idle_for < 2.0
    assert gateway_stat(stage, "idle_closed") >= 1
    wait_for(lambda: connection_id not in table_ids(stage), 5, "$disconnect")


def _keep_busy(ws: ClientConnection, every_s: float, sends: int) -> ConnectionClosed | None:
    """Send a message every ``every_s`` (reading whatever comes back) until the server closes."""
    try:
        for _ in range(sends):
            ws.send("keep-alive")
            until = time.monotonic() + every_s
            for _ in range(100):
                remaining = until - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    ws.recv(timeout=remaining)
                except TimeoutError:
                    break
    except ConnectionClosed as closed:
        return closed
    return None


def test_busy_connection_is_closed_at_the_maximum_duration(short_lived_stage: LocalStage) -> None:
    """Sending every 0.15 s beats the 0.5 s idle timeout, but not the 1.5 s maximum."""
    started = time.monotonic()  # the gateway's duration clock starts after this
    with open_ws(short_lived_stage.ws_url) as ws:
        closed = _keep_busy(ws, every_s=0.15, sends=40)  # at most 6 s
        lived = time.monotonic() - started
    assert closed is not None, "the connection outlived its maximum duration"
    assert closed.rcvd is not None
    assert closed.rcvd.code == 1001
    assert 1.5 <= lived < 2.6
    assert gateway_stat(short_lived_stage, "max_duration_closed") >= 1


def test_lost_disconnect_leaves_a_stale_id_that_answers_gone(
    lossy_disconnect_stage: LocalStage,
) -> None:
    stage = lossy_disconnect_stage
    with open_ws(stage.ws_url) as ws:
        connection_id = own_id(ws)
    wait_for(lambda: gateway_stat(stage, "disconnects_lost") >= 1, 5, "the close to be seen")
    time.sleep(0.3)
    assert connection_id in table_ids(stage), "the stale id should stay in the table"
    assert lambda_stat(stage, "invocations", "DisconnectFunction") == 0
    client = management(stage)
    with pytest.raises(client.exceptions.GoneException):
        client.post_to_connection(ConnectionId=connection_id, Data=b"anyone there?")


# -- the DynamoDB emulators ---------------------------------------------------------


@pytest.fixture(scope="module")
def moto_stage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStage]:
    yield from stage_in(StageConfig(dynamodb_emulator="moto"), tmp_path_factory, "moto")


def test_moto_remains_available_as_the_emulator(moto_stage: LocalStage) -> None:
    with open_ws(moto_stage.ws_url) as sender, open_ws(moto_stage.ws_url) as receiver:
        connection_id = own_id(receiver)
        assert connection_id in table_ids(moto_stage)
        sender.send(_chat("through moto"))
        assert recv_text(receiver) == "through moto"
    wait_for(lambda: connection_id not in table_ids(moto_stage), 5, "$disconnect on moto")
    log = (moto_stage.endpoints.log_dir / "dynamodb.log").read_text(errors="replace")
    assert "dynalite" not in log.lower()


def test_the_default_emulator_refuses_a_26_item_batch_as_dynamodb(
    default_stage: LocalStage,
) -> None:
    table = default_stage.endpoints.table_name
    requests: list[Any] = [
        {"DeleteRequest": {"Key": {"connectionId": {"S": f"x{n:015d}"}}}} for n in range(26)
    ]
    with pytest.raises(ClientError) as refused:
        dynamodb(default_stage).batch_write_item(RequestItems={table: requests})
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    log = (default_stage.endpoints.log_dir / "dynamodb.log").read_text(errors="replace")
    assert "Dynalite listening" in log
