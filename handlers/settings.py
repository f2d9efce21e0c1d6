"""Handler configuration, read from the environment as Lambda provides it.

template.yaml sets these per function; the local stage sets the same variables
(plus ``AWS_ENDPOINT_URL_DYNAMODB``, which boto3 itself honours).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

from aws_limits import INTEGRATION_TIMEOUT_S
from callbacks import POST_CLIENTS, PostClientKind

DEFAULT_POST_CLIENT: PostClientKind = "signed"
"""template.yaml's ``PostClient`` default says the same (a test holds them equal)."""
RoomlessAudience = Literal["roomless", "everyone"]
ROOMLESS_AUDIENCES: tuple[RoomlessAudience, ...] = ("roomless", "everyone")
"""Whom a sender in no room reaches (``broadcast``): the other room-less connections
(the default: never a room's members), or every connection (the tutorial's)."""
CLOCK_SKEW_MS = 1000
"""Allowance between API Gateway's clock (``connectedAt``) and the function's."""


def _int(name: str, default: int, low: int, high: int) -> int:
    raw = os.environ.get(name, "")
    value = int(raw) if raw.strip() else default
    if not low <= value <= high:
        raise ValueError(f"{name}={value} is outside {low}..{high}")
    return value


def _post_client(name: str, default: PostClientKind) -> PostClientKind:
    raw = os.environ.get(name, "").strip() or default
    for kind in POST_CLIENTS:
        if raw == kind:
            return kind
    raise ValueError(f"{name}={raw} is not one of {', '.join(POST_CLIENTS)}")


def _roomless(name: str) -> RoomlessAudience:
    raw = os.environ.get(name, "").strip() or ROOMLESS_AUDIENCES[0]
    for audience in ROOMLESS_AUDIENCES:
        if raw == audience:
            return audience
    raise ValueError(f"{name}={raw} is not one of {', '.join(ROOMLESS_AUDIENCES)}")


@dataclass(frozen=True)
class Settings:
    table_name: str
    auth_token: str
    """Empty means no token is required at ``$connect``."""
    callback_url: str
    """Overrides ``https://{domainName}/{stage}``; needed behind a custom domain."""
    post_concurrency: int
    scan_segments: int
    post_max_attempts: int
    deadline_reserve_ms: int
    """Time kept back from the Lambda deadline for cleanup and the metrics line."""
    handshake_grace_ms: int
    """A 410 for an id younger than this may be a handshake still in progress: not stale."""
    post_client: PostClientKind
    """How posts reach @connections (``callbacks.POST_CLIENTS``): the SDK, or signed HTTP."""
    roomless_audience: RoomlessAudience = "roomless"
    """Whom a sender that joined no room reaches (``ROOMLESS_AUDIENCES``)."""

    @classmethod
    def from_environ(cls) -> Settings:
        return cls(
            table_name=os.environ.get("TABLE_NAME", ""),
            auth_token=os.environ.get("AUTH_TOKEN", ""),
            callback_url=os.environ.get("CALLBACK_URL", "").rstrip("/"),
            post_concurrency=_int("POST_CONCURRENCY", 32, 1, 256),
            scan_segments=_int("SCAN_SEGMENTS", 1, 1, 64),
            post_max_attempts=_int("POST_MAX_ATTEMPTS", 5, 1, 20),
            deadline_reserve_ms=_int("DEADLINE_RESERVE_MS", 400, 0, 60_000),
            handshake_grace_ms=_int(
                "HANDSHAKE_GRACE_MS",
                int(INTEGRATION_TIMEOUT_S * 1000) + CLOCK_SKEW_MS,
                0,
                3_600_000,
            ),
            post_client=_post_client("POST_CLIENT", DEFAULT_POST_CLIENT),
            roomless_audience=_roomless("ROOMLESS_AUDIENCE"),
        )


def callback_endpoint(event: dict[str, object], settings: Settings) -> str:
    """The @connections endpoint for this event's API.

    ``https://{domainName}/{stage}`` is right for the execute-api domain. Behind
    a custom domain, ``domainName`` is the custom name and the stage path is the
    base-path mapping instead, so deployments there set ``CALLBACK_URL``.
    """
    if settings.callback_url:
        return settings.callback_url
    context = event.get("requestContext")
    if not isinstance(context, dict):
        raise ValueError("event has no requestContext")
    return f"https://{context['domainName']}/{context['stage']}"
