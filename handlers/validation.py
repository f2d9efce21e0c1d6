"""Pure validation of untrusted input reaching the handlers."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from aws_limits import MAX_MESSAGE_BYTES

ROOM_PATTERN = re.compile(r"[A-Za-z0-9_.\-]{1,64}")


class BadRequest(ValueError):
    """Input a client sent that the handler refuses; the message is safe to echo."""


def validate_room(room: object) -> str:
    """Return ``room`` if it is a valid room name (1-64 of ``A-Za-z0-9_.-``)."""
    if not isinstance(room, str) or ROOM_PATTERN.fullmatch(room) is None:
        raise BadRequest("room must be 1-64 characters of A-Z, a-z, 0-9, '_', '.', '-'")
    return room


@dataclass(frozen=True)
class ChatMessage:
    """A validated ``sendmessage`` body."""

    message: str


def parse_sendmessage_body(body: object) -> ChatMessage:
    """Parse and validate a ``sendmessage`` body: a JSON object with a string ``message``.

    Raises ``BadRequest`` with a message fit for the sender on anything else, so
    the caller never broadcasts garbage.
    """
    if not isinstance(body, str):
        raise BadRequest("body must be a JSON object with a string 'message'")
    if len(body.encode("utf-8", "surrogatepass")) > MAX_MESSAGE_BYTES:
        raise BadRequest(f"body exceeds {MAX_MESSAGE_BYTES} bytes")
    try:
        parsed: Any = json.loads(body)
    except (ValueError, RecursionError):
        raise BadRequest("body is not valid JSON") from None
    if not isinstance(parsed, dict):
        raise BadRequest("body must be a JSON object")
    message = parsed.get("message")
    if not isinstance(message, str):
        raise BadRequest("'message' must be a string")
    try:
        message.encode("utf-8")
    except UnicodeEncodeError:
        # JSON may escape a lone surrogate ("\ud800"); no UTF-8 frame can carry it.
        raise BadRequest("'message' must be valid Unicode (it has a lone surrogate)") from None
    return ChatMessage(message=message)


def connection_id_of(event: object) -> str:
    """The caller's connection id from an API Gateway WebSocket event."""
    context = event.get("requestContext") if isinstance(event, dict) else None
    connection_id = context.get("connectionId") if isinstance(context, dict) else None
    if not isinstance(connection_id, str) or not connection_id:
        raise BadRequest("event has no requestContext.connectionId")
    return connection_id
