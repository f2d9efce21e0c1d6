"""Lambda proxy events as API Gateway WebSocket APIs send them (pure).

Shapes follow AWS's captured events key for key (aws-powertools
``tests/events/apiGatewayWebSocketApi{Connect,Message,Disconnect}.json``):
MESSAGE events carry no headers and have ``messageId``; CONNECT has headers,
multiValueHeaders, and ``queryStringParameters`` only when a query string was
sent; DISCONNECT carries ``disconnectStatusCode`` and ``disconnectReason``.
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def new_id(random_bytes: bytes | None = None) -> str:
    """An AWS-like id: 16 characters, URL-safe base64 of 11 bytes, ending in ``=``."""
    raw = random_bytes if random_bytes is not None else os.urandom(11)
    if len(raw) != 11:
        raise ValueError("ids are made of 11 random bytes")
    return base64.urlsafe_b64encode(raw).decode("ascii")


def is_valid_id(candidate: str) -> bool:
    return (
        len(candidate) == 16
        and candidate.endswith("=")
        and all(ch in ID_ALPHABET for ch in candidate[:15])
    )


def clf_time(epoch_ms: int) -> str:
    """``requestTime`` in Common Log Format, as AWS writes it: ``11/Nov/2024:11:35:24 +0000``."""
    return time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(epoch_ms / 1000))


@dataclass(frozen=True)
class ApiIdentity:
    """What every event of one stage shares."""

    api_id: str
    stage: str
    domain_name: str


@dataclass(frozen=True)
class ConnectionInfo:
    connection_id: str
    connected_at_ms: int
    source_ip: str
    user_agent: str


def _request_context(
    api: ApiIdentity,
    conn: ConnectionInfo,
    route_key: str,
    event_type: str,
    request_id: str,
    now_ms: int,
) -> dict[str, Any]:
    return {
        "routeKey": route_key,
        "eventType": event_type,
        "extendedRequestId": request_id,
        "requestTime": clf_time(now_ms),
        "messageDirection": "IN",
        "stage": api.stage,
        "connectedAt": conn.connected_at_ms,
        "requestTimeEpoch": now_ms,
        "identity": {"sourceIp": conn.source_ip},
        "requestId": request_id,
        "domainName": api.domain_name,
        "connectionId": conn.connection_id,
        "apiId": api.api_id,
    }


def connect_event(
    api: ApiIdentity,
    conn: ConnectionInfo,
    headers: Sequence[tuple[str, str]],
    query: Mapping[str, Sequence[str]],
    request_id: str,
    now_ms: int,
) -> dict[str, Any]:
    multi_headers: dict[str, list[str]] = {}
    for name, value in headers:
        multi_headers.setdefault(name, []).append(value)
    event: dict[str, Any] = {
        "headers": {name: values[-1] for name, values in multi_headers.items()},
        "multiValueHeaders": multi_headers,
    }
    if query:
        event["queryStringParameters"] = {name: values[-1] for name, values in query.items()}
        event["multiValueQueryStringParameters"] = {
            name: list(values) for name, values in query.items()
        }
    event["requestContext"] = _request_context(api, conn, "$connect", "CONNECT", request_id, now_ms)
    event["isBase64Encoded"] = False
    return event


def message_event(
    api: ApiIdentity,
    conn: ConnectionInfo,
    route_key: str,
    body: str,
    message_id: str,
    request_id: str,
    now_ms: int,
) -> dict[str, Any]:
    context = _request_context(api, conn, route_key, "MESSAGE", request_id, now_ms)
    # AWS puts messageId right after routeKey; key order is kept for readers of logs.
    context = {"routeKey": route_key, "messageId": message_id, **context}
    return {"requestContext": context, "body": body, "isBase64Encoded": False}


def disconnect_event(
    api: ApiIdentity,
    conn: ConnectionInfo,
    status_code: int,
    reason: str,
    request_id: str,
    now_ms: int,
) -> dict[str, Any]:
    headers = {"Host": api.domain_name, "x-api-key": "", "X-Forwarded-For": "", "x-restapi": ""}
    context = _request_context(api, conn, "$disconnect", "DISCONNECT", request_id, now_ms)
    context = {
        "routeKey": "$disconnect",
        "disconnectStatusCode": status_code,
        **{k: v for k, v in context.items() if k != "routeKey"},
    }
    context["disconnectReason"] = reason
    return {
        "headers": headers,
        "multiValueHeaders": {name: [value] for name, value in headers.items()},
        "requestContext": context,
        "isBase64Encoded": False,
    }


def disconnect_status(
    received: tuple[int, str] | None, sent: tuple[int, str] | None, received_first: bool | None
) -> tuple[int, str]:
    """``(disconnectStatusCode, disconnectReason)`` from the close frames exchanged.

    The side that closed first decides the code. 1005 means the client's close
    frame carried no status, which AWS words as in its captured event.
    """
    first = received if (received_first or sent is None) else sent
    if first is None:
        return 1006, "Connection closed abnormally"
    code, reason = first
    if code == 1005:
        return 1005, "Client-side close frame status not set"
    if first is received:
        return code, reason or f"Client-side close frame status set to {code}"
    return code, reason
