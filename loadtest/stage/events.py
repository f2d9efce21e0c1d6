"""Lambda proxy events as API Gateway WebSocket APIs send them (pure).

Shapes follow AWS's captured events key for key and in AWS's key order (the
samples, with their sources, are in ``tests/stage/data/``): MESSAGE events carry
no headers and have ``messageId``; CONNECT has the client's headers less the
hop-by-hop ones, plus the ones API Gateway adds, sorted by name, and
``queryStringParameters`` only when a query string was sent; DISCONNECT carries
``disconnectStatusCode`` and ``disconnectReason``. ``identity.userAgent`` is
there only when the client sent a User-Agent.
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

HOP_BY_HOP_HEADERS = frozenset({"connection", "upgrade"})
"""Handshake headers API Gateway consumes and does not pass to ``$connect``."""
MIN_CONNECT_LAG_MS = 1
"""``requestTimeEpoch`` of ``$connect`` is never ``connectedAt``: on AWS the integration
request starts a few milliseconds after the connection is accepted (8 in the captured
sample); locally the lag is measured, but never less than this."""

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


def trace_id(epoch_s: int, random_bytes: bytes | None = None) -> str:
    """An X-Ray trace header as API Gateway adds it: ``Root=1-{epoch hex}-{24 hex digits}``."""
    raw = random_bytes if random_bytes is not None else os.urandom(12)
    if len(raw) != 12:
        raise ValueError("a trace id is made of 12 random bytes")
    return f"Root=1-{epoch_s:08x}-{raw.hex()}"


def connect_request_time(connected_at_ms: int, now_ms: int) -> int:
    """``requestTimeEpoch`` of the ``$connect`` event (see ``MIN_CONNECT_LAG_MS``)."""
    return max(now_ms, connected_at_ms + MIN_CONNECT_LAG_MS)


@dataclass(frozen=True)
class ForwardedFor:
    """What API Gateway knows of the client's hop, added to the ``$connect`` headers."""

    client_ip: str
    port: int
    proto: str
    trace: str


def connect_headers(
    received: Sequence[tuple[str, str]], forwarded: ForwardedFor
) -> list[tuple[str, str]]:
    """The handshake's headers as ``$connect`` sees them, sorted by name as AWS sends them.

    Hop-by-hop headers go; ``X-Amzn-Trace-Id`` and ``X-Forwarded-Port/Proto`` are
    API Gateway's own; the client's IP is appended to any ``X-Forwarded-For`` it sent.
    """
    own = {"x-amzn-trace-id", "x-forwarded-port", "x-forwarded-proto"}
    kept: list[tuple[str, str]] = []
    forwarded_for: list[str] = []
    for name, value in received:
        lowered = name.lower()
        if lowered in HOP_BY_HOP_HEADERS or lowered in own:
            continue
        if lowered == "x-forwarded-for":
            forwarded_for.append(value)
            continue
        kept.append((name, value))
    kept += [
        ("X-Amzn-Trace-Id", forwarded.trace),
        ("X-Forwarded-For", ", ".join([*forwarded_for, forwarded.client_ip])),
        ("X-Forwarded-Port", str(forwarded.port)),
        ("X-Forwarded-Proto", forwarded.proto),
    ]
    return sorted(kept, key=lambda pair: pair[0].lower())


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


def _identity(conn: ConnectionInfo) -> dict[str, str]:
    if conn.user_agent:
        return {"userAgent": conn.user_agent, "sourceIp": conn.source_ip}
    return {"sourceIp": conn.source_ip}


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
        "identity": _identity(conn),
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
    forwarded: ForwardedFor,
    request_id: str,
    now_ms: int,
) -> dict[str, Any]:
    """``headers`` as the client sent them; ``now_ms`` is when the integration request starts."""
    multi_headers: dict[str, list[str]] = {}
    for name, value in connect_headers(headers, forwarded):
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
    request_ms = connect_request_time(conn.connected_at_ms, now_ms)
    event["requestContext"] = _request_context(
        api, conn, "$connect", "CONNECT", request_id, request_ms
    )
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
    common = _request_context(api, conn, "$disconnect", "DISCONNECT", request_id, now_ms)
    # AWS's order: the status right after routeKey, the reason after messageDirection.
    context = {"routeKey": common.pop("routeKey"), "disconnectStatusCode": status_code}
    for key, value in common.items():
        context[key] = value
        if key == "messageDirection":
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
    frame carried no status, which AWS words as in its captured event; a client's
    code without a reason gives an empty reason, as AWS's captured 1001 shows.
    """
    first = received if (received_first or sent is None) else sent
    if first is None:
        return 1006, "Connection closed abnormally"
    code, reason = first
    if code == 1005:
        return 1005, "Client-side close frame status not set"
    return code, reason
