"""``$default``: tell the caller who it is and how to chat."""

from __future__ import annotations

import json

import pytest

import default
from tests.handlers.support import (
    GONE,
    GONE_UNTYPED,
    SERVER_ERROR,
    ConnectionsStub,
    LambdaContext,
    Reply,
    message_event,
    new_connection_id,
)


def test_replies_to_the_caller_with_the_hint_and_its_connection_info(
    aws_env: None, stub: ConnectionsStub
) -> None:
    caller, bystander = new_connection_id(), new_connection_id()

    response = default.handler(
        message_event(caller, '{"action":"nope"}', route_key="$default"), LambdaContext()
    )

    assert response["statusCode"] == 200
    assert [(r.method, r.connection_id) for r in stub.requests()] == [
        ("GET", caller),
        ("POST", caller),
    ]
    assert stub.posts_to(bystander) == []
    text = stub.posts()[0].body.decode()
    assert text.startswith(default.HINT)
    info = json.loads(text.removeprefix(default.HINT))
    assert info["connectionID"] == caller
    assert info["ConnectedAt"].startswith("2023-11-14T22:13:20")
    assert info["Identity"] == {"SourceIp": "192.0.2.10", "UserAgent": "pytest"}


@pytest.mark.parametrize("gone", [GONE, GONE_UNTYPED], ids=["typed-410", "bare-410"])
def test_caller_already_gone_is_still_200(
    aws_env: None, stub: ConnectionsStub, gone: Reply
) -> None:
    caller = new_connection_id()
    stub.script(caller, gone)

    response = default.handler(message_event(caller, "hi", route_key="$default"), LambdaContext())

    assert response["statusCode"] == 200
    assert len(stub.posts_to(caller)) == 1


def test_get_connection_failure_still_replies(aws_env: None, stub: ConnectionsStub) -> None:
    caller = new_connection_id()
    stub.script(caller, SERVER_ERROR, Reply(200))

    response = default.handler(message_event(caller, "hi", route_key="$default"), LambdaContext())

    assert response["statusCode"] == 200
    info = json.loads(stub.posts_to(caller)[0].body.decode().removeprefix(default.HINT))
    assert info == {"connectionID": caller}


def test_reply_failure_other_than_gone_is_500(aws_env: None, stub: ConnectionsStub) -> None:
    caller = new_connection_id()
    stub.script(caller, SERVER_ERROR)
    response = default.handler(message_event(caller, "hi", route_key="$default"), LambdaContext())
    assert response["statusCode"] == 500
